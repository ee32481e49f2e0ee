"""The notifier's use cases: remember contacts, queue notifications, deliver them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import ReporterContactSubmitted, ReportStatusChanged
from mm_shared.outbox import first_delivery
from notifier.adapters.db import contacts, inbox, notifications
from notifier.adapters.mail import render
from notifier.domain import STATUS_LABELS, Mail, Preference, retry_delay_s, wants
from notifier.settings import NotifierSettings

log = logging.getLogger(__name__)

NOTIFICATIONS = Counter(
    "mm_notifications_total", "Notifications by channel and outcome", ["channel", "outcome"]
)
DELIVERY_LATENCY = Histogram(
    "mm_notification_delivery_seconds",
    "From the status change to the delivered notification",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


class MailSender(Protocol):
    async def send(self, mail: Mail) -> None: ...


async def record_contact(engine: AsyncEngine, event: ReporterContactSubmitted) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            pg.insert(contacts)
            .values(
                report_id=event.report_id,
                email=str(event.email),
                first_name=event.first_name,
                last_name=event.last_name,
                locale=event.locale,
                preference=Preference.EVERY_CHANGE.value,
                unsubscribe_token=secrets.token_urlsafe(24),
            )
            .on_conflict_do_nothing()
        )


async def record_status_change(engine: AsyncEngine, event: ReportStatusChanged) -> None:
    """Queue one e-mail notification per status-change event (a redelivery adds nothing)."""
    async with engine.begin() as conn:
        if not await first_delivery(conn, inbox, event.event_id):
            return
        await conn.execute(
            pg.insert(notifications)
            .values(
                event_id=event.event_id,
                report_id=event.report_id,
                channel="email",
                event=event.model_dump(mode="json"),
                state="pending",
            )
            .on_conflict_do_nothing()
        )


async def unsubscribe(engine: AsyncEngine, token: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            contacts.update()
            .where(contacts.c.unsubscribe_token == token)
            .values(preference=Preference.NONE.value)
        )
        return bool(result.rowcount)


class Dispatcher:
    """Delivers pending notifications; failures back off and are parked after ``max_attempts``
    without holding up the others."""

    def __init__(
        self, engine: AsyncEngine, sender: MailSender, settings: NotifierSettings, batch: int = 50
    ) -> None:
        self._engine = engine
        self._sender = sender
        self._settings = settings
        self._batch = batch
        self._wakeup = asyncio.Event()

    def notify(self) -> None:
        self._wakeup.set()

    def _mail(self, event: ReportStatusChanged, contact: Any) -> Mail:
        locale = str(contact.locale)
        category = CATEGORIES_BY_CODE.get(event.service_code)
        subject, text, html = render(
            "status_changed",
            locale,
            first_name=contact.first_name,
            status=event.status.value,
            status_label=STATUS_LABELS[locale if locale == "en" else "de"][event.status],
            category=category.name(locale) if category else event.service_code,
            office=event.office.name if event.office else "",
            public_note=event.public_note,
            tracking_url=f"{self._settings.tracking_base_url}/{event.report_id}.json",
            unsubscribe_url=f"{self._settings.public_base_url}/v1/unsubscribe/{contact.unsubscribe_token}",
        )
        return Mail(
            to=str(contact.email),
            subject=subject,
            text=text,
            html=html,
            message_id=f"<{event.event_id}@maengelmelder>",
        )

    async def deliver_due(self) -> int:
        """Deliver the due notifications, each in its own transaction; returns how many."""
        n = notifications
        now = datetime.now(UTC)
        async with self._engine.connect() as conn:
            due = (
                await conn.scalars(
                    sa.select(n.c.id)
                    .where(n.c.state == "pending", n.c.next_attempt_at <= now)
                    .order_by(n.c.id)
                    .limit(self._batch)
                )
            ).all()
        for notification_id in due:
            try:
                await self._deliver(notification_id)
            except Exception as exc:
                # A notification that cannot even be attempted (a bug, bad data) is parked so
                # that it never holds up the others.
                log.exception("notification %s parked", notification_id)
                await self._park(notification_id, exc)
        return len(due)

    async def _park(self, notification_id: int, exc: Exception) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                notifications.update()
                .where(notifications.c.id == notification_id)
                .values(state="parked", last_error=repr(exc)[:2000])
            )
        NOTIFICATIONS.labels("email", "parked").inc()

    async def _deliver(self, notification_id: int) -> None:
        # One transaction per notification: a crash can repeat at most the mail in flight.
        n, c = notifications, contacts
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        n.c.event,
                        n.c.attempts,
                        n.c.created_at,
                        c.c.report_id.label("contact_id"),
                        c.c.email,
                        c.c.first_name,
                        c.c.locale,
                        c.c.preference,
                        c.c.unsubscribe_token,
                    )
                    .select_from(n.outerjoin(c, c.c.report_id == n.c.report_id))
                    .where(n.c.id == notification_id, n.c.state == "pending")
                    .with_for_update(of=n, skip_locked=True)
                )
            ).first()
            if row is None:
                return
            update = n.update().where(n.c.id == notification_id)
            event = ReportStatusChanged.model_validate(row.event)
            if row.contact_id is None:
                # The contact travels on another topic and may still be on its way; a report
                # without contact data (anonymous) is allowed and simply gets no mail.
                grace = timedelta(seconds=self._settings.contact_grace_s)
                if row.created_at < now - grace:
                    await conn.execute(update.values(state="skipped"))
                    NOTIFICATIONS.labels("email", "no_contact").inc()
                else:
                    await conn.execute(update.values(next_attempt_at=now + timedelta(seconds=1)))
                return
            if not wants(Preference(row.preference), event.status):
                await conn.execute(update.values(state="skipped"))
                NOTIFICATIONS.labels("email", "skipped").inc()
                return
            try:
                await self._sender.send(self._mail(event, row))
            except Exception as exc:
                attempts = row.attempts + 1
                parked = attempts >= self._settings.max_attempts
                await conn.execute(
                    update.values(
                        attempts=attempts,
                        state="parked" if parked else "pending",
                        last_error=repr(exc)[:2000],
                        next_attempt_at=now + timedelta(seconds=retry_delay_s(attempts)),
                    )
                )
                NOTIFICATIONS.labels("email", "parked" if parked else "failed").inc()
                log.warning(
                    "notification %s failed (attempt %d): %r", notification_id, attempts, exc
                )
                return
            await conn.execute(update.values(state="sent", sent_at=datetime.now(UTC)))
        NOTIFICATIONS.labels("email", "sent").inc()
        DELIVERY_LATENCY.labels("email").observe(
            (datetime.now(UTC) - event.occurred_at).total_seconds()
        )

    async def run(self, poll_interval_s: float = 0.5) -> None:
        while True:
            try:
                while await self.deliver_due():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification dispatch failed; retrying")
                await asyncio.sleep(1.0)
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), poll_interval_s)
