"""A broker that comes back empty (the local broker restarted, a Kafka cluster rebuilt): the
services' consumers read the new log from its start. Before, a consumer whose position lay
past the new log's end waited there for good (Tansu answers such a fetch with an empty batch,
not OffsetOutOfRange), and one whose position the new log had already passed skipped what lay
before it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from devstack.processes import ROOT, free_port, start_broker
from devstack.testing import eventually
from mm_shared.events import RoutingConfigChanged, Topic
from mm_shared.kafka import (
    LogFollower,
    batch_subscriber,
    broadcast_subscriber,
    create_broker,
    ensure_topics,
    wait_for_broker,
)

TOPIC = Topic.ROUTING_CONFIG_CHANGED  # one partition: every event lands on the same log
BEFORE = 40  # events on the first broker: the consumers' positions end up there
AFTER = 60  # on the new broker: more than BEFORE, so a stale position would skip some


async def publish(bootstrap: str, names: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for name in names:
            event = RoutingConfigChanged(jurisdiction=name)
            await producer.send_and_wait(TOPIC.value, event.model_dump_json().encode(), key=b"k")
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def tansu(port: int) -> AsyncIterator[None]:
    process = start_broker(port, log_dir=ROOT / "var" / "test-log")
    try:
        await wait_for_broker(f"127.0.0.1:{port}")
        await ensure_topics(f"127.0.0.1:{port}", [TOPIC])
        yield
    finally:
        process.send_signal(signal.SIGKILL)  # loses everything: memory storage
        process.wait(10)


@pytest.mark.parametrize("consumer", ["group", "broadcast"])
async def test_consumers_read_a_replaced_broker_from_the_start(consumer: str) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    received: list[str] = []
    broker = create_broker(bootstrap, "replaced-test")
    if consumer == "group":

        @batch_subscriber(
            broker,
            "replaced-test",
            {TOPIC.value: RoutingConfigChanged},
            group_id=f"replaced-{uuid4()}",
            fetch_max_wait_ms=50,
        )
        async def handle(events: list[RoutingConfigChanged]) -> None:
            received.extend(e.jurisdiction for e in events)
    else:
        # FastStream's subscriber decorator is untyped (as in the services' consumers).
        @broadcast_subscriber(broker, TOPIC, 50, "test")  # type: ignore[untyped-decorator]
        async def handle_one(event: RoutingConfigChanged) -> None:
            received.append(event.jurisdiction)

    before = [f"old-{i}" for i in range(BEFORE)]
    after = [f"new-{i}" for i in range(AFTER)]
    follower = LogFollower(broker, "test", interval_s=0.2)
    following: asyncio.Task[None] | None = None
    try:
        async with tansu(port):
            await broker.start()
            following = asyncio.create_task(follower.run())
            await publish(bootstrap, before)

            async def all_old_ones_arrived() -> bool:
                return set(before) <= set(received) and follower.cluster_id is not None

            await eventually(all_old_ones_arrived, timeout_s=30)

        async with tansu(port):
            await publish(bootstrap, after)

            async def all_new_ones_arrived() -> bool:
                return set(after) <= set(received)

            # Bounded: the consumers' group session runs out in 10 s, the check runs every 0.2 s.
            await eventually(all_new_ones_arrived, timeout_s=30)
    finally:
        if following is not None:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        await broker.stop()
