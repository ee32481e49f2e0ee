"""Kafka conventions of the platform, in one place.

- One consumer group per service, consuming in batches; offsets are committed by hand, only
  after the handler's write succeeded (a failing write is retried; a crash or rebalance
  redelivers, which idempotent handlers absorb), and at most every 0.2 s.
- A message that can never succeed (undecodable, fails validation, or the handler raises
  :class:`PermanentFailure`) is copied to the dead-letter topic with the reason in its headers,
  then acknowledged, so it does not block its partition.
- Transient failures (database or broker down) are retried after a short pause.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from mm_shared.events import COMPACTED_TOPICS, TOPIC_PARTITIONS, Event, Topic
from mm_shared.fetch_tuning import FetchPacing, set_fetch_max_wait

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)
Records = Sequence[ConsumerRecord[Any, Any]]

DEAD_LETTERED = Counter(
    "mm_messages_dead_lettered_total",
    "Messages moved to the dead-letter topic",
    ["service", "topic", "reason"],
)
HANDLER_RETRIES = Counter(
    "mm_message_handler_retries_total",
    "Messages whose handler failed transiently and will be redelivered",
    ["service", "topic"],
)


class PermanentFailure(Exception):
    """Raised by a handler for a message that will never succeed, however often it is retried.
    ``event_ids``: which events of a batch failed (default: all of them)."""

    def __init__(self, message: str, event_ids: Iterable[UUID | str] = ()) -> None:
        super().__init__(message)
        self.event_ids = {str(e) for e in event_ids}


def _is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PermanentFailure | ValidationError | json.JSONDecodeError | UnicodeError)


def dead_letter_middleware(
    service: str, retry_pause_s: float = 1.0
) -> type[BaseMiddleware[Any, Any]]:
    class DeadLetterMiddleware(BaseMiddleware[Any, Any]):
        async def consume_scope(
            self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            try:
                return await call_next(msg)
            except Exception as exc:
                topic = getattr(msg.raw_message, "topic", "?")
                if not _is_permanent(exc):
                    HANDLER_RETRIES.labels(service, topic).inc()
                    log.warning("transient failure on %s, will retry: %r", topic, exc)
                    await asyncio.sleep(retry_pause_s)
                    raise
                raw = msg.raw_message
                records = raw if isinstance(raw, tuple | list) else [raw]
                await dead_letter_failed(self.context.get("broker"), service, records, exc)
                return None

    return DeadLetterMiddleware


async def dead_letter(
    broker: KafkaBroker, service: str, record: ConsumerRecord[Any, Any], exc: BaseException
) -> None:
    """Copy a consumed record to the dead-letter topic, with where it came from and why."""
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    headers.update(
        {
            "dlq_service": service,
            "dlq_source_topic": record.topic,
            "dlq_source_partition": str(record.partition),
            "dlq_source_offset": str(record.offset),
            "dlq_reason": type(exc).__name__,
            "dlq_error": str(exc)[:2000],
        }
    )
    await broker.publish(
        record.value or b"", Topic.DEAD_LETTER.value, key=record.key, headers=headers
    )
    DEAD_LETTERED.labels(service, record.topic, type(exc).__name__).inc()
    log.error("dead-lettered %s[%s]@%s: %r", record.topic, record.partition, record.offset, exc)


async def dead_letter_failed(
    broker: KafkaBroker,
    service: str,
    records: Records,
    exc: BaseException,
) -> None:
    """Dead-letter the records of a batch that failed for good: those a
    :class:`PermanentFailure` names by event id, else all of them."""
    named = exc.event_ids if isinstance(exc, PermanentFailure) else set()
    for record in records:
        event_id = dict(record.headers or ()).get("event_id", b"").decode(errors="replace")
        if not named or event_id in named:
            await dead_letter(broker, service, record, exc)


async def raw_records(msg: StreamMessage[Any]) -> list[ConsumerRecord[Any, Any]]:
    """Decoder for batch subscribers that validate each record themselves, so that one bad
    record is dead-lettered alone instead of failing its whole batch."""
    raw = msg.raw_message
    return list(raw) if isinstance(raw, tuple | list) else [raw]


async def decode_or_dead_letter(
    broker: KafkaBroker,
    service: str,
    records: Records,
    event_types: Mapping[str, type[E]],
) -> list[E]:
    """Decode each record by its topic; what does not decode goes to the dead-letter topic."""
    events: list[E] = []
    for record in records:
        try:
            events.append(event_types[record.topic].model_validate_json(record.value or b""))
        except ValidationError as exc:
            await dead_letter(broker, service, record, exc)
    return events


def create_broker(bootstrap_servers: str, service: str) -> KafkaBroker:
    return KafkaBroker(
        bootstrap_servers,
        client_id=service,
        middlewares=[dead_letter_middleware(service)],
        # Tansu has no idempotent producer; correctness comes from the outbox + idempotent
        # consumers. acks=all keeps a publish durable on a real Kafka cluster.
        acks="all",
        enable_idempotence=False,
        logger=logging.getLogger(f"{service}.kafka"),
        # One log line per consumed message is too much at thousands per second: DEBUG.
        log_level=logging.DEBUG,
    )


class _PromptBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber, without its pause after an empty poll.

    FastStream 0.7 sleeps ``batch_timeout_ms`` after ``getmany`` came back empty, although
    ``getmany`` had already waited that long for records. A record arriving during the sleep
    waited up to one more timeout at every hop (measured on the local broker at a 10 ms
    timeout: p50 from producer to handler 9.0 ms with the pause, 3.3 ms without).
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
        commits = _ThrottledCommits(subscriber, commit_interval_s)

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
        async def consume(records: list[Any]) -> None:
            events = await decode_or_dead_letter(broker, service, records, inputs)
            try:
                write = await prepare(events) if events else _nothing
            except Exception as exc:
                if not _is_permanent(exc):
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


class OrderedWrites:
    """The writes of consumed batches, as tasks: ``run(write, records)`` performs one (until it
    succeeds), then ``written(records)`` is called, in consumption order, so offsets never get
    past a write still running. With ``concurrency`` 1 a write starts once the previous one is
    done; above, it starts while earlier ones run, up to that many, unless it shares a record
    key with one of them: writes of one key stay in order, which is all Kafka orders anyway."""

    def __init__(
        self,
        run: Callable[[Callable[[], Awaitable[None]], Records], Awaitable[None]],
        written: Callable[[Records], None],
        concurrency: int = 1,
    ) -> None:
        self._run = run
        self._written = written
        self._concurrency = concurrency
        #: Running writes, oldest first, with the keys of their records.
        self._running: collections.deque[tuple[asyncio.Task[None], set[bytes | None]]] = (
            collections.deque()
        )

    async def start(self, write: Callable[[], Awaitable[None]], records: Records) -> None:
        """Start ``write`` once the rules allow; returns when it has started, not finished."""
        keys = {record.key for record in records}
        while self._running and (
            len(self._running) >= self._concurrency
            or any(keys & running for _, running in self._running)
        ):
            await self._running.popleft()[0]
        previous = self._running[-1][0] if self._running else None
        task = asyncio.create_task(self._run_in_order(write, records, previous))
        self._running.append((task, keys))

    async def _run_in_order(
        self,
        write: Callable[[], Awaitable[None]],
        records: Records,
        previous: asyncio.Task[None] | None,
    ) -> None:
        await self._run(write, records)
        if previous is not None:
            await previous
        self._written(records)


class _ThrottledCommits:
    """Offsets of written batches, committed together at most every ``interval_s``. At a few
    records per batch, a commit per batch cost the local broker about a sixth of a core; a
    redelivery after a crash or a rebalance now covers at most the interval, which idempotent
    writers absorb like any other."""

    def __init__(self, subscriber: Any, interval_s: float) -> None:
        self._subscriber = subscriber
        self._interval_s = interval_s
        self._offsets: dict[TopicPartition, int] = {}
        self._flush: asyncio.Task[None] | None = None

    def add(self, records: Records) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._offsets[tp] = max(self._offsets.get(tp, 0), record.offset + 1)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._commit_soon())

    async def _commit_soon(self) -> None:
        await asyncio.sleep(self._interval_s)
        offsets, self._offsets = self._offsets, {}
        consumer = self._subscriber.consumer
        if consumer is None:  # stopped meanwhile: the batches come again, idempotently
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Revoked meanwhile: the partition's new owner consumes the batches again.
            log.info("offsets of written batches not committed: %r", exc)


async def _nothing() -> None:
    pass


def document_publications(broker: KafkaBroker, *events: type[Event]) -> None:
    """Declare what a service publishes (through its outbox) so that its AsyncAPI document
    (``make asyncapi``) shows the channels it produces, not only those it consumes."""
    for event in events:
        broker.publisher(event.topic.value, schema=event, description=event.__doc__)


async def ensure_topics(bootstrap_servers: str, topics: Iterable[Topic] | None = None) -> None:
    """Create the platform's topics with their fixed partition counts (idempotent)."""
    wanted = list(topics) if topics is not None else list(TOPIC_PARTITIONS)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=t.value,
                num_partitions=TOPIC_PARTITIONS[t],
                replication_factor=1,
                topic_configs={"cleanup.policy": "compact"} if t in COMPACTED_TOPICS else {},
            )
            for t in wanted
            if t.value not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


async def wait_for_broker(bootstrap_servers: str, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


async def keep_broker_connected(broker: KafkaBroker, max_backoff_s: float = 5.0) -> None:
    """Start the broker connection, retrying until the broker is reachable.

    Services start (and serve HTTP) without a broker; producers and consumers come up as soon
    as it is there. aiokafka reconnects by itself after that.
    """
    backoff = 0.2
    while True:
        try:
            await broker.start()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("broker not reachable (%r), retrying in %.1fs", exc, backoff)
            try:
                await broker.stop()
            except Exception:
                log.debug("stopping a half-started broker failed", exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


def main() -> None:
    """``python -m mm_shared.kafka BOOTSTRAP``: create the platform's topics (deployment step)."""
    import sys

    bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"

    async def create() -> None:
        await wait_for_broker(bootstrap, timeout_s=120)
        await ensure_topics(bootstrap)

    asyncio.run(create())
    print(f"topics ready on {bootstrap}")


CONSUMER_LAG = Gauge(
    "mm_consumer_lag_messages", "Messages not yet consumed", ["service", "topic", "partition"]
)


async def track_consumer_lag(broker: KafkaBroker, service: str, interval_s: float = 5.0) -> None:
    """Publish each subscriber's lag per assigned partition (high watermark − position)."""
    while True:
        await asyncio.sleep(interval_s)
        for subscriber in broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            try:
                for tp in consumer.assignment():
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue
                    position = await consumer.position(tp)
                    CONSUMER_LAG.labels(service, tp.topic, str(tp.partition)).set(
                        max(highwater - position, 0)
                    )
            except Exception:
                log.debug("consumer lag not measurable right now", exc_info=True)


if __name__ == "__main__":
    main()
