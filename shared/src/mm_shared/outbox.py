"""Transactional outbox and inbox, used by every service.

A service writes its state change and the events it implies in *one* database transaction
(:meth:`Transaction.publish`); the relay publishes committed rows to Kafka and deletes them only
once the broker has acknowledged them. So an accepted change is never lost when the broker is
down or the process dies: at worst an event is published twice, which consumers absorb through
the inbox (:func:`first_delivery`), keyed by event id.

Two ways out of the table:

- *From memory* (the fast path): rows a service process stages carry a short lease; once their
  transaction committed, the same process publishes them from memory (no read-back) and deletes
  them. While the lease runs, no other relay touches them.
- *By polling*: rows without a lease (staged by a CLI) or whose lease ran out (the process died,
  or the broker failed it) are read back in id order. After a failed publish the relay drains
  the table this way, ignoring leases, so that events keep their order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer, TopicPartition, errors
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import Counter, Gauge
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mm_shared.events import Event

log = logging.getLogger(__name__)

OUTBOX_BACKLOG = Gauge("mm_outbox_backlog", "Events waiting in the outbox", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "mm_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "mm_outbox_published_total", "Events published by the relay", ["service"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "mm_outbox_publish_failures_total", "Relay batches that failed to publish", ["service"]
)


def _outbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", pg.JSONB, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def _inbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def _lease_column() -> sa.Column[Any]:
    return sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True)


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table("outbox", metadata, *_outbox_columns(), _lease_column())


def inbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table("processed_events", metadata, *_inbox_columns())


def create_messaging_tables(op: Any, schema: str, *, with_outbox: bool = True) -> None:
    """For a service's first Alembic migration: its inbox and (if it publishes) outbox tables."""
    op.create_table("processed_events", *_inbox_columns(), schema=schema)
    if with_outbox:
        op.create_table("outbox", *_outbox_columns(), schema=schema)


def add_outbox_lease(op: Any, schema: str) -> None:
    """For the migration that lets a service publish its own rows from memory."""
    op.add_column("outbox", _lease_column(), schema=schema)


@dataclass(frozen=True, slots=True)
class Message:
    """An event as it goes to Kafka: serialised once, stored and published as these bytes."""

    topic: str
    key: bytes | None
    payload: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, event: Event) -> Message:
        return cls(event.topic.value, event.key, event.model_dump_json().encode(), event.headers())


@dataclass(frozen=True, slots=True)
class StagedRow:
    """An outbox row written under a lease: the relay publishes it from memory after commit."""

    id: int
    message: Message


@dataclass(frozen=True)
class Writes:
    """A service's own changes as data-modifying CTEs (``name AS (INSERT …)``, comma-separated)
    with their bound parameters, to run in the statement that stages their events.
    ``stage_for``: the name of a CTE with an ``id`` column; then only events whose key is the
    text of one of those ids are staged (those of the changes that took place)."""

    ctes: str
    parameters: Mapping[str, Any]
    stage_for: str | None = None


async def stage(
    conn: AsyncConnection,
    outbox: sa.Table,
    events: Sequence[Event | Message],
    *,
    lease: timedelta | None = None,
    along_with: Writes | None = None,
) -> list[StagedRow]:
    """Write events to a service's outbox in the caller's transaction, together with the
    changes ``along_with`` that imply them: one statement, one round trip. Any writer may
    stage (a CLI too: no lease, the service's relay polls for them). With a lease, the rows are
    returned for the caller's relay to publish from memory once the transaction committed."""
    if not events and along_with is None:
        return []
    messages = [e if isinstance(e, Message) else Message.of(e) for e in events]
    # One statement over arrays: far cheaper than a many-row VALUES list or executemany.
    rows = await conn.execute(
        sa.text(
            (f"WITH {along_with.ctes} " if along_with else "")
            + f"INSERT INTO {outbox.schema}.{outbox.name} (topic, key, payload, headers, lease_until)"
            " SELECT topic, key, payload, headers, now() + CAST(:lease AS interval)"
            " FROM ROWS FROM (unnest(CAST(:topics AS text[])), unnest(CAST(:keys AS bytea[])),"
            " unnest(CAST(:payloads AS bytea[])), jsonb_array_elements(CAST(:headers AS jsonb)))"
            " AS m(topic, key, payload, headers)"
            + (
                f" WHERE key IN (SELECT convert_to(id::text, 'UTF8') FROM {along_with.stage_for})"
                if along_with and along_with.stage_for
                else ""
            )
            + " RETURNING id, key"
        ),
        {
            **(along_with.parameters if along_with else {}),
            "topics": [m.topic for m in messages],
            "keys": [m.key for m in messages],
            "payloads": [m.payload for m in messages],
            "headers": json.dumps([m.headers for m in messages]),
            "lease": lease,
        },
    )
    # RETURNING follows the order of the rows produced by ROWS FROM, skipping those filtered.
    by_key: dict[bytes | None, list[Message]] = {}
    for m in reversed(messages):
        by_key.setdefault(m.key, []).append(m)
    staged = [StagedRow(row.id, by_key[row.key].pop()) for row in rows]
    return staged if lease else []


async def first_deliveries(
    conn: AsyncConnection, inbox: sa.Table, event_ids: Sequence[UUID]
) -> set[UUID]:
    """Record a batch of event ids as processed; returns those not seen before."""
    if not event_ids:
        return set()
    inserted = await conn.execute(
        pg.insert(inbox).on_conflict_do_nothing().returning(inbox.c.event_id),
        [{"event_id": e} for e in event_ids],
    )
    return set(inserted.scalars())


async def first_delivery(conn: AsyncConnection, inbox: sa.Table, event_id: UUID) -> bool:
    """Record ``event_id`` as processed in the caller's transaction; False if it already was."""
    inserted = await conn.scalar(
        pg.insert(inbox)
        .values(event_id=event_id)
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )
    return inserted is not None


class RawPublisher(Protocol):
    async def __call__(self, messages: Sequence[Message]) -> None:
        """Publish messages in order (per key); return once the broker acknowledged all."""
        ...

    async def stop(self) -> None: ...


class _NoPublisher:
    async def __call__(self, messages: Sequence[Message]) -> None:
        raise RuntimeError("a staging-only outbox publishes nothing: the service's relay does")

    async def stop(self) -> None:
        return None


class Transaction:
    """One database transaction of a service, with its outbox and inbox at hand."""

    def __init__(self, conn: AsyncConnection, outbox: Outbox) -> None:
        self.conn = conn
        self._outbox = outbox
        self.staged: list[StagedRow] = []

    @property
    def lease(self) -> timedelta:
        return self._outbox.lease

    async def publish(
        self, *events: Event | Message, along_with: Writes | None = None
    ) -> list[StagedRow]:
        """Stage events (with the changes that imply them, in the same statement); they reach
        Kafka only if this transaction commits. Returns the rows staged. (A service writing
        outbox rows with its own SQL appends them, leased, to :attr:`staged` itself.)"""
        staged = await stage(
            self.conn, self._outbox.table, events, lease=self.lease, along_with=along_with
        )
        self.staged += staged
        return staged

    async def first_delivery(self, event_id: UUID) -> bool:
        return await first_delivery(self.conn, self._outbox.inbox, event_id)


class Outbox:
    def __init__(
        self,
        engine: AsyncEngine,
        table: sa.Table,
        inbox: sa.Table,
        publish: RawPublisher,
        service: str,
        *,
        batch_size: int = 2000,
        poll_interval_s: float = 0.5,
        idle_poll_interval_s: float | None = None,
        max_backoff_s: float = 5.0,
        lease_s: float = 10.0,
    ) -> None:
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.table = table
        self.inbox = inbox
        self.lease = timedelta(seconds=lease_s)
        self._publish = publish
        self._service = service
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._idle_poll_interval_s = max(idle_poll_interval_s or 0.0, poll_interval_s)
        self._max_backoff_s = max_backoff_s
        self._wakeup = asyncio.Event()
        #: Committed rows of this process, in commit order, for the relay to publish.
        self._committed: list[StagedRow] = []
        #: Set after a failed publish: drain by polling, in id order, leases or not.
        self._draining = False
        #: Ids of published rows, deleted in the background.
        self._published: list[int] = []
        self._deleting: asyncio.Task[None] | None = None

    @classmethod
    def for_kafka(
        cls,
        engine: AsyncEngine,
        metadata: sa.MetaData,
        bootstrap_servers: str,
        service: str,
        idle_poll_interval_s: float | None = None,
    ) -> Outbox:
        """The service's outbox and inbox tables (from its metadata), relayed to Kafka."""
        schema = metadata.schema
        return cls(
            engine,
            metadata.tables[f"{schema}.outbox"],
            metadata.tables[f"{schema}.processed_events"],
            KafkaPublisher(bootstrap_servers, service),
            service,
            idle_poll_interval_s=idle_poll_interval_s,
        )

    @classmethod
    def staging_only(cls, engine: AsyncEngine, metadata: sa.MetaData, service: str) -> Outbox:
        """For a command-line writer: its rows carry no lease, so the running service's relay
        publishes them (this process publishes nothing)."""
        schema = metadata.schema
        return cls(
            engine,
            metadata.tables[f"{schema}.outbox"],
            metadata.tables[f"{schema}.processed_events"],
            _NoPublisher(),
            service,
            lease_s=0.0,
        )

    @asynccontextmanager
    async def transaction(self, *, autocommit: bool = False) -> AsyncIterator[Transaction]:
        """``autocommit``: every statement commits on its own (no BEGIN and COMMIT round
        trips); for writers whose every statement is complete by itself."""
        connection = self._autocommit.connect() if autocommit else self.engine.begin()
        async with connection as conn:
            tx = Transaction(conn, self)
            yield tx
        if tx.staged:
            self._committed += tx.staged
            self._wakeup.set()

    async def publish_committed(self) -> int:
        """Publish one batch of this process's committed rows from memory."""
        rows = self._committed[: self._batch_size]
        if not rows:
            return 0
        del self._committed[: len(rows)]
        try:
            await self._publish([r.message for r in rows])
        except BaseException:
            # The rows stay in the table; polling takes over, in order.
            self._draining = True
            self._committed.clear()
            raise
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        # Deleted behind the relay's back: the next event need not wait for this round trip,
        # and under load one DELETE covers the rows of several publishes.
        self._published += [r.id for r in rows]
        if self._deleting is None or self._deleting.done():
            self._deleting = asyncio.create_task(self._delete_published())
        return len(rows)

    async def _delete_published(self) -> None:
        """Delete published rows until none are left. If this fails, the rows stay, leased: once
        the lease ran out the relay publishes them again, and consumers drop the duplicates."""
        try:
            while self._published:
                ids, self._published = self._published, []
                # One statement, no transaction around it: a round trip instead of three.
                async with self._autocommit.connect() as conn:
                    await conn.execute(
                        sa.text(
                            f"DELETE FROM {self.table.schema}.{self.table.name}"
                            " WHERE id = ANY(CAST(:ids AS bigint[]))"
                        ),
                        {"ids": ids},
                    )
        except Exception as exc:
            self._published.clear()
            log.warning("published outbox rows not deleted, they come again later: %r", exc)

    async def _deletes_done(self) -> None:
        if self._deleting is not None:
            await self._deleting

    async def publish_pending(self, *, ignore_leases: bool = False) -> int:
        """Publish one batch of rows read back from the table: those without a lease (other
        writers), with an expired one, or all of them while draining."""
        t = self.table
        query = (
            sa.select(t.c.id, t.c.topic, t.c.key, t.c.payload, t.c.headers)
            .order_by(t.c.id)
            .limit(self._batch_size)
            .with_for_update(skip_locked=True)
        )
        if not ignore_leases:
            query = query.where(sa.or_(t.c.lease_until.is_(None), t.c.lease_until < sa.func.now()))
        async with self.engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            await self._publish([Message(r.topic, r.key, r.payload, r.headers) for r in rows])
            await conn.execute(t.delete().where(t.c.id.in_([r.id for r in rows])))
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        return len(rows)

    async def measure_backlog(self) -> None:
        t = self.table
        async with self.engine.connect() as conn:
            count, oldest = (
                await conn.execute(sa.select(sa.func.count(), sa.func.min(t.c.created_at)))
            ).one()
        OUTBOX_BACKLOG.labels(self._service).set(count)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        OUTBOX_OLDEST_AGE.labels(self._service).set(age)

    async def close(self, timeout_s: float = 5.0) -> None:
        """On shutdown, after the relay stopped: publish what this process committed and the
        relay had not published yet (else it waits for its lease to run out, then another
        instance publishes it), delete what was published, stop the producer."""
        with suppress(Exception):  # broker away or too slow: the rows stay for the next relay
            async with asyncio.timeout(timeout_s):
                while not self._draining and await self.publish_committed():
                    pass
        await self._deletes_done()
        await self._publish.stop()

    async def run_relay(self) -> None:
        """Publish forever: this process's commits as they happen, and by polling for rows of
        other writers or of a relay that failed. Once nothing was published for a while, the
        polls (and the backlog measurements) come less often, up to ``idle_poll_interval_s``."""
        backoff = 0.2
        loop = asyncio.get_running_loop()
        next_measure = next_poll = last_published = 0.0
        poll_interval = self._poll_interval_s
        while True:
            self._wakeup.clear()
            if loop.time() >= next_measure:
                # Measured whether publishing works or not: a growing backlog while the broker
                # is away is exactly what operators need to see.
                with suppress(Exception):
                    await self.measure_backlog()
                next_measure = loop.time() + max(1.0, poll_interval)
            try:
                if self._draining:
                    self._committed.clear()  # polling publishes them, in id order
                    await self._deletes_done()  # not those published already
                    while await self.publish_pending(ignore_leases=True):
                        pass
                    self._draining = False
                while await self.publish_committed():
                    last_published = loop.time()
                if loop.time() >= next_poll:
                    while await self.publish_pending():
                        last_published = loop.time()
                    poll_interval = _next_poll_interval(
                        poll_interval,
                        self._poll_interval_s,
                        self._idle_poll_interval_s,
                        busy=loop.time() - last_published < 2 * self._idle_poll_interval_s,
                    )
                    next_poll = loop.time() + poll_interval
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._draining = True
                OUTBOX_PUBLISH_FAILURES.labels(self._service).inc()
                log.warning("outbox relay failed, retrying in %.1fs: %r", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            if not self._committed:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), max(next_poll - loop.time(), 0.001))


def _next_poll_interval(current: float, busy_s: float, idle_s: float, *, busy: bool) -> float:
    """The short interval while there is work, doubling up to the idle one after."""
    return busy_s if busy else min(idle_s, 2 * current)


def kafka_partitions(keys: Sequence[bytes], partitions: int) -> list[int]:
    """Kafka's default partition of each key (murmur2, as the Java client computes it), for a
    whole batch at once: aiokafka's pure-Python murmur2 was a tenth of the relay's time."""
    # Imported here: of the services only the relaying ones need it, not the notifier.
    import numpy as np

    m, seed = np.uint32(0x5BD1E995), 0x9747B28C
    result = [0] * len(keys)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps, as in Java
        for length, indexes in by_length.items():
            data = np.frombuffer(b"".join(keys[i] for i in indexes), dtype=np.uint8)
            data = data.reshape(len(indexes), length)
            h = np.full(len(indexes), seed ^ length, dtype=np.uint32)
            whole = length // 4 * 4
            words = np.ascontiguousarray(data[:, :whole]).view("<u4")
            for column in range(words.shape[1]):
                k = words[:, column] * m
                k ^= k >> np.uint32(24)
                k *= m
                h *= m
                h ^= k
            tail = length - whole
            if tail:
                for shift in range(tail - 1, -1, -1):
                    h ^= data[:, whole + shift].astype(np.uint32) << np.uint32(8 * shift)
                h *= m
            h ^= h >> np.uint32(13)
            h *= m
            h ^= h >> np.uint32(15)
            chosen = (h & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)
            for i, partition in zip(indexes, chosen.tolist(), strict=True):
                result[i] = partition
    return result


class _RecordBatch:
    """One partition's record batch for a produce request (at most 512 kB: below the broker's
    default 1 MB message limit)."""

    def __init__(self) -> None:
        self._builder = DefaultRecordBatchBuilder(
            2,
            0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=0,
            batch_size=512 * 1024,
        )
        self._count = 0

    def append(self, m: Message) -> bool:
        headers = [(k, v.encode()) for k, v in m.headers.items()]
        appended = self._builder.append(
            self._count, None, key=m.key, value=m.payload, headers=headers
        )
        self._count += appended is not None
        return appended is not None

    def data(self) -> bytes:
        return bytes(self._builder.build())


class KafkaPublisher:
    """The relay's own producer: aiokafka's client and record batches, no per-message framework
    overhead. Connects on first use, so a service starts while the broker is away. Nothing is
    retried here: the relay retries a failed publish (broker away, or a partition's error).

    Messages are packed into one record batch per partition (partitioned exactly like Kafka's
    default partitioner, so keys land where every other producer puts them), a fraction of the
    cost of one ``send`` per message at thousands per second, and sent as one produce request
    per broker (acks=all)."""

    def __init__(self, bootstrap_servers: str, client_id: str) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            # Its client and metadata only: requests are built and sent in __call__.
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-outbox",
                request_timeout_ms=10_000,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def __call__(self, messages: Sequence[Message]) -> None:
        producer = await self._started()
        by_topic: dict[str, list[Message]] = {}
        for m in messages:
            by_topic.setdefault(m.topic, []).append(m)
        batches: dict[TopicPartition, list[_RecordBatch]] = {}
        for topic, group in by_topic.items():
            known = sorted(await producer.partitions_for(topic))
            keys = [m.key or b"" for m in group]
            for m, i in zip(group, kafka_partitions(keys, len(known)), strict=True):
                # Every event has a key; a keyless message would go to the first partition.
                tp = TopicPartition(topic, known[i] if m.key is not None else known[0])
                built = batches.setdefault(tp, [_RecordBatch()])
                if not built[-1].append(m):
                    built.append(_RecordBatch())
                    if not built[-1].append(m):  # the builder takes any first record
                        raise ValueError(f"{len(m.payload)} bytes do not fit a record batch")
        # Sent by this task itself, not handed to aiokafka's sender task: in a busy process each
        # hand-over waited for its turn in the event loop (3.6 ms from a record's creation to
        # its request at the broker in intake, which answered in 0.6). A partition's second
        # batch (over 512 kB) goes in the next round, after the first was acknowledged.
        client = producer.client
        for round_ in range(max((len(built) for built in batches.values()), default=0)):
            by_node: dict[int, dict[str, list[tuple[int, bytes]]]] = {}
            for tp, built in batches.items():
                if round_ < len(built):
                    leader = client.cluster.leader_for_partition(tp)
                    if leader is None or leader < 0:
                        client.force_metadata_update()
                        raise errors.KafkaError(f"no leader known for {tp}")
                    topics = by_node.setdefault(leader, {})
                    topics.setdefault(tp.topic, []).append((tp.partition, built[round_].data()))
            responses = await asyncio.gather(
                *(
                    client.send(
                        node,
                        ProduceRequest(
                            transactional_id=None,
                            required_acks=-1,  # acks=all
                            timeout=10_000,
                            topics=list(topics.items()),
                        ),
                    )
                    for node, topics in by_node.items()
                )
            )
            for response in responses:
                for topic, partitions in response.topics:
                    for partition in partitions:
                        if partition[1]:  # (partition, error_code, …) in every version
                            error = errors.for_code(partition[1])
                            if error.invalid_metadata:
                                client.force_metadata_update()
                            raise error(f"{topic}[{partition[0]}]")

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def since_time(text: str) -> datetime:
    """A ``reannounce --since`` moment: ISO 8601 (``2026-05-04T10:00Z``; without a zone, UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
