"""Kafka conventions of the platform, in one place.

- One consumer group per service, consuming in batches; offsets are committed by hand, only
  after the handler's write succeeded (a failing write is retried; a crash or rebalance
  redelivers, which idempotent handlers absorb), and at most every 0.2 s.
- A message that can never succeed (undecodable, fails validation, or the handler raises
  :class:`PermanentFailure`) is copied to the dead-letter topic with the reason in its headers,
  then acknowledged, so it does not block its partition.
- Transient failures (database or broker down) are retried after a short pause.
"""

from mm_shared.kafka.broker import create_broker, document_publications, keep_broker_connected
from mm_shared.kafka.dead_lettering import (
    PermanentFailure,
    Records,
    dead_letter,
    dead_letter_failed,
    dead_letter_middleware,
    decode_or_dead_letter,
    raw_records,
)
from mm_shared.kafka.message import Message
from mm_shared.kafka.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERED,
    HANDLER_RETRIES,
    track_consumer_lag,
)
from mm_shared.kafka.partitioner import kafka_partitions
from mm_shared.kafka.producer import KafkaPublisher
from mm_shared.kafka.subscribers import (
    batch_subscriber,
    broadcast_subscriber,
    pipelined_batch_subscriber,
)
from mm_shared.kafka.topics import ensure_topics, main, wait_for_broker
from mm_shared.kafka.writes import OrderedWrites

__all__ = [
    "CONSUMER_LAG",
    "DEAD_LETTERED",
    "HANDLER_RETRIES",
    "KafkaPublisher",
    "Message",
    "OrderedWrites",
    "PermanentFailure",
    "Records",
    "batch_subscriber",
    "broadcast_subscriber",
    "create_broker",
    "dead_letter",
    "dead_letter_failed",
    "dead_letter_middleware",
    "decode_or_dead_letter",
    "document_publications",
    "ensure_topics",
    "kafka_partitions",
    "keep_broker_connected",
    "main",
    "pipelined_batch_subscriber",
    "raw_records",
    "track_consumer_lag",
    "wait_for_broker",
]
