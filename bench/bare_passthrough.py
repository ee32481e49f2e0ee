"""The baseline for geo-router's Kafka → Kafka figure: consume, republish, commit — nothing else.
Run by bench/routing.py as its own process: python bench/bare_passthrough.py BOOTSTRAP IN OUT"""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def main(bootstrap: str, source: str, target: str) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id="bare-passthrough",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            acks = [
                await producer.send(target, record.value, key=record.key)
                for records in batches.values()
                for record in records
            ]
            await asyncio.gather(*acks)
            if acks:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
