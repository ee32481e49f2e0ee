"""Consumer-side Prometheus metrics: dead letters, retries, and each subscriber's lag."""

from __future__ import annotations

import asyncio
import logging

from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

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
