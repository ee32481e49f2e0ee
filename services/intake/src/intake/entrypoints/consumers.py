"""Intake's Kafka subscriber: routing results from geo-router.

One subscriber per service and group: every extra consumer in a group costs a rebalance.
"""

from __future__ import annotations

from typing import Annotated

from faststream.kafka import KafkaBroker
from pydantic import Field

from intake import handlers
from intake.settings import IntakeSettings
from mm_shared.events import ReportRouted, ReportRoutingFailed, Topic
from mm_shared.kafka import CONSUMER_DEFAULTS
from mm_shared.outbox import Outbox

RoutingResult = Annotated[ReportRouted | ReportRoutingFailed, Field(discriminator="event_type")]


def register_consumers(broker: KafkaBroker, outbox: Outbox, settings: IntakeSettings) -> None:
    @broker.subscriber(
        Topic.REPORT_ROUTED.value,
        Topic.REPORT_ROUTING_FAILED.value,
        group_id=settings.consumer_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        **CONSUMER_DEFAULTS,
    )
    async def on_routing_result(event: RoutingResult) -> None:
        """The office geo-router chose makes the report ``assigned``; no office, ``rejected``."""
        await handlers.record_routing(outbox, event)
