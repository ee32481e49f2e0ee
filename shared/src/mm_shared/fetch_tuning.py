"""Fetch waits that follow the traffic: short while messages flow, long once a consumer has been
quiet for a while.

A consumer waiting at the broker costs the broker and itself a fetch per wait. A short wait keeps
the latency low under load (Tansu answers a waiting fetch only when its wait runs out, even when
a record arrives meanwhile), but an idle stack then spends much of a core fetching nothing. So
the wait starts short, doubles with every empty fetch once nothing came for ``quiet_after_s``,
up to ``idle_wait_ms``, and drops back to ``busy_wait_ms`` with the first record: the first
message after a quiet period waits at most one long wait, every later one a short wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class FetchPacing:
    """The fetch wait of one consumer, from what its fetches brought."""

    def __init__(
        self,
        busy_wait_ms: int,
        idle_wait_ms: int,
        quiet_after_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.busy_wait_ms = busy_wait_ms
        self.idle_wait_ms = max(idle_wait_ms, busy_wait_ms)
        self.quiet_after_s = quiet_after_s
        self._clock = clock
        self._last_record_at = clock()
        self.wait_ms = busy_wait_ms

    def observe(self, records: int) -> int:
        """After a fetch that brought ``records``: the wait of the next one."""
        now = self._clock()
        if records:
            self._last_record_at = now
            self.wait_ms = self.busy_wait_ms
        elif now - self._last_record_at >= self.quiet_after_s:
            self.wait_ms = min(self.idle_wait_ms, max(2 * self.wait_ms, 1))
        return self.wait_ms


def set_fetch_max_wait(consumer: Any, wait_ms: int) -> None:
    """Change the wait of an aiokafka consumer's next fetch requests. aiokafka reads it from
    its fetcher for every request it builds; there is no public setter (aiokafka 0.14)."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and fetcher._fetch_max_wait_ms != wait_ms:
        fetcher._fetch_max_wait_ms = wait_ms
