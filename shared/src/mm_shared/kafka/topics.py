"""The platform's topics, created with their fixed partition counts; waiting for the broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from mm_shared.events import COMPACTED_TOPICS, TOPIC_PARTITIONS, Topic


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


def main() -> None:
    """``python -m mm_shared.kafka BOOTSTRAP``: create the platform's topics (deployment step)."""
    import sys

    bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"

    async def create() -> None:
        await wait_for_broker(bootstrap, timeout_s=120)
        await ensure_topics(bootstrap)

    asyncio.run(create())
    print(f"topics ready on {bootstrap}")
