"""The notifier's Kafka subscribers.

- Contacts (private topic), status changes and office reminders: one consumer in the
  ``notifier`` group (every extra consumer in a group costs a rebalance).
- The office directory: compacted, read whole by every instance, so without a group.
"""

from __future__ import annotations

from typing import Annotated

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncEngine

from mm_shared.events import (
    OfficeDirectoryChanged,
    OfficeReminderDue,
    ReporterContactSubmitted,
    ReportStatusChanged,
    Topic,
)
from mm_shared.kafka import CONSUMER_DEFAULTS
from notifier import handlers
from notifier.settings import NotifierSettings

NotifierInput = Annotated[
    ReporterContactSubmitted | ReportStatusChanged | OfficeReminderDue,
    Field(discriminator="event_type"),
]


def register_consumers(
    broker: KafkaBroker,
    engine: AsyncEngine,
    dispatcher: handlers.Dispatcher,
    reminder_sender: handlers.MailSender,
    settings: NotifierSettings,
) -> None:
    @broker.subscriber(
        Topic.REPORTER_CONTACT.value,
        Topic.REPORT_STATUS_CHANGED.value,
        Topic.OFFICE_REMINDER_DUE.value,
        group_id=settings.consumer_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        **CONSUMER_DEFAULTS,
    )
    async def on_reporter_event(event: NotifierInput) -> None:
        """Keep the reporter's contact (only the notifier stores it); queue notifications for
        each status change; mail the offices' daily reminders."""
        if isinstance(event, ReporterContactSubmitted):
            await handlers.record_contact(engine, event)
        elif isinstance(event, ReportStatusChanged):
            await handlers.record_status_change(
                engine, event, with_webhook=bool(settings.webhook_url)
            )
        else:
            await handlers.send_office_reminder(engine, reminder_sender, settings, event)
            return
        dispatcher.notify()

    @broker.subscriber(
        Topic.OFFICE_DIRECTORY.value,
        fetch_max_wait_ms=100,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK_FIRST,
    )
    async def on_office_directory(event: OfficeDirectoryChanged) -> None:
        """Where each office is reached."""
        await handlers.record_office_directory(engine, event)
