"""Transactional outbox and inbox, used by every service.

A service writes its state change and the events it implies in *one* database transaction
(:meth:`Transaction.publish`); the relay publishes committed rows to Kafka and deletes them only
once the broker has acknowledged them. So an accepted change is never lost when the broker is
down or the process dies: at worst an event is published twice, which consumers absorb through
the inbox (:func:`first_delivery`), keyed by event id.

Two ways out of the table:

- *From memory* (the fast path): rows a service process stages carry a short lease; once their
  transaction committed, the same process publishes them from memory (no read-back) and deletes
  them. While the lease runs, no other relay touches them.
- *By polling*: rows without a lease (staged by a CLI) or whose lease ran out (the process died,
  or the broker failed it) are read back in id order. After a failed publish the relay drains
  the table this way, ignoring leases, so that events keep their order.
"""

from mm_shared.kafka.message import Message
from mm_shared.kafka.partitioner import kafka_partitions
from mm_shared.kafka.producer import KafkaPublisher
from mm_shared.outbox.cli import since_time
from mm_shared.outbox.inbox import first_deliveries, first_delivery
from mm_shared.outbox.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
)
from mm_shared.outbox.relay import Outbox, RawPublisher, Transaction
from mm_shared.outbox.staging import MessageRows, StagedRow, Writes, stage, stage_rows
from mm_shared.outbox.tables import (
    add_outbox_lease,
    create_messaging_tables,
    inbox_table,
    outbox_table,
)

__all__ = [
    "OUTBOX_BACKLOG",
    "OUTBOX_OLDEST_AGE",
    "OUTBOX_PUBLISHED",
    "OUTBOX_PUBLISH_FAILURES",
    "KafkaPublisher",
    "Message",
    "MessageRows",
    "Outbox",
    "RawPublisher",
    "StagedRow",
    "Transaction",
    "Writes",
    "add_outbox_lease",
    "create_messaging_tables",
    "first_deliveries",
    "first_delivery",
    "inbox_table",
    "kafka_partitions",
    "outbox_table",
    "since_time",
    "stage",
    "stage_rows",
]
