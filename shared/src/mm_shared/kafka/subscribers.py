"""The platform's subscribers: broadcast readers of a whole topic, and batch consumers whose
writes are pipelined behind the next fetch.

``_PromptBatchSubscriber`` swaps the class of FastStream's ``BatchSubscriber`` at runtime:
tests/test_library_contracts.py checks what it relies on."""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiokafka import ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber

from mm_shared.events import Event, Topic
from mm_shared.fetch_tuning import FetchPacing, set_fetch_max_wait
from mm_shared.kafka.dead_lettering import (
    PermanentFailure,
    Records,
    dead_letter_failed,
    decode_or_dead_letter,
    is_permanent,
    raw_records,
)
from mm_shared.kafka.metrics import HANDLER_RETRIES
from mm_shared.kafka.writes import OrderedWrites, ThrottledCommits

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)

#: The throttled commits of each pipelined subscriber, to forget when its log was replaced
#: (:class:`~mm_shared.kafka.log_follower.LogFollower`).
THROTTLED_COMMITS: weakref.WeakKeyDictionary[Any, ThrottledCommits] = weakref.WeakKeyDictionary()


class _PromptBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber, without its pause after an empty poll.

    FastStream 0.7 sleeps ``batch_timeout_ms`` after ``getmany`` came back empty, although
    ``getmany`` had already waited that long for records. A record arriving during the sleep
    waited up to one more timeout at every hop (figures in docs/architecture.md, "Polling
    costs CPU on Tansu").
    """

    __slots__ = ()

    #: Set after the class swap; its wait grows while the consumer is idle (fetch_tuning).
    fetch_pacing: FetchPacing

    async def get_msg(self, consumer: Any) -> tuple[ConsumerRecord[Any, Any], ...]:
        # getmany returns as soon as records are there: waiting long costs no latency here.
        batches = await consumer.getmany(
            timeout_ms=self.fetch_pacing.wait_ms, max_records=self.max_records
        )
        records = tuple(record for records in batches.values() for record in records)
        set_fetch_max_wait(consumer, self.fetch_pacing.observe(len(records)))
        return records


def broadcast_subscriber(
    broker: KafkaBroker, topic: Topic, fetch_max_wait_ms: int, description: str
) -> Any:
    """A subscriber that reads the whole topic from its start, in every instance, without a
    consumer group (no join, no rebalance): for rare events every instance must see, kept on
    compacted topics or cheap to replay."""
    return broker.subscriber(
        topic.value,
        fetch_max_wait_ms=fetch_max_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK_FIRST,
        description=description,
    )


def batch_subscriber(
    broker: KafkaBroker,
    service: str,
    inputs: Mapping[str, type[E]],
    *,
    group_id: str,
    fetch_max_wait_ms: int,
    idle_fetch_max_wait_ms: int | None = None,
    max_records: int = 500,
    description: str | None = None,
    concurrent_writes: int = 1,
) -> Callable[[Callable[[list[E]], Awaitable[None]]], Callable[[list[E]], Awaitable[None]]]:
    """Register ``handle(events)`` as the service's consumer of ``inputs`` (topic → event type):
    one group member, batches (one write each, in the handler), each record decoded on
    its own so that a bad one is dead-lettered alone. Runs as a :func:`pipelined_batch_subscriber`
    with nothing to prepare: the next batch is fetched while this one is handled, and offsets
    are committed every so often rather than after every batch."""

    def register(
        handle: Callable[[list[E]], Awaitable[None]],
    ) -> Callable[[list[E]], Awaitable[None]]:
        async def prepare(events: list[E]) -> Callable[[], Awaitable[None]]:
            return functools.partial(handle, events)

        prepare.__name__ = handle.__name__
        prepare.__doc__ = description or handle.__doc__
        pipelined_batch_subscriber(
            broker,
            service,
            inputs,
            group_id=group_id,
            fetch_max_wait_ms=fetch_max_wait_ms,
            idle_fetch_max_wait_ms=idle_fetch_max_wait_ms,
            max_records=max_records,
            concurrent_writes=concurrent_writes,
        )(prepare)
        return handle

    return register


def pipelined_batch_subscriber(
    broker: KafkaBroker,
    service: str,
    inputs: Mapping[str, type[E]],
    *,
    group_id: str,
    fetch_max_wait_ms: int,
    idle_fetch_max_wait_ms: int | None = None,
    max_records: int = 500,
    retry_pause_s: float = 1.0,
    commit_interval_s: float = 0.2,
    concurrent_writes: int = 1,
) -> Callable[
    [Callable[[list[E]], Awaitable[Callable[[], Awaitable[None]]]]],
    Callable[[list[E]], Awaitable[Callable[[], Awaitable[None]]]],
]:
    """Like :func:`batch_subscriber`, for a handler in two phases: ``prepare(events)`` computes
    (no writes) and returns ``write()``, which stores the result. Batch N's write runs while
    batch N+1 is fetched and prepared, so the database round trips of one overlap the
    computing of the next. Offsets are committed by hand once a write succeeded, at most every
    ``commit_interval_s``; a write is retried until it does (it must be idempotent: after a
    crash or a rebalance its batch is consumed again), and the next write waits for it, in
    order. The fetch wait grows from ``fetch_max_wait_ms`` to ``idle_fetch_max_wait_ms`` while
    nothing comes (:mod:`mm_shared.fetch_tuning`). ``concurrent_writes`` > 1 lets writes of batches with other keys overlap
    (:class:`OrderedWrites`); for writers that tolerate a concurrent writer of other keys."""

    def register(
        prepare: Callable[[list[E]], Awaitable[Callable[[], Awaitable[None]]]],
    ) -> Callable[[list[E]], Awaitable[Callable[[], Awaitable[None]]]]:
        # Raw records, each decoded here, so that a bad one is dead-lettered alone.
        subscriber = broker.subscriber(
            *inputs,
            group_id=group_id,
            fetch_max_wait_ms=fetch_max_wait_ms,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=fetch_max_wait_ms,
            decoder=raw_records,
            title=f"{service}:{prepare.__name__}",
            description=prepare.__doc__,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
        )
        assert type(subscriber) is BatchSubscriber, type(subscriber)
        subscriber.__class__ = _PromptBatchSubscriber
        assert isinstance(subscriber, _PromptBatchSubscriber)
        subscriber.fetch_pacing = FetchPacing(
            fetch_max_wait_ms, idle_fetch_max_wait_ms or fetch_max_wait_ms
        )
        commits = ThrottledCommits(subscriber, commit_interval_s)
        THROTTLED_COMMITS[subscriber] = commits

        async def write_until_done(write: Callable[[], Awaitable[None]], records: Records) -> None:
            while True:
                try:
                    await write()
                    break
                except PermanentFailure as exc:
                    await dead_letter_failed(broker, service, records, exc)
                    break
                except Exception as exc:
                    HANDLER_RETRIES.labels(service, records[0].topic).inc()
                    log.warning("write failed, retrying: %r", exc)
                    await asyncio.sleep(retry_pause_s)

        writes = OrderedWrites(write_until_done, commits.add, concurrent_writes)

        @subscriber
        async def consume(consumed: list[Any]) -> None:
            records = _Batch(consumed, commits.epoch)
            events = await decode_or_dead_letter(broker, service, records, inputs)
            try:
                write = await prepare(events) if events else _nothing
            except Exception as exc:
                if not is_permanent(exc):
                    # Manual offsets: nobody else rewinds, so fetch this batch again.
                    consumer = subscriber.consumer
                    assert consumer is not None, "a started subscriber has its consumer"
                    first: dict[TopicPartition, int] = {}
                    for record in records:
                        tp = TopicPartition(record.topic, record.partition)
                        first[tp] = min(first.get(tp, record.offset), record.offset)
                    for tp, offset in first.items():
                        consumer.seek(tp, offset)
                raise
            # Also for a batch that was all dead letters: its offsets get committed.
            await writes.start(write, records)
            # Let the write send its statement before this task computes the next batch.
            await asyncio.sleep(0)

        return prepare

    return register


class _Batch(list[Any]):
    """Consumed records, with the epoch of their subscriber's log they were read from."""

    def __init__(self, records: Iterable[Any], epoch: int) -> None:
        super().__init__(records)
        self.epoch = epoch


async def _nothing() -> None:
    pass
