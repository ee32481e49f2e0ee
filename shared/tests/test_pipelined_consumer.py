"""The pipelined batch subscriber over the real broker: a batch whose preparation fails is
fetched again, a write that fails is retried until it succeeds, each event is written once, and
the group's committed offsets follow the writes."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from devstack.testing import eventually
from mm_shared.events import RoutingConfigChanged
from mm_shared.kafka import create_broker, pipelined_batch_subscriber

TOPIC = "test.pipelined.v1"


async def test_failed_writes_are_retried_and_offsets_follow_the_writes(
    kafka_bootstrap: str,
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    with contextlib.suppress(TopicAlreadyExistsError):
        await admin.create_topics([NewTopic(TOPIC, 2, 1)])
    await admin.close()
    group = f"pipelined-{uuid4()}"
    broker = create_broker(kafka_bootstrap, "pipeline-test")
    written: list[str] = []
    failures_left = [3]
    prepare_failures_left = [1]

    @pipelined_batch_subscriber(
        broker,
        "pipeline-test",
        {TOPIC: RoutingConfigChanged},
        group_id=group,
        fetch_max_wait_ms=10,
        retry_pause_s=0.05,
    )
    async def prepare(events: list[RoutingConfigChanged]) -> Callable[[], Awaitable[None]]:
        if prepare_failures_left[0]:  # e.g. the routing index not readable yet
            prepare_failures_left[0] -= 1
            raise ConnectionError("not ready")
        names = [e.jurisdiction for e in events]

        async def write() -> None:
            if failures_left[0]:
                failures_left[0] -= 1
                raise ConnectionError("database away")
            written.extend(names)

        return write

    events = [RoutingConfigChanged(jurisdiction=f"j{i}") for i in range(20)]
    await broker.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        for event in events:
            key = event.jurisdiction.encode()
            await producer.send_and_wait(TOPIC, event.model_dump_json().encode(), key=key)
        await producer.stop()

        async def all_written() -> bool:
            return sorted(written) == sorted(e.jurisdiction for e in events)

        await eventually(all_written)
        assert failures_left == [0]
        assert prepare_failures_left == [0]

        async def offsets_committed() -> bool:
            checker = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group)
            await checker.start()
            try:
                partitions = [TopicPartition(TOPIC, p) for p in (0, 1)]
                ends = await checker.end_offsets(partitions)
                return all([await checker.committed(tp) == ends[tp] for tp in partitions])
            finally:
                await checker.stop()

        await eventually(offsets_committed)
    finally:
        await broker.stop()
