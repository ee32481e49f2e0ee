"""The notifier's use cases: remember contacts, turn status changes into notifications, deliver
them — e-mail to each contact, and one signed webhook per change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import (
    STATUS_LABELS,
    OfficeDirectoryChanged,
    OfficeReminderDue,
    ReporterContactSubmitted,
    ReportStatus,
    ReportStatusChanged,
)
from mm_shared.outbox import first_deliveries, first_delivery
from notifier.adapters.db import (
    contacts,
    inbox,
    instances,
    notifications,
    offices,
    status_events,
)
from notifier.adapters.senders import render
from notifier.domain import Mail, Preference, retry_delay_s, wants
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
EMAIL, WEBHOOK = "email", "webhook"


class MailSender(Protocol):
    async def send(self, mail: Mail) -> None: ...


class HookSender(Protocol):
    async def send(self, payload: dict[str, Any], event_id: str) -> None: ...


def _email_queue(*conditions: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """(event × contact) pairs to notify: every stored status change of a report and every
    contact who subscribed to that report before the change happened."""
    s, c = status_events, contacts
    return (
        sa.select(
            s.c.event_id,
            s.c.report_id,
            c.c.id.label("contact_id"),
            sa.literal(EMAIL),
            s.c.event,
            sa.literal("pending"),
        )
        .select_from(s.join(c, c.c.report_id == s.c.report_id))
        .where(c.c.subscribed_at <= s.c.occurred_at, *conditions)
    )


async def _queue(conn: AsyncConnection, pairs: sa.Select[Any]) -> None:
    await conn.execute(
        pg.insert(notifications)
        .from_select(["event_id", "report_id", "contact_id", "channel", "event", "state"], pairs)
        .on_conflict_do_nothing()
    )


async def record_contacts(
    conn: AsyncConnection, events: Sequence[ReporterContactSubmitted]
) -> None:
    """Reporters (or followers): tell them of every change from their subscription on —
    including changes that reached us before their contact did."""
    if not events:
        return
    inserted = await conn.execute(
        pg.insert(contacts).on_conflict_do_nothing().returning(contacts.c.id),
        [
            {
                "report_id": e.report_id,
                "email": str(e.email),
                "first_name": e.first_name,
                "last_name": e.last_name,
                "locale": e.locale,
                "preference": Preference.EVERY_CHANGE.value,
                "unsubscribe_token": secrets.token_urlsafe(24),
                "subscribed_at": e.occurred_at,
            }
            for e in events
        ],
    )
    new_ids = list(inserted.scalars())
    if new_ids:
        await _queue(conn, _email_queue(contacts.c.id.in_(new_ids)))


async def record_status_changes(
    conn: AsyncConnection, events: Sequence[ReportStatusChanged], with_webhook: bool
) -> None:
    """Queue one notification per contact and channel (a redelivery adds nothing). A report
    merged as a duplicate hands its reporters on to the original."""
    fresh_ids = await first_deliveries(conn, inbox, [e.event_id for e in events])
    fresh = [e for e in events if e.event_id in fresh_ids]
    if not fresh:
        return
    rows = [
        {
            "event_id": e.event_id,
            "report_id": e.report_id,
            "occurred_at": e.occurred_at,
            "event": e.model_dump(mode="json"),
        }
        for e in fresh
    ]
    await conn.execute(pg.insert(status_events).on_conflict_do_nothing(), rows)
    await _queue(conn, _email_queue(status_events.c.event_id.in_([e.event_id for e in fresh])))
    if with_webhook:
        await conn.execute(
            pg.insert(notifications).on_conflict_do_nothing(),
            [
                {
                    "event_id": r["event_id"],
                    "report_id": r["report_id"],
                    "channel": WEBHOOK,
                    "event": r["event"],
                    "state": "pending",
                }
                for r in rows
            ],
        )
    for event in fresh:
        if event.status is ReportStatus.DUPLICATE and event.duplicate_of is not None:
            await _hand_on_contacts(conn, event)


async def _hand_on_contacts(conn: AsyncConnection, event: ReportStatusChanged) -> None:
    c = contacts
    await conn.execute(
        pg.insert(contacts)
        .from_select(
            [
                "report_id",
                "email",
                "first_name",
                "last_name",
                "locale",
                "preference",
                "unsubscribe_token",
                "subscribed_at",
            ],
            sa.select(
                sa.literal(event.duplicate_of, pg.UUID(as_uuid=True)),
                c.c.email,
                c.c.first_name,
                c.c.last_name,
                c.c.locale,
                c.c.preference,
                sa.func.md5(c.c.unsubscribe_token + sa.literal(str(event.duplicate_of))),
                sa.literal(event.occurred_at, sa.DateTime(timezone=True)),
            ).where(c.c.report_id == event.report_id),
        )
        .on_conflict_do_nothing()
    )


async def record_batch(
    engine: AsyncEngine,
    events: Sequence[ReporterContactSubmitted | ReportStatusChanged],
    with_webhook: bool,
) -> None:
    """A consumed batch of contacts and status changes, in one transaction."""
    async with engine.begin() as conn:
        await record_contacts(conn, [e for e in events if isinstance(e, ReporterContactSubmitted)])
        await record_status_changes(
            conn, [e for e in events if isinstance(e, ReportStatusChanged)], with_webhook
        )


CONTACTS_ERASED = Counter(
    "mm_contacts_erased_total", "Reporters' contact data erased after the retention period"
)


async def erase_expired_contacts(engine: AsyncEngine, retention: timedelta) -> int:
    """Erase the contact data of reports closed longer than ``retention`` ago (storage
    limitation, GDPR Art. 5(1)(e)): the addresses, names, and the notifications sent to them.
    A contact with a delivery still under way waits for the next sweep; a report reopened
    after that is not told to anybody any more. Returns how many contacts were erased."""
    closed = [s.value for s in ReportStatus if s.is_closed]
    async with engine.begin() as conn:
        erased = await conn.execute(
            sa.text(
                "WITH latest AS ("
                "  SELECT DISTINCT ON (report_id) report_id, event->>'status' AS status,"
                "         occurred_at"
                "  FROM notifier.status_events ORDER BY report_id, occurred_at DESC),"
                " expired AS ("
                "  SELECT c.id FROM notifier.contacts c JOIN latest l USING (report_id)"
                "  WHERE l.status = ANY(CAST(:closed AS text[]))"
                "  AND l.occurred_at < now() - CAST(:retention AS interval)"
                "  AND NOT EXISTS (SELECT 1 FROM notifier.notifications n"
                "                  WHERE n.contact_id = c.id AND n.state IN ('pending', 'sending'))),"
                " sent AS (DELETE FROM notifier.notifications n USING expired e"
                "          WHERE n.contact_id = e.id)"
                " DELETE FROM notifier.contacts c USING expired e WHERE c.id = e.id"
            ),
            {"closed": closed, "retention": retention},
        )
    CONTACTS_ERASED.inc(erased.rowcount)
    return erased.rowcount


async def preference_of(engine: AsyncEngine, token: str) -> Preference | None:
    """The reporter's choice for the report this link belongs to; None for an unknown link."""
    async with engine.connect() as conn:
        value = await conn.scalar(
            sa.select(contacts.c.preference).where(contacts.c.unsubscribe_token == token).limit(1)
        )
    return None if value is None else Preference(value)


async def set_preference(engine: AsyncEngine, token: str, preference: Preference) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            contacts.update()
            .where(contacts.c.unsubscribe_token == token)
            .values(preference=preference.value)
        )
        return bool(result.rowcount)


async def parked(engine: AsyncEngine, limit: int = 100) -> list[dict[str, Any]]:
    n = notifications
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                n.c.id,
                n.c.event_id,
                n.c.report_id,
                n.c.channel,
                n.c.attempts,
                n.c.last_error,
                n.c.created_at,
            )
            .where(n.c.state == "parked")
            .order_by(n.c.id)
            .limit(limit)
        )
        return [dict(r._mapping) for r in rows]


async def retry(engine: AsyncEngine, notification_id: int) -> bool:
    """Send a parked notification again (after the cause was fixed)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            notifications.update()
            .where(notifications.c.id == notification_id, notifications.c.state == "parked")
            .values(state="pending", attempts=0, next_attempt_at=sa.func.now())
        )
        return bool(result.rowcount)


#: Claims from before instances had heartbeats (no ``claimed_by``) expire the old way.
LEGACY_CLAIM_LEASE = timedelta(minutes=5)
CLAIMS_RELEASED = Counter(
    "mm_notification_claims_released_total",
    "Claimed notifications taken back from notifier instances that stopped heartbeating",
)


def new_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class Dispatcher:
    """Delivers pending notifications, each in its own transaction, several at once. Failures
    back off and are parked after ``max_attempts`` without holding up the others.

    Each dispatcher is one instance: it heartbeats into ``notifier.instances`` and claims
    under its id. It claims and sends only while its lease holds, half of
    ``instance_dead_after_s`` from the start of its last successful heartbeat (local monotonic
    time), while the others release its claims only once its heartbeat is older than the whole
    of it (database time): a live instance is never released while it may still send. One
    that lost its lease (the database away too long) comes back as a new instance, so that its
    old claims are released like a dead one's."""

    def __init__(
        self,
        engine: AsyncEngine,
        mail_senders: list[MailSender],
        hook_sender: HookSender | None,
        settings: NotifierSettings,
    ) -> None:
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._mail_senders = mail_senders
        self._hook_sender = hook_sender
        self._settings = settings
        self._wakeup = asyncio.Event()
        self.instance_id = new_instance_id()
        #: Every id this process has had: its claims under a former one are still its own.
        self._ids = [self.instance_id]
        #: Outcomes the database could not take when they happened (notification id → the
        #: values to record): recorded before anything else, never sent again meanwhile.
        self._unsettled: dict[int, dict[str, Any]] = {}
        #: Until when (event loop time) this instance may claim and send.
        self._lease_until: float | None = None
        #: Closes the senders' connections at shutdown.
        self.closers: list[Callable[[], Awaitable[None]]] = []

    def notify(self) -> None:
        self._wakeup.set()

    def _mail(self, event: ReportStatusChanged, contact: Any) -> Mail:
        locale = "en" if contact.locale == "en" else "de"
        category = CATEGORIES_BY_CODE.get(event.service_code)
        tracking = f"{self._settings.tracking_base_url}/{event.report_id}"
        unsubscribe = f"{self._settings.public_base_url}/v1/unsubscribe/{contact.unsubscribe_token}"
        subject, text, html = render(
            "status_changed",
            locale,
            first_name=contact.first_name,
            status=event.status.value,
            status_label=STATUS_LABELS[locale][event.status],
            note_only=event.note_only,
            category=category.name(locale) if category else event.service_code,
            office=event.office.name if event.office else "",
            public_note=event.public_note,
            tracking_url=tracking,
            original_url=f"{self._settings.tracking_base_url}/{event.duplicate_of}"
            if event.duplicate_of
            else None,
            unsubscribe_url=unsubscribe,
            preferences_url=f"{self._settings.public_base_url}/v1/preferences/{contact.unsubscribe_token}",
        )
        return Mail(
            to=str(contact.email),
            subject=subject,
            text=text,
            html=html,
            message_id=f"<{event.event_id}.{contact.contact_id}@maengelmelder>",
            unsubscribe_url=unsubscribe,
        )

    def _leased(self) -> bool:
        loop = asyncio.get_running_loop()
        return self._lease_until is not None and loop.time() < self._lease_until

    async def heartbeat(self) -> None:
        """Tell the other instances this one is alive (renewing the lease), then take back the
        claims of instances that are not."""
        s = self._settings
        started = asyncio.get_running_loop().time()
        dead_after = timedelta(seconds=s.instance_dead_after_s)
        async with self._engine.begin() as conn:
            alive = await conn.scalar(
                instances.update()
                .where(
                    instances.c.id == self.instance_id,
                    instances.c.heartbeat_at > sa.func.now() - dead_after,
                )
                .values(heartbeat_at=sa.func.now())
                .returning(instances.c.id)
            )
            if alive is None:
                if self._lease_until is not None:
                    log.warning("instance %s lost its lease; rejoining anew", self.instance_id)
                    self.instance_id = new_instance_id()
                    self._ids.append(self.instance_id)
                await conn.execute(instances.insert().values(id=self.instance_id))
        self._lease_until = started + s.instance_dead_after_s / 2
        # Before anybody's claims are released: ours may be among them under a former id.
        await self._settle()
        await self.release_claims_of_dead_instances()

    async def release_claims_of_dead_instances(self) -> int:
        """Claims of instances silent for ``instance_dead_after_s`` (killed, cut off) go back
        to the queue; returns how many."""
        n, i = notifications, instances
        dead_after = timedelta(seconds=self._settings.instance_dead_after_s)
        live = sa.exists().where(
            i.c.id == n.c.claimed_by, i.c.heartbeat_at > sa.func.now() - dead_after
        )
        async with self._engine.begin() as conn:
            released = await conn.execute(
                n.update()
                .where(
                    n.c.state == "sending",
                    sa.or_(
                        sa.and_(n.c.claimed_by.is_not(None), ~live),
                        sa.and_(
                            n.c.claimed_by.is_(None),
                            n.c.claimed_at < sa.func.now() - LEGACY_CLAIM_LEASE,
                        ),
                    ),
                )
                .values(state="pending", claimed_by=None)
            )
            await conn.execute(i.delete().where(i.c.heartbeat_at < sa.func.now() - dead_after))
        if released.rowcount:
            CLAIMS_RELEASED.inc(released.rowcount)
            log.warning("released %d claims of notifier instances gone", released.rowcount)
        return int(released.rowcount)

    async def leave(self) -> None:
        """On shutdown: give back this instance's claims at once (no need to wait until it
        counts as dead), after recording what it kept."""
        with contextlib.suppress(Exception):
            await self._settle()
        async with self._engine.begin() as conn:
            await conn.execute(
                notifications.update()
                .where(
                    notifications.c.state == "sending",
                    notifications.c.claimed_by.in_(self._ids),
                    notifications.c.id.not_in(list(self._unsettled)),
                )
                .values(state="pending", claimed_by=None)
            )
            await conn.execute(instances.delete().where(instances.c.id.in_(self._ids)))

    async def deliver_due(self) -> int:
        """Claim a batch of due notifications, deliver them over several connections at once,
        and record each outcome as soon as it is known. Returns how many were claimed."""
        await self._settle()
        if not self._leased():
            return 0
        claimed = await self._claim(25 * len(self._mail_senders))
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for row in claimed:
            queue.put_nowait(row)

        async def worker(sender: MailSender) -> None:
            # Without the lease the rest stays claimed: the others may be releasing it. With
            # an outcome unrecorded the database is away: no more sending until it is back.
            while not queue.empty() and self._leased() and not self._unsettled:
                row = queue.get_nowait()
                try:
                    await self._deliver(row, sender)
                except Exception as exc:
                    if row.id in self._unsettled:
                        log.warning("outcome of notification %s kept to record later", row.id)
                        continue
                    # Cannot even be attempted (a bug, bad data): parked, never blocking.
                    log.exception("notification %s parked", row.id)
                    with contextlib.suppress(Exception):
                        await self._finish(row.id, state="parked", last_error=repr(exc)[:2000])

        await asyncio.gather(*(worker(s) for s in self._mail_senders))
        if self._leased():
            # Claimed but not attempted (the database went away): back to the queue.
            while not queue.empty():
                self._unsettled[queue.get_nowait().id] = {"state": "pending", "claimed_by": None}
        with contextlib.suppress(Exception):
            await self._settle()
        return len(claimed)

    async def _claim(self, limit: int) -> list[Any]:
        n, c = notifications, contacts
        earlier = n.alias("earlier")
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            ids = (
                await conn.scalars(
                    sa.select(n.c.id)
                    .where(n.c.state == "pending", n.c.next_attempt_at <= now)
                    # In order per recipient: "resolved" never overtakes a retried "in progress".
                    .where(
                        ~sa.exists().where(
                            earlier.c.state.in_(["pending", "sending"]),
                            earlier.c.channel == n.c.channel,
                            earlier.c.report_id == n.c.report_id,
                            sa.func.coalesce(earlier.c.contact_id, 0)
                            == sa.func.coalesce(n.c.contact_id, 0),
                            earlier.c.id < n.c.id,
                        )
                    )
                    .order_by(n.c.id)
                    .limit(limit)
                    .with_for_update(of=n, skip_locked=True)
                )
            ).all()
            if not ids:
                return []
            claimed = n.c.id == sa.func.any(sa.cast(sa.literal(list(ids)), pg.ARRAY(sa.BigInteger)))
            await conn.execute(
                n.update()
                .where(claimed)
                .values(state="sending", claimed_at=now, claimed_by=self.instance_id)
            )
            return list(
                (
                    await conn.execute(
                        sa.select(
                            n.c.id,
                            n.c.event,
                            n.c.channel,
                            n.c.attempts,
                            n.c.contact_id,
                            c.c.email,
                            c.c.first_name,
                            c.c.locale,
                            c.c.preference,
                            c.c.unsubscribe_token,
                        )
                        .select_from(n.outerjoin(c, c.c.id == n.c.contact_id))
                        .where(claimed)
                        .order_by(n.c.id)
                    )
                ).all()
            )

    async def _finish(self, notification_id: int, **values: Any) -> None:
        """Record an outcome right after the attempt. Should the database be away, the
        outcome is kept and recorded once it is back (so a sent mail is not sent again);
        raises then."""
        try:
            await self._record(notification_id, values)
        except Exception:
            self._unsettled[notification_id] = values
            raise

    async def _settle(self) -> None:
        """Record the outcomes kept while the database was away (raises while it still is)."""
        for notification_id, values in list(self._unsettled.items()):
            await self._record(notification_id, values)
            # The heartbeat may have settled it meanwhile.
            self._unsettled.pop(notification_id, None)

    async def _record(self, notification_id: int, values: dict[str, Any]) -> None:
        # One statement, autocommitted (one round trip, no BEGIN and COMMIT around it): a
        # crash repeats at most the message in flight on each connection. Not over a claim
        # another instance holds now (ours was released meanwhile).
        n = notifications
        mine = n.c.claimed_by == sa.func.any(sa.cast(sa.literal(self._ids), pg.ARRAY(sa.Text)))
        async with self._autocommit.connect() as conn:
            await conn.execute(
                n.update()
                .where(n.c.id == notification_id, sa.or_(mine, n.c.state == "pending"))
                .values(**values)
            )

    async def _deliver(self, row: Any, mail_sender: MailSender) -> None:
        event = ReportStatusChanged.model_validate(row.event)
        channel = row.channel
        if channel == EMAIL and not wants(Preference(row.preference), event.status):
            await self._finish(row.id, state="skipped")
            NOTIFICATIONS.labels(channel, "skipped").inc()
            return
        try:
            if channel == EMAIL:
                await mail_sender.send(self._mail(event, row))
            else:
                assert self._hook_sender is not None, "webhook not configured"
                await self._hook_sender.send(row.event, str(event.event_id))
        except Exception as exc:
            attempts = row.attempts + 1
            parked = attempts >= self._settings.max_attempts
            await self._finish(
                row.id,
                attempts=attempts,
                state="parked" if parked else "pending",
                last_error=repr(exc)[:2000],
                next_attempt_at=datetime.now(UTC) + timedelta(seconds=retry_delay_s(attempts)),
            )
            NOTIFICATIONS.labels(channel, "parked" if parked else "failed").inc()
            log.warning("%s %s failed (attempt %d): %r", channel, row.id, attempts, exc)
            return
        await self._finish(row.id, state="sent", sent_at=datetime.now(UTC))
        NOTIFICATIONS.labels(channel, "sent").inc()
        DELIVERY_LATENCY.labels(channel).observe(
            (datetime.now(UTC) - event.occurred_at).total_seconds()
        )

    async def _keep_heartbeat(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except Exception:
                log.exception("notifier heartbeat failed; trying again")
            await asyncio.sleep(self._settings.instance_heartbeat_interval_s)

    async def run(self, poll_interval_s: float = 0.5) -> None:
        heartbeat = asyncio.create_task(self._keep_heartbeat())
        try:
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
        finally:
            heartbeat.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.leave(), 5)


async def record_office_directory(engine: AsyncEngine, event: OfficeDirectoryChanged) -> None:
    async with engine.begin() as conn:
        await conn.execute(offices.delete().where(offices.c.jurisdiction == event.jurisdiction))
        if event.offices:
            await conn.execute(
                offices.insert(),
                [
                    {
                        "jurisdiction": event.jurisdiction,
                        "code": o.code,
                        "name": o.name,
                        "email": o.email,
                    }
                    for o in event.offices
                ],
            )


async def send_office_reminder(
    engine: AsyncEngine, sender: MailSender, settings: NotifierSettings, event: OfficeReminderDue
) -> None:
    """The daily summary to the office's address. The inbox row commits only after the mail
    was accepted, so a failure is retried by redelivery (at worst one summary twice)."""
    async with engine.begin() as conn:
        if not await first_delivery(conn, inbox, event.event_id):
            return
        office = (
            await conn.execute(
                sa.select(offices.c.name, offices.c.email).where(
                    offices.c.jurisdiction == event.jurisdiction,
                    offices.c.code == event.office_code,
                )
            )
        ).first()
        if office is None:
            log.warning("no address for office %s: reminder dropped", event.office_code)
            return

        def items(tickets: tuple[Any, ...]) -> list[dict[str, Any]]:
            return [
                {
                    "category": CATEGORIES_BY_CODE[t.service_code].name_de
                    if t.service_code in CATEGORIES_BY_CODE
                    else t.service_code,
                    "days": t.days,
                    "url": f"{settings.tracking_base_url}/{t.report_id}",
                }
                for t in tickets
            ]

        subject, text, html = render(
            "office_reminder",
            "de",
            office=office.name,
            day=event.day.isoformat(),
            not_accepted=items(event.not_accepted),
            stalled=items(event.stalled),
            accept_days=settings.reminder_accept_within_working_days,
            work_days=settings.reminder_work_within_days,
        )
        await sender.send(
            Mail(
                to=office.email,
                subject=subject,
                text=text,
                html=html,
                message_id=f"<{event.event_id}@maengelmelder>",
                unsubscribe_url=None,
            )
        )
    NOTIFICATIONS.labels("office_reminder", "sent").inc()
