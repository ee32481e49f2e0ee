"""Geo-router's Kafka subscriber: every submitted report gets a routing decision."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from geo_router import handlers
from geo_router.settings import GeoRouterSettings
from mm_shared.events import ReportSubmitted, Topic
from mm_shared.kafka import CONSUMER_DEFAULTS
from mm_shared.outbox import Outbox


def register_consumers(broker: KafkaBroker, outbox: Outbox, settings: GeoRouterSettings) -> None:
    @broker.subscriber(
        Topic.REPORT_SUBMITTED.value,
        group_id=settings.consumer_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        **CONSUMER_DEFAULTS,
    )
    async def on_report_submitted(event: ReportSubmitted) -> None:
        """Find the areas containing the report's point and the office the rules name."""
        await handlers.route_report(outbox, event)
