"""The notifier's use cases: remember contacts, turn status changes into notifications, deliver
them — e-mail to each contact, and one signed webhook per change."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode
from uuid import UUID

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import (
    STATUS_LABELS,
    JurisdictionBoundaryChanged,
    OfficeDirectoryChanged,
    OfficeReminderDue,
    ReporterContactSubmitted,
    ReportEvent,
    ReportRouted,
    ReportStatus,
    ReportStatusChanged,
)
from mm_shared.outbox import first_deliveries, first_delivery
from notifier.adapters.db import (
    alert_subscriptions,
    contacts,
    inbox,
    instances,
    jurisdictions,
    notifications,
    offices,
    report_jurisdictions,
    status_events,
)
from notifier.adapters.senders import compose
from notifier.domain import City, Mail, Preference, retry_delay_s, wants
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
#: Reporters' mails, the city app's webhook, the office's mail when a reporter reopens a
#: report, area alerts to subscribers.
EMAIL, WEBHOOK, OFFICE, ALERT = "email", "webhook", "office", "alert"


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
    including changes that reached us before their contact did. A contact event seen before
    (redelivered, or re-announced by intake after a broker lost messages) is dropped by its
    event id, also when its contact was erased meanwhile."""
    fresh_ids = await first_deliveries(conn, inbox, [e.event_id for e in events])
    events = [e for e in events if e.event_id in fresh_ids]
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
                "reporter_token": e.reporter_token,
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
        await _queue_to_nobody(conn, WEBHOOK, rows)
    # The office hears that the reporter says it is not fixed.
    await _queue_to_nobody(
        conn, OFFICE, [r for r, e in zip(rows, fresh, strict=True) if e.reopened_by_reporter]
    )
    for event in fresh:
        if event.status is ReportStatus.DUPLICATE and event.duplicate_of is not None:
            await _hand_on_contacts(conn, event)


async def _queue_to_nobody(
    conn: AsyncConnection, channel: str, stored: Sequence[dict[str, Any]]
) -> None:
    """One notification per stored status event on a channel that is no contact's: the
    webhook, the office's mail."""
    if stored:
        await conn.execute(
            pg.insert(notifications).on_conflict_do_nothing(),
            [
                {
                    "event_id": r["event_id"],
                    "report_id": r["report_id"],
                    "channel": channel,
                    "event": r["event"],
                    "state": "pending",
                }
                for r in stored
            ],
        )


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
    events: Sequence[ReporterContactSubmitted | ReportStatusChanged | ReportRouted],
    with_webhook: bool,
) -> None:
    """A consumed batch of contacts, status changes and new reports, in one transaction."""
    async with engine.begin() as conn:
        await record_report_jurisdictions(conn, events)
        await record_routed(conn, [e for e in events if isinstance(e, ReportRouted)])
        await record_contacts(conn, [e for e in events if isinstance(e, ReporterContactSubmitted)])
        await record_status_changes(
            conn, [e for e in events if isinstance(e, ReportStatusChanged)], with_webhook
        )


async def record_report_jurisdictions(conn: AsyncConnection, events: Sequence[ReportEvent]) -> None:
    """Each report's jurisdiction, from the first event that names it (the events of one
    report agree on it; a reporter's contact may come without it)."""
    named = {e.report_id: e.jurisdiction for e in events if e.jurisdiction}
    if named:
        await conn.execute(
            sa.text(
                "INSERT INTO notifier.report_jurisdictions (report_id, jurisdiction)"
                " SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:codes AS text[]))"
                " ON CONFLICT DO NOTHING"
            ),
            {"ids": list(named), "codes": list(named.values())},
        )


async def city_of(conn: AsyncConnection, jurisdiction: str | None) -> City:
    """What the notifier knows of a jurisdiction's name and sender name (nothing for None)."""
    if jurisdiction is None:
        return City()
    row = (
        await conn.execute(
            sa.select(jurisdictions.c.name, jurisdictions.c.sender_name).where(
                jurisdictions.c.code == jurisdiction
            )
        )
    ).first()
    return City(row.name, row.sender_name) if row else City()


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
        erased = await _erase_contacts(
            conn,
            "latest AS ("
            "  SELECT DISTINCT ON (report_id) report_id, event->>'status' AS status,"
            "         occurred_at"
            "  FROM notifier.status_events ORDER BY report_id, occurred_at DESC),"
            " expired AS ("
            "  SELECT c.id FROM notifier.contacts c JOIN latest l USING (report_id)"
            "  WHERE l.status = ANY(CAST(:closed AS text[]))"
            "  AND l.occurred_at < now() - CAST(:retention AS interval)"
            "  AND NOT EXISTS (SELECT 1 FROM notifier.notifications n"
            "                  WHERE n.contact_id = c.id AND n.state IN ('pending', 'sending')))",
            {"closed": closed, "retention": retention},
        )
        # Subscriptions nobody confirmed are no consent: gone after a week.
        await conn.execute(
            alert_subscriptions.delete().where(
                alert_subscriptions.c.confirmed_at.is_(None),
                alert_subscriptions.c.created_at < sa.func.now() - UNCONFIRMED_KEPT,
            )
        )
    CONTACTS_ERASED.inc(erased)
    return erased


UNCONFIRMED_KEPT = timedelta(days=7)


async def _erase_contacts(conn: AsyncConnection, expired: str, parameters: dict[str, Any]) -> int:
    """Erase the contacts whose ids the CTE ``expired`` (defined in ``expired``, with any CTEs
    it needs) selects: their addresses and names, and the notifications sent or due to them.
    Returns how many were erased."""
    erased = await conn.execute(
        sa.text(
            f"WITH {expired},"
            " sent AS (DELETE FROM notifier.notifications n USING expired e"
            "          WHERE n.contact_id = e.id)"
            " DELETE FROM notifier.contacts c USING expired e WHERE c.id = e.id"
        ),
        parameters,
    )
    return erased.rowcount


CONTACTS_ERASED_ON_REQUEST = Counter(
    "mm_contacts_erased_on_request_total", "Reporters' contact data erased at their request"
)


class WrongReporterToken(PermissionError):
    pass


async def erase_reporter_contact(engine: AsyncEngine, report_id: UUID, token: str) -> bool:
    """The reporter asks to erase their contact data (GDPR Art. 17): their address and name,
    the notifications due or sent to them (also those as a follower of the report theirs was
    merged into). The report itself is intake's and stays, without them. False if this report
    has no reporter's contact (any more); WrongReporterToken if the token is not theirs."""
    async with engine.begin() as conn:
        reporters = (
            await conn.execute(
                sa.select(contacts.c.id, contacts.c.reporter_token)
                .where(contacts.c.report_id == report_id, contacts.c.reporter_token.is_not(None))
                .with_for_update()
            )
        ).all()
        if not reporters:
            return False
        theirs = [
            c.id
            for c in reporters
            if hmac.compare_digest(c.reporter_token.encode(), token.encode())
        ]
        if not theirs:
            raise WrongReporterToken(report_id)
        erased = await _erase_contacts(
            conn,
            "mine AS (SELECT id, unsubscribe_token FROM notifier.contacts"
            "         WHERE id = ANY(CAST(:ids AS bigint[]))),"
            # Handed on to the original when this report was merged as a duplicate: that
            # copy's link token derives from this one's (see _hand_on_contacts).
            " expired AS (SELECT id FROM mine UNION SELECT c.id FROM mine m"
            "  JOIN notifier.status_events s ON s.report_id = :report_id"
            "   AND s.event->>'duplicate_of' IS NOT NULL"
            "  JOIN notifier.contacts c"
            "   ON c.unsubscribe_token = md5(m.unsubscribe_token || (s.event->>'duplicate_of')))",
            {"ids": theirs, "report_id": report_id},
        )
    CONTACTS_ERASED_ON_REQUEST.inc(erased)
    return True


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
        if contact.reporter_token:  # the reporter's own link: with their actions
            tracking += f"?{urlencode({'token': contact.reporter_token})}"
        unsubscribe = f"{self._settings.public_base_url}/v1/unsubscribe/{contact.unsubscribe_token}"
        return compose(
            "status_changed",
            locale,
            city=City(contact.jurisdiction_name, contact.sender_name),
            to=str(contact.email),
            message_id=f"<{event.event_id}.{contact.contact_id}@maengelmelder>",
            unsubscribe_url=unsubscribe,
            first_name=contact.first_name,
            status=event.status.value,
            status_label=STATUS_LABELS[locale][event.status],
            note_only=event.note_only,
            reopened=event.reopened_by_reporter,
            # The reporter (who holds the token) reopened it; followers are told it was them.
            by_you=bool(contact.reporter_token),
            category=category.name(locale) if category else event.service_code,
            office=event.office.name if event.office else "",
            public_note=event.public_note,
            tracking_url=tracking,
            original_url=f"{self._settings.tracking_base_url}/{event.duplicate_of}"
            if event.duplicate_of
            else None,
            preferences_url=f"{self._settings.public_base_url}/v1/preferences/{contact.unsubscribe_token}",
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
        n, c, s = notifications, contacts, alert_subscriptions
        rj, j = report_jurisdictions, jurisdictions
        # The event's own jurisdiction, else the one an earlier event of the report named.
        jurisdiction = sa.func.coalesce(n.c.event["jurisdiction"].astext, rj.c.jurisdiction)
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
                            sa.func.coalesce(earlier.c.subscription_id, 0)
                            == sa.func.coalesce(n.c.subscription_id, 0),
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
                            n.c.subscription_id,
                            # A reporter's contact, or a subscriber to area alerts.
                            sa.func.coalesce(c.c.email, s.c.email).label("email"),
                            c.c.first_name,
                            sa.func.coalesce(c.c.locale, s.c.locale).label("locale"),
                            c.c.preference,
                            sa.func.coalesce(c.c.unsubscribe_token, s.c.unsubscribe_token).label(
                                "unsubscribe_token"
                            ),
                            c.c.reporter_token,
                            s.c.area_code,
                            jurisdiction.label("jurisdiction"),
                            j.c.name.label("jurisdiction_name"),
                            j.c.sender_name,
                        )
                        .select_from(
                            n.outerjoin(c, c.c.id == n.c.contact_id)
                            .outerjoin(s, s.c.id == n.c.subscription_id)
                            .outerjoin(rj, rj.c.report_id == n.c.report_id)
                            .outerjoin(j, j.c.code == jurisdiction)
                        )
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

    def _alert_mail(self, event: ReportRouted, row: Any) -> Mail:
        locale = "en" if row.locale == "en" else "de"
        category = CATEGORIES_BY_CODE.get(event.service_code or "")
        area = next((a for a in event.areas if a.code == row.area_code), None) or (
            event.areas[-1] if event.areas else None
        )
        unsubscribe = f"{self._settings.public_base_url}/alerts/unsubscribe/{row.unsubscribe_token}"
        return compose(
            "alert",
            locale,
            city=City(row.jurisdiction_name, row.sender_name),
            to=str(row.email),
            message_id=f"<{event.event_id}.alert{row.subscription_id}@maengelmelder>",
            unsubscribe_url=unsubscribe,
            category=category.name(locale) if category else event.service_code or "",
            area=area.name if area else None,
            office=event.office.name,
            report_url=f"{self._settings.tracking_base_url}/{event.report_id}",
        )

    async def _office_mail(self, event: ReportStatusChanged, row: Any) -> Mail | None:
        """To the office a reporter sent their report back to, from the office directory
        (office codes are unique within a jurisdiction only)."""
        if event.office is None:
            return None
        in_jurisdiction = (
            [offices.c.jurisdiction == row.jurisdiction] if row.jurisdiction is not None else []
        )
        async with self._engine.connect() as conn:
            office = (
                await conn.execute(
                    sa.select(offices.c.name, offices.c.email)
                    .where(offices.c.code == event.office.code, *in_jurisdiction)
                    .limit(1)
                )
            ).first()
        if office is None:
            log.warning("no address for office %s: reopening not mailed", event.office.code)
            return None
        category = CATEGORIES_BY_CODE.get(event.service_code)
        return compose(
            "office_reopened",
            "de",
            city=City(row.jurisdiction_name, row.sender_name),
            to=office.email,
            message_id=f"<{event.event_id}.office@maengelmelder>",
            category=category.name_de if category else event.service_code,
            category_en=category.name_en if category else event.service_code,
            office=office.name,
            note=event.public_note,
            report_url=f"{self._settings.tracking_base_url}/{event.report_id}",
        )

    async def _compose(self, row: Any) -> Mail | None:
        """The mail a notification row stands for; None if it is not to be sent."""
        if row.channel == ALERT:
            return self._alert_mail(ReportRouted.model_validate(row.event), row)
        event = ReportStatusChanged.model_validate(row.event)
        if row.channel == OFFICE:
            return await self._office_mail(event, row)
        if not wants(Preference(row.preference), event.status):
            return None
        return self._mail(event, row)

    async def _deliver(self, row: Any, mail_sender: MailSender) -> None:
        channel = row.channel
        try:
            if channel == WEBHOOK:
                assert self._hook_sender is not None, "webhook not configured"
                await self._hook_sender.send(row.event, str(row.event["event_id"]))
            else:
                mail = await self._compose(row)
                if mail is None:
                    await self._finish(row.id, state="skipped")
                    NOTIFICATIONS.labels(channel, "skipped").inc()
                    return
                await mail_sender.send(mail)
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
        occurred_at = datetime.fromisoformat(row.event["occurred_at"])
        DELIVERY_LATENCY.labels(channel).observe((datetime.now(UTC) - occurred_at).total_seconds())

    async def _keep_heartbeat(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except Exception:
                log.exception("notifier heartbeat failed; trying again")
            await asyncio.sleep(self._settings.instance_heartbeat_interval_s)

    async def run(self, poll_interval_s: float = 0.5) -> None:
        """Deliver due notifications; woken by new ones of this process, and polling for the
        rest (retries, other instances' released claims): every ``poll_interval_s`` while
        there is work, doubling up to ``idle_poll_interval_s`` while there is none."""
        heartbeat = asyncio.create_task(self._keep_heartbeat())
        idle_poll_interval_s = max(self._settings.idle_poll_interval_s, poll_interval_s)
        wait_s = poll_interval_s
        try:
            while True:
                # Cleared before delivering: a notify() meanwhile then ends the wait below at
                # once instead of being lost until the next poll.
                self._wakeup.clear()
                try:
                    delivered = False
                    while await self.deliver_due():
                        delivered = True
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("notification dispatch failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
                wait_s = poll_interval_s if delivered else min(idle_poll_interval_s, 2 * wait_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait_s)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.leave(), 5)


async def record_office_directory(engine: AsyncEngine, event: OfficeDirectoryChanged) -> None:
    """Where each office is reached, and the sender name of the jurisdiction's mails."""
    async with engine.begin() as conn:
        upsert = pg.insert(jurisdictions).values(
            code=event.jurisdiction, sender_name=event.sender_name
        )
        await conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[jurisdictions.c.code],
                set_={"sender_name": upsert.excluded.sender_name},
            )
        )
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


async def record_jurisdiction_boundary(
    engine: AsyncEngine, event: JurisdictionBoundaryChanged
) -> None:
    """The jurisdiction's name, for the wording of its mails (kept when it is retired: its
    reports' reporters still hear about them)."""
    async with engine.begin() as conn:
        upsert = pg.insert(jurisdictions).values(code=event.jurisdiction, name=event.name)
        await conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[jurisdictions.c.code], set_={"name": upsert.excluded.name}
            )
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
        city = await city_of(conn, event.jurisdiction)

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

        await sender.send(
            compose(
                "office_reminder",
                "de",
                city=city,
                to=office.email,
                message_id=f"<{event.event_id}@maengelmelder>",
                office=office.name,
                day=event.day.isoformat(),
                not_accepted=items(event.not_accepted),
                stalled=items(event.stalled),
                past_service_level=items(event.past_service_level),
                accept_days=event.accept_within_working_days,
                work_days=event.work_within_days,
            )
        )
    NOTIFICATIONS.labels("office_reminder", "sent").inc()


# Area alerts: new reports in an area, by e-mail, to whoever subscribed and confirmed.


@dataclass(frozen=True)
class AlertRequest:
    email: str
    locale: str
    service_code: str | None
    area_code: str | None
    point: tuple[float, float, float] | None  # lat, long, radius in metres
    #: Only this jurisdiction's reports (area codes are unique within one only); None: any.
    jurisdiction: str | None = None


class TooManyUnconfirmed(Exception):
    """The address has asked for several alerts lately without confirming one: no more mails
    to it for now (else anybody could make us mail anybody)."""


#: Unconfirmed subscriptions per address within a day before we stop mailing it.
UNCONFIRMED_PER_DAY = 3


async def subscribe_to_alerts(
    engine: AsyncEngine, sender: MailSender, settings: NotifierSettings, request: AlertRequest
) -> None:
    """A subscription waiting for its confirmation (double opt-in): it is stored, and the mail
    asking to confirm it is sent, before the caller is answered. Unconfirmed, it is deleted
    after a week."""
    confirm_token = secrets.token_urlsafe(24)
    async with engine.begin() as conn:
        recent = await conn.scalar(
            sa.select(sa.func.count()).where(
                sa.func.lower(alert_subscriptions.c.email) == request.email.lower(),
                alert_subscriptions.c.confirmed_at.is_(None),
                alert_subscriptions.c.created_at > sa.func.now() - timedelta(days=1),
            )
        )
        if (recent or 0) >= UNCONFIRMED_PER_DAY:
            raise TooManyUnconfirmed(request.email)
        lat, long, radius_m = request.point or (None, None, None)
        await conn.execute(
            alert_subscriptions.insert().values(
                email=request.email,
                locale=request.locale,
                service_code=request.service_code,
                area_code=request.area_code,
                jurisdiction=request.jurisdiction,
                lat=lat,
                long=long,
                radius_m=radius_m,
                confirm_token=confirm_token,
                unsubscribe_token=secrets.token_urlsafe(24),
            )
        )
        category = CATEGORIES_BY_CODE.get(request.service_code or "")
        locale = "en" if request.locale == "en" else "de"
        city = await city_of(conn, request.jurisdiction)
        # Inside the transaction: a mail that could not be sent leaves no subscription behind.
        await sender.send(
            compose(
                "alert_confirm",
                locale,
                city=city,
                to=request.email,
                message_id=f"<confirm.{confirm_token}@maengelmelder>",
                place=_alert_place(locale, request),
                category=category.name(locale) if category else request.service_code,
                confirm_url=f"{settings.public_base_url}/alerts/confirm/{confirm_token}",
            )
        )


def _alert_place(locale: str, request: AlertRequest) -> str:
    if request.point is not None:
        lat, long, radius_m = request.point
        where = "im Umkreis von" if locale == "de" else "within"
        return f"{where} {radius_m:.0f} m ({lat:.5f}, {long:.5f})"
    return f"{'im Gebiet' if locale == 'de' else 'in the area'} {request.area_code}"


async def alert_subscription(
    engine: AsyncEngine, *, confirm_token: str = "", unsubscribe_token: str = ""
) -> Any:
    """The subscription a confirm or unsubscribe link belongs to, or None."""
    s = alert_subscriptions
    condition = (
        s.c.confirm_token == confirm_token
        if confirm_token
        else s.c.unsubscribe_token == unsubscribe_token
    )
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(s).where(condition))).first()


async def confirm_alerts(engine: AsyncEngine, confirm_token: str) -> bool:
    async with engine.begin() as conn:
        confirmed = await conn.execute(
            alert_subscriptions.update()
            .where(alert_subscriptions.c.confirm_token == confirm_token)
            .values(
                confirmed_at=sa.func.coalesce(alert_subscriptions.c.confirmed_at, sa.func.now())
            )
        )
    return bool(confirmed.rowcount)


async def unsubscribe_alerts(engine: AsyncEngine, unsubscribe_token: str) -> bool:
    """The subscription is deleted, with the alerts still due to it."""
    async with engine.begin() as conn:
        deleted = await conn.execute(
            alert_subscriptions.delete().where(
                alert_subscriptions.c.unsubscribe_token == unsubscribe_token
            )
        )
    return bool(deleted.rowcount)


#: Subscriptions an alert goes to: confirmed, of the report's jurisdiction (or any; a report
#: whose event names none is of the deployment's one jurisdiction of its time) and category
#: (or any), for one of its areas or a circle around its place (equirectangular distance: exact
#: enough in a city).
_QUEUE_ALERTS = sa.text(
    "INSERT INTO notifier.notifications"
    " (event_id, report_id, subscription_id, channel, event, state)"
    " SELECT e.event_id, e.report_id, s.id, 'alert', e.event, 'pending'"
    " FROM jsonb_to_recordset(CAST(:events AS jsonb)) AS e(event_id uuid, report_id uuid,"
    "      jurisdiction text, service_code text, lat float8, long float8, area_codes jsonb,"
    "      event jsonb)"
    " JOIN notifier.alert_subscriptions s ON s.confirmed_at IS NOT NULL"
    "  AND (s.jurisdiction IS NULL OR e.jurisdiction IS NULL OR s.jurisdiction = e.jurisdiction)"
    "  AND (s.service_code IS NULL OR s.service_code = e.service_code)"
    "  AND (s.area_code IN (SELECT jsonb_array_elements_text(e.area_codes))"
    "       OR 6371008.8 * sqrt(power(radians(e.lat - s.lat), 2)"
    "          + power(cos(radians((e.lat + s.lat) / 2)) * radians(e.long - s.long), 2))"
    "          <= s.radius_m)"
    " ON CONFLICT DO NOTHING"
)


async def record_routed(conn: AsyncConnection, events: Sequence[ReportRouted]) -> int:
    """New reports (their first routing: not a staff override, and a re-announcement is the
    same event) become alerts to the subscriptions that cover them. Returns how many."""
    first = [e for e in events if not e.override]
    fresh_ids = await first_deliveries(conn, inbox, [e.event_id for e in first])
    fresh = [e for e in first if e.event_id in fresh_ids]
    if not fresh:
        return 0
    rows = [
        {
            "event_id": str(e.event_id),
            "report_id": str(e.report_id),
            "jurisdiction": e.jurisdiction,
            "service_code": e.service_code,
            "lat": e.lat,
            "long": e.long,
            "area_codes": [a.code for a in e.areas],
            "event": e.model_dump(mode="json"),
        }
        for e in fresh
    ]
    queued = await conn.execute(_QUEUE_ALERTS, {"events": json.dumps(rows)})
    return queued.rowcount
