"""The outbox against real PostgreSQL, with a recording stand-in for Kafka: what a process
commits it publishes from memory; rows of other writers and of failed publishes are read back;
nothing is lost, nothing rolled back is published, and order holds."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from uuid import uuid4

import pytest
import sqlalchemy as sa
from aiokafka.partitioner import murmur2
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.databases import ensure_database
from devstack.testing import eventually
from mm_shared.events import RoutingConfigChanged
from mm_shared.outbox import (
    Message,
    Outbox,
    inbox_table,
    kafka_partitions,
    outbox_table,
    stage,
)


class RecordingKafka:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.failures_left = 0

    async def __call__(self, messages: Sequence[Message]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("broker away")
        self.published += [m.headers["event_id"] for m in messages]

    async def stop(self) -> None:
        pass


@pytest.fixture
async def outbox() -> AsyncIterator[tuple[Outbox, RecordingKafka]]:
    url = await ensure_database("mangelmelder_outbox_test")
    metadata = sa.MetaData(schema="outbox_test")
    table, inbox = outbox_table(metadata), inbox_table(metadata)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA IF EXISTS outbox_test CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA outbox_test"))
        await conn.run_sync(metadata.create_all)
    kafka = RecordingKafka()
    box = Outbox(engine, table, inbox, kafka, "test", poll_interval_s=0.05, max_backoff_s=0.05)
    relay = asyncio.create_task(box.run_relay())
    yield box, kafka
    relay.cancel()
    await engine.dispose()


def changes(n: int) -> list[RoutingConfigChanged]:
    return [RoutingConfigChanged(jurisdiction=f"j{i}") for i in range(n)]


async def published_exactly(kafka: RecordingKafka, events: list[RoutingConfigChanged]) -> None:
    async def probe() -> bool:
        return kafka.published == [str(e.event_id) for e in events]

    await eventually(probe)


async def table_empty(box: Outbox) -> None:
    async def probe() -> bool:
        async with box.engine.connect() as conn:
            return await conn.scalar(sa.select(sa.func.count()).select_from(box.table)) == 0

    await eventually(probe)


async def test_committed_events_are_published_in_order_and_removed(
    outbox: tuple[Outbox, RecordingKafka],
) -> None:
    box, kafka = outbox
    events = changes(5)
    async with box.transaction() as tx:
        await tx.publish(*events[:3])
    async with box.transaction() as tx:
        await tx.publish(*events[3:])
    await published_exactly(kafka, events)
    await table_empty(box)


async def test_a_rolled_back_transaction_publishes_nothing(
    outbox: tuple[Outbox, RecordingKafka],
) -> None:
    box, kafka = outbox
    rolled_back, kept = changes(2)

    async def failing_handler() -> None:
        async with box.transaction() as tx:
            await tx.publish(rolled_back)
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        await failing_handler()
    async with box.transaction() as tx:
        await tx.publish(kept)
    await published_exactly(kafka, [kept])
    await table_empty(box)


async def test_rows_staged_by_another_writer_are_picked_up(
    outbox: tuple[Outbox, RecordingKafka],
) -> None:
    box, kafka = outbox
    from_cli = changes(2)
    async with box.engine.begin() as conn:  # a CLI: no lease, no relay of its own
        await stage(conn, box.table, from_cli)
    await published_exactly(kafka, from_cli)
    await table_empty(box)


async def test_after_a_failed_publish_nothing_is_lost_and_order_holds(
    outbox: tuple[Outbox, RecordingKafka],
) -> None:
    box, kafka = outbox
    kafka.failures_left = 3
    events = changes(6)
    for event in events:
        async with box.transaction() as tx:
            await tx.publish(event)
    await published_exactly(kafka, events)
    await table_empty(box)


def test_partitions_match_kafkas_default_partitioner() -> None:
    keys = [os.urandom(n) for n in (0, 1, 2, 3, 4, 5, 7, 36, 37, 64) for _ in range(20)]
    keys += [str(uuid4()).encode() for _ in range(100)]  # the events' keys: report ids
    for partitions in (1, 4, 12):
        expected = [(murmur2(k) & 0x7FFFFFFF) % partitions for k in keys]
        assert kafka_partitions(keys, partitions) == expected
        # A few keys at a time take the plain-Python way: the same partitions.
        assert [p for k in keys for p in kafka_partitions([k], partitions)] == expected
        assert kafka_partitions(keys[:3], partitions) == expected[:3]


async def test_closing_publishes_what_the_stopped_relay_had_not(
    outbox: tuple[Outbox, RecordingKafka],
) -> None:
    box, _ = outbox
    kafka = RecordingKafka()
    # A process whose relay has stopped (shutdown cancels it first); its rows are leased, so
    # the other relay does not take them.
    stopping = Outbox(box.engine, box.table, box.inbox, kafka, "stopping")
    events = changes(3)
    async with stopping.transaction() as tx:
        await tx.publish(*events)
    assert kafka.published == []
    await stopping.close()
    assert kafka.published == [str(e.event_id) for e in events]
    await table_empty(box)
