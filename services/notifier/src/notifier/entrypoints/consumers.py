"""The notifier's Kafka subscriber: reporter contacts (private topic) and status changes.

One subscriber per service and group: every extra consumer in a group costs a rebalance.
"""

from __future__ import annotations

from typing import Annotated

from faststream.kafka import KafkaBroker
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncEngine

from mm_shared.events import ReporterContactSubmitted, ReportStatusChanged, Topic
from mm_shared.kafka import CONSUMER_DEFAULTS
from notifier import handlers
from notifier.settings import NotifierSettings

NotifierInput = Annotated[
    ReporterContactSubmitted | ReportStatusChanged, Field(discriminator="event_type")
]


def register_consumers(
    broker: KafkaBroker,
    engine: AsyncEngine,
    dispatcher: handlers.Dispatcher,
    settings: NotifierSettings,
) -> None:
    @broker.subscriber(
        Topic.REPORTER_CONTACT.value,
        Topic.REPORT_STATUS_CHANGED.value,
        group_id=settings.consumer_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        **CONSUMER_DEFAULTS,
    )
    async def on_reporter_event(event: NotifierInput) -> None:
        """Keep the reporter's contact (only the notifier stores it); queue a notification for
        each status change."""
        if isinstance(event, ReporterContactSubmitted):
            await handlers.record_contact(engine, event)
        else:
            await handlers.record_status_change(
                engine, event, with_webhook=bool(settings.webhook_url)
            )
        dispatcher.notify()
