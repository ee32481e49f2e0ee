"""The service's transactions with their outbox, and the relay's state machine that publishes
committed rows: from memory while leased, by polling otherwise, draining in order after a
failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mm_shared.events import Event
from mm_shared.kafka.message import Message
from mm_shared.kafka.producer import KafkaPublisher
from mm_shared.outbox.inbox import first_delivery
from mm_shared.outbox.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
)
from mm_shared.outbox.staging import (
    MessageRows,
    StagedRow,
    Writes,
    stage,
    stage_rows,
    statement,
)

log = logging.getLogger(__name__)


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
        Kafka only if this transaction commits. Returns the rows staged."""
        staged = await stage(
            self.conn, self._outbox.table, events, lease=self.lease, along_with=along_with
        )
        self.staged += staged
        return staged

    async def publish_rows(
        self, rows: MessageRows, along_with: Writes | None = None
    ) -> list[StagedRow]:
        """Like :meth:`publish`, for messages given as a query over the CTEs of ``along_with``."""
        staged = await stage_rows(
            self.conn, self._outbox.table, rows, lease=self.lease, along_with=along_with
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
        delete_after_s: float = 0.1,
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
        self._delete_after_s = delete_after_s

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
        # and one DELETE covers the rows of every publish within ``delete_after_s``.
        self._published += [r.id for r in rows]
        if self._deleting is None or self._deleting.done():
            self._deleting = asyncio.create_task(self._delete_published())
        return len(rows)

    async def _delete_published(self) -> None:
        """Delete published rows until none are left, gathered for ``delete_after_s`` first: at a
        steady rate each publish carries a row or two, and a DELETE for each cost the process
        and the database a statement per event. The rows' lease (seconds) keeps other relays off
        them meanwhile. If this fails, the rows stay, leased: once the lease ran out the relay
        publishes them again, and consumers drop the duplicates."""
        try:
            while self._published:
                if self._delete_after_s > 0:
                    await asyncio.sleep(self._delete_after_s)
                ids, self._published = self._published, []
                # One statement, no transaction around it: a round trip instead of three.
                async with self._autocommit.connect() as conn:
                    await conn.execute(
                        statement(
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
