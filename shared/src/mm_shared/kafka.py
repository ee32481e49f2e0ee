"""Kafka conventions of the platform, in one place.

- One consumer group per service; offsets are committed only after the handler succeeded
  (``AckPolicy.NACK_ON_ERROR``: a failing handler seeks back and the message comes again).
- A message that can never succeed (undecodable, fails validation, or the handler raises
  :class:`PermanentFailure`) is copied to the dead-letter topic with the reason in its headers,
  then acknowledged, so it does not block its partition.
- Transient failures (database or broker down) are retried after a short pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from prometheus_client import Counter
from pydantic import ValidationError

from mm_shared.events import TOPIC_PARTITIONS, Event, Topic

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

#: Subscriber options every consumer of the platform uses.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "ack_policy": AckPolicy.NACK_ON_ERROR,
    "auto_offset_reset": "earliest",
}


class PermanentFailure(Exception):
    """Raised by a handler for a message that will never succeed, however often it is retried."""


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
                broker = self.context.get("broker")
                headers = {k: str(v) for k, v in (msg.headers or {}).items()}
                headers.update(
                    {
                        "dlq_service": service,
                        "dlq_source_topic": str(topic),
                        "dlq_source_partition": str(getattr(msg.raw_message, "partition", "")),
                        "dlq_source_offset": str(getattr(msg.raw_message, "offset", "")),
                        "dlq_reason": type(exc).__name__,
                        "dlq_error": str(exc)[:2000],
                    }
                )
                await broker.publish(
                    msg.body, Topic.DEAD_LETTER.value, key=_raw_key(msg), headers=headers
                )
                DEAD_LETTERED.labels(service, topic, type(exc).__name__).inc()
                log.error("dead-lettered message from %s: %r", topic, exc)
                return None

    return DeadLetterMiddleware


def _raw_key(msg: StreamMessage[Any]) -> bytes | None:
    key = getattr(msg.raw_message, "key", None)
    return key if isinstance(key, bytes) else None


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
    )


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
            NewTopic(name=t.value, num_partitions=TOPIC_PARTITIONS[t], replication_factor=1)
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


if __name__ == "__main__":
    main()
