"""The fetch wait grows while a consumer is idle and drops back with the first record."""

from __future__ import annotations

from types import SimpleNamespace

from mm_shared.fetch_tuning import FetchPacing, set_fetch_max_wait


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_wait_stays_short_while_records_come_and_shortly_after() -> None:
    clock = Clock()
    pacing = FetchPacing(10, 500, quiet_after_s=2.0, clock=clock)
    for _ in range(100):
        clock.now += 0.01
        assert pacing.observe(1) == 10
    clock.now += 1.9
    assert pacing.observe(0) == 10


def test_the_wait_grows_to_the_idle_wait_once_quiet_and_drops_back_with_a_record() -> None:
    clock = Clock()
    pacing = FetchPacing(10, 500, quiet_after_s=2.0, clock=clock)
    clock.now = 2.0
    waits = []
    for _ in range(10):
        waits.append(pacing.observe(0))
        clock.now += waits[-1] / 1000
    assert waits == [20, 40, 80, 160, 320, 500, 500, 500, 500, 500]
    assert pacing.observe(3) == 10
    assert pacing.wait_ms == 10


def test_an_idle_wait_below_the_busy_wait_means_a_fixed_wait() -> None:
    clock = Clock()
    pacing = FetchPacing(10, 10, clock=clock)
    clock.now = 100.0
    assert [pacing.observe(0) for _ in range(5)] == [10] * 5


def test_the_consumers_next_fetches_use_the_new_wait() -> None:
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=10))
    set_fetch_max_wait(consumer, 500)
    assert consumer._fetcher._fetch_max_wait_ms == 500


def test_aiokafka_reads_the_wait_from_its_fetcher_for_every_request() -> None:
    """What set_fetch_max_wait relies on; an aiokafka upgrade that changes it fails here."""
    import inspect

    from aiokafka.consumer.fetcher import Fetcher

    assert "self._fetch_max_wait_ms," in inspect.getsource(Fetcher._get_actions_per_node)
