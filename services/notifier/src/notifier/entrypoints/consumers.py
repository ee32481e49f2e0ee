"""The notifier's Kafka subscribers.

- Contacts (private topic), status changes, new reports (for area alerts) and office
  reminders: one consumer in the
  ``notifier`` group (every extra consumer in a group costs a rebalance).
- The office directory and the jurisdictions' boundaries (for their names): compacted, read
  whole by every instance, so without a group.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from mm_shared.events import (
    JurisdictionBoundaryChanged,
    OfficeDirectoryChanged,
    OfficeReminderDue,
    ReporterContactSubmitted,
    ReportRouted,
    ReportStatusChanged,
    Topic,
)
from mm_shared.kafka import batch_subscriber, broadcast_subscriber
from notifier import handlers
from notifier.mails import Mails
from notifier.ports import MailSender, UnitOfWorkFactory
from notifier.settings import NotifierSettings

SERVICE = "notifier"
Input = ReporterContactSubmitted | ReportStatusChanged | OfficeReminderDue | ReportRouted
INPUTS: dict[str, type[Input]] = {
    Topic.REPORTER_CONTACT.value: ReporterContactSubmitted,
    Topic.REPORT_ROUTED.value: ReportRouted,
    Topic.REPORT_STATUS_CHANGED.value: ReportStatusChanged,
    Topic.OFFICE_REMINDER_DUE.value: OfficeReminderDue,
}


def register_consumers(
    broker: KafkaBroker,
    unit_of_work: UnitOfWorkFactory,
    dispatcher: handlers.Dispatcher,
    reminder_sender: MailSender,
    mails: Mails,
    settings: NotifierSettings,
) -> None:
    @batch_subscriber(
        broker,
        SERVICE,
        INPUTS,
        group_id=settings.consumer_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        idle_fetch_max_wait_ms=settings.kafka_idle_fetch_max_wait_ms,
    )
    async def on_reporter_events(events: list[Input]) -> None:
        """Keep reporters' contacts (only the notifier stores them), queue notifications for
        status changes and area alerts for new reports (one transaction per batch), mail the
        offices' daily reminders."""
        await handlers.record_batch(
            unit_of_work,
            [e for e in events if not isinstance(e, OfficeReminderDue)],
            with_webhook=bool(settings.webhook_url),
        )
        dispatcher.notify()
        for event in events:
            if isinstance(event, OfficeReminderDue):
                await handlers.send_office_reminder(unit_of_work, reminder_sender, mails, event)

    @broadcast_subscriber(
        broker,
        Topic.OFFICE_DIRECTORY,
        settings.kafka_rare_events_fetch_max_wait_ms,
        "Where each office is reached, for their reminders",
    )
    async def on_office_directory(event: OfficeDirectoryChanged) -> None:
        """Where each office is reached, and the sender name of the jurisdiction's mails."""
        await handlers.record_office_directory(unit_of_work, event)

    @broadcast_subscriber(
        broker,
        Topic.JURISDICTION_BOUNDARY,
        settings.kafka_rare_events_fetch_max_wait_ms,
        "Each jurisdiction's name, for the wording of its mails",
    )
    async def on_jurisdiction_boundary(event: JurisdictionBoundaryChanged) -> None:
        """The jurisdiction's name (its outline is intake's business, not ours)."""
        await handlers.record_jurisdiction_boundary(unit_of_work, event)
