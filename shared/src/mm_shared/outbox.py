"""Transactional outbox and inbox, used by every service.

A service writes its state change and the events it implies in *one* database transaction
(:meth:`Outbox.add`); the relay publishes committed rows to Kafka and deletes them only once the
broker has acknowledged them. So an accepted change is never lost when the broker is down or the
process dies: at worst an event is published twice, which consumers absorb through the inbox
(:func:`first_delivery`), keyed by event id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
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


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table("outbox", metadata, *_outbox_columns())


def inbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table("processed_events", metadata, *_inbox_columns())


def create_messaging_tables(op: Any, schema: str, *, with_outbox: bool = True) -> None:
    """For a service's first Alembic migration: its inbox and (if it publishes) outbox tables."""
    op.create_table("processed_events", *_inbox_columns(), schema=schema)
    if with_outbox:
        op.create_table("outbox", *_outbox_columns(), schema=schema)


async def stage(conn: AsyncConnection, outbox: sa.Table, events: Sequence[Event]) -> None:
    """Write events to a service's outbox in the caller's transaction. Any writer may stage
    (a CLI too); the service's relay publishes them."""
    if not events:
        return
    await conn.execute(
        outbox.insert(),
        [
            {
                "topic": e.topic.value,
                "key": e.key,
                "payload": e.model_dump_json().encode(),
                "headers": e.headers(),
            }
            for e in events
        ],
    )


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
    async def __call__(
        self, topic: str, key: bytes | None, payload: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        """Hand a message to the producer; the returned awaitable resolves on broker ack."""
        ...

    async def stop(self) -> None: ...


class Transaction:
    """One database transaction of a service, with its outbox and inbox at hand."""

    def __init__(self, conn: AsyncConnection, outbox: Outbox) -> None:
        self.conn = conn
        self._outbox = outbox

    async def publish(self, *events: Event) -> None:
        """Stage events; they reach Kafka only if this transaction commits."""
        await self._outbox.add(self.conn, events)

    async def first_delivery(self, event_id: UUID) -> bool:
        return await first_delivery(self.conn, self._outbox.inbox, event_id)

    async def first_deliveries(self, event_ids: Sequence[UUID]) -> set[UUID]:
        return await first_deliveries(self.conn, self._outbox.inbox, event_ids)


class Outbox:
    def __init__(
        self,
        engine: AsyncEngine,
        table: sa.Table,
        inbox: sa.Table,
        publish: RawPublisher,
        service: str,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.engine = engine
        self._table = table
        self.inbox = inbox
        self._publish = publish
        self._service = service
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._max_backoff_s = max_backoff_s
        self._wakeup = asyncio.Event()

    @classmethod
    def for_kafka(
        cls, engine: AsyncEngine, metadata: sa.MetaData, bootstrap_servers: str, service: str
    ) -> Outbox:
        """The service's outbox and inbox tables (from its metadata), relayed to Kafka."""
        schema = metadata.schema
        return cls(
            engine,
            metadata.tables[f"{schema}.outbox"],
            metadata.tables[f"{schema}.processed_events"],
            KafkaPublisher(bootstrap_servers, service),
            service,
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.engine.begin() as conn:
            yield Transaction(conn, self)
        self.notify()

    async def add(self, conn: AsyncConnection, events: Sequence[Event]) -> None:
        """Stage events in the caller's transaction; call :meth:`notify` after it committed."""
        await stage(conn, self._table, events)

    def notify(self) -> None:
        self._wakeup.set()

    async def publish_pending(self) -> int:
        """Publish one batch of committed events; returns how many were published."""
        t = self._table
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.c.id, t.c.topic, t.c.key, t.c.payload, t.c.headers)
                    .order_by(t.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            acks = [await self._publish(r.topic, r.key, r.payload, r.headers) for r in rows]
            await asyncio.gather(*acks)
            await conn.execute(t.delete().where(t.c.id.in_([r.id for r in rows])))
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        return len(rows)

    async def measure_backlog(self) -> None:
        t = self._table
        async with self.engine.connect() as conn:
            count, oldest = (
                await conn.execute(sa.select(sa.func.count(), sa.func.min(t.c.created_at)))
            ).one()
        OUTBOX_BACKLOG.labels(self._service).set(count)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        OUTBOX_OLDEST_AGE.labels(self._service).set(age)

    async def close(self) -> None:
        await self._publish.stop()

    async def run_relay(self) -> None:
        """Publish forever: on every :meth:`notify`, and by polling for rows of other writers."""
        backoff = 0.2
        loop = asyncio.get_running_loop()
        next_measure = 0.0
        while True:
            if loop.time() >= next_measure:
                # Measured whether publishing works or not: a growing backlog while the broker
                # is away is exactly what operators need to see.
                with suppress(Exception):
                    await self.measure_backlog()
                next_measure = loop.time() + 1.0
            try:
                while await self.publish_pending():
                    pass
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                OUTBOX_PUBLISH_FAILURES.labels(self._service).inc()
                log.warning("outbox relay failed, retrying in %.1fs: %r", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            self._wakeup.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval_s)


class KafkaPublisher:
    """The relay's own producer: plain aiokafka, no per-message framework overhead. Connects on
    first use, so a service starts while the broker is away; the relay retries until it is back."""

    def __init__(self, bootstrap_servers: str, client_id: str) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def __call__(
        self, topic: str, key: bytes | None, payload: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-outbox",
                acks="all",
                linger_ms=1,
                request_timeout_ms=10_000,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        future: Awaitable[Any] = await self._producer.send(
            topic, payload, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )
        return future

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
