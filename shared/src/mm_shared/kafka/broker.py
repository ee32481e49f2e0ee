"""The service's FastStream broker: created with the platform's conventions, connected in the
background, and documenting what the service publishes."""

from __future__ import annotations

import asyncio
import logging

from faststream.kafka import KafkaBroker

from mm_shared.events import Event
from mm_shared.kafka.dead_lettering import dead_letter_middleware

log = logging.getLogger(__name__)


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
        # One log line per consumed message is too much at thousands per second: DEBUG.
        log_level=logging.DEBUG,
    )


def document_publications(broker: KafkaBroker, *events: type[Event]) -> None:
    """Declare what a service publishes (through its outbox) so that its AsyncAPI document
    (``make asyncapi``) shows the channels it produces, not only those it consumes."""
    for event in events:
        broker.publisher(event.topic.value, schema=event, description=event.__doc__)


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
