"""Fakes for the notifier's use cases: in-memory repositories behind one unit of work (a copy of
the state is restored when the block raises, as a rolled-back transaction), a database clock
the tests move, and mail and webhook senders that record or fail."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from mm_shared.events import ReportRouted, ReportStatus
from notifier.domain import (
    AlertRequest,
    AlertSubscription,
    City,
    Claimed,
    Contact,
    Mail,
    NewContact,
    Notification,
    Office,
    Outcome,
    ParkedNotification,
    Preference,
    StatusChange,
)
from notifier.ports import Ready
from notifier.settings import NotifierSettings

EPOCH = datetime.min.replace(tzinfo=UTC)
#: Claims from before instances had heartbeats expire after this (as the SQL adapter's).
LEGACY_CLAIM_LEASE = timedelta(minutes=5)


class DatabaseAway(ConnectionError):
    pass


@dataclass
class StoredNotification:
    id: int
    note: Notification
    state: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime = EPOCH
    last_error: str | None = None
    sent_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    created_at: datetime = EPOCH

    def recipient(self) -> tuple[str, UUID, int, int]:
        n = self.note
        return (n.channel, n.report_id, n.contact_id or 0, n.subscription_id or 0)


@dataclass
class State:
    """What the database holds."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    inbox: set[UUID] = field(default_factory=set)
    contacts: dict[int, Contact] = field(default_factory=dict)
    changes: dict[UUID, StatusChange] = field(default_factory=dict)
    notifications: dict[int, StoredNotification] = field(default_factory=dict)
    instances: dict[str, datetime] = field(default_factory=dict)
    offices: dict[tuple[str, str], Office] = field(default_factory=dict)
    cities: dict[str, City] = field(default_factory=dict)
    report_jurisdictions: dict[UUID, str] = field(default_factory=dict)
    alerts: dict[int, AlertSubscription] = field(default_factory=dict)
    next_id: int = 1

    def copy(self) -> State:
        """A copy to work on: the records are frozen but for the notifications."""
        return replace(
            self,
            inbox=set(self.inbox),
            contacts=dict(self.contacts),
            changes=dict(self.changes),
            notifications={i: replace(n) for i, n in self.notifications.items()},
            instances=dict(self.instances),
            offices=dict(self.offices),
            cities=dict(self.cities),
            report_jurisdictions=dict(self.report_jurisdictions),
            alerts=dict(self.alerts),
        )

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class FakeInbox:
    def __init__(self, state: State) -> None:
        self._s = state

    async def first_deliveries(self, event_ids: Sequence[UUID]) -> set[UUID]:
        fresh = set(event_ids) - self._s.inbox
        self._s.inbox |= fresh
        return fresh

    async def first_delivery(self, event_id: UUID) -> bool:
        return bool(await self.first_deliveries([event_id]))


class FakeContacts:
    def __init__(self, state: State) -> None:
        self._s = state

    async def add(self, contacts: Sequence[NewContact]) -> list[Contact]:
        added = []
        for new in contacts:
            taken = any(
                (c.report_id, c.email) == (new.report_id, new.email)
                or c.unsubscribe_token == new.unsubscribe_token
                for c in self._s.contacts.values()
            )
            if not taken:
                contact = Contact(**vars(new), id=self._s.new_id())
                self._s.contacts[contact.id] = contact
                added.append(contact)
        return added

    async def of_reports(self, report_ids: Collection[UUID]) -> list[Contact]:
        return [c for c in self._s.contacts.values() if c.report_id in report_ids]

    async def reporters_of(self, report_id: UUID) -> list[Contact]:
        return [
            c
            for c in self._s.contacts.values()
            if c.report_id == report_id and c.reporter_token is not None
        ]

    async def ids_with_unsubscribe_tokens(self, tokens: Collection[str]) -> list[int]:
        return [c.id for c in self._s.contacts.values() if c.unsubscribe_token in tokens]

    async def preference_of(self, unsubscribe_token: str) -> Preference | None:
        for c in self._s.contacts.values():
            if c.unsubscribe_token == unsubscribe_token:
                return c.preference
        return None

    async def set_preference(self, unsubscribe_token: str, preference: Preference) -> bool:
        matching = [
            c for c in self._s.contacts.values() if c.unsubscribe_token == unsubscribe_token
        ]
        for c in matching:
            self._s.contacts[c.id] = replace(c, preference=preference)
        return bool(matching)

    async def of_reports_closed_before(
        self, cutoff: datetime, closed: Collection[ReportStatus]
    ) -> list[int]:
        latest: dict[UUID, StatusChange] = {}
        for change in sorted(self._s.changes.values(), key=lambda c: c.occurred_at):
            latest[change.report_id] = change
        under_way = {
            n.note.contact_id
            for n in self._s.notifications.values()
            if n.state in ("pending", "sending")
        }
        return [
            c.id
            for c in self._s.contacts.values()
            if c.report_id in latest
            and ReportStatus(json.loads(latest[c.report_id].event_json)["status"]) in closed
            and latest[c.report_id].occurred_at < cutoff
            and c.id not in under_way
        ]

    async def erase(self, contact_ids: Collection[int]) -> int:
        for n in list(self._s.notifications.values()):
            if n.note.contact_id in contact_ids:
                del self._s.notifications[n.id]
        erased = [i for i in contact_ids if i in self._s.contacts]
        for i in erased:
            del self._s.contacts[i]
        return len(erased)


class FakeStatusChanges:
    def __init__(self, state: State) -> None:
        self._s = state

    async def add(self, changes: Sequence[StatusChange]) -> None:
        for change in changes:
            self._s.changes.setdefault(change.event_id, change)

    async def of_reports(self, report_ids: Collection[UUID]) -> list[StatusChange]:
        return sorted(
            (c for c in self._s.changes.values() if c.report_id in report_ids),
            key=lambda c: c.occurred_at,
        )

    async def originals_of(self, report_id: UUID) -> list[UUID]:
        return [
            UUID(original)
            for c in self._s.changes.values()
            if c.report_id == report_id
            and (original := json.loads(c.event_json).get("duplicate_of"))
        ]


class FakeNotificationQueue:
    def __init__(self, state: State, failing: list[bool]) -> None:
        self._s = state
        #: While true, recording outcomes fails as if the database were away.
        self._failing = failing
        #: How many outcomes each record_outcomes call recorded.
        self.recorded_batches: list[int] = []

    async def queue(self, notifications: Sequence[Notification]) -> None:
        def key(n: Notification) -> tuple[UUID, str, int, int]:
            return (n.event_id, n.channel, n.contact_id or 0, n.subscription_id or 0)

        queued = {key(n.note) for n in self._s.notifications.values()}
        for note in notifications:
            if key(note) not in queued:
                queued.add(key(note))
                i = self._s.new_id()
                self._s.notifications[i] = StoredNotification(
                    i, note, next_attempt_at=self._s.now, created_at=self._s.now
                )

    async def claim_due_in_order_per_recipient(
        self, instance_id: str, limit: int, now: datetime
    ) -> list[Claimed]:
        ordered = sorted(self._s.notifications.values(), key=lambda n: n.id)
        claimed: list[StoredNotification] = []
        for n in ordered:
            if len(claimed) >= limit:
                break
            if n.state != "pending" or n.next_attempt_at > now:
                continue
            earlier = any(
                e.id < n.id and e.state in ("pending", "sending") and e.recipient() == n.recipient()
                for e in ordered
            )
            if not earlier:
                claimed.append(n)
        for n in claimed:
            n.state, n.claimed_by, n.claimed_at = "sending", instance_id, now
        return [self._claimed(n) for n in claimed]

    def _claimed(self, n: StoredNotification) -> Claimed:
        note = n.note
        contact = self._s.contacts.get(note.contact_id or 0)
        subscription = self._s.alerts.get(note.subscription_id or 0)
        event = json.loads(note.event_json)
        jurisdiction = event.get("jurisdiction") or self._s.report_jurisdictions.get(note.report_id)
        city = self._s.cities.get(jurisdiction or "", City())
        return Claimed(
            id=n.id,
            channel=note.channel,
            event=event,
            attempts=n.attempts,
            contact_id=note.contact_id,
            subscription_id=note.subscription_id,
            email=contact.email if contact else subscription.email if subscription else None,
            first_name=contact.first_name if contact else None,
            locale=contact.locale if contact else subscription.locale if subscription else None,
            preference=contact.preference.value if contact else None,
            unsubscribe_token=contact.unsubscribe_token
            if contact
            else subscription.unsubscribe_token
            if subscription
            else None,
            reporter_token=contact.reporter_token if contact else None,
            area_code=subscription.area_code if subscription else None,
            jurisdiction=jurisdiction,
            jurisdiction_name=city.name,
            sender_name=city.sender_name,
        )

    async def record_outcomes(
        self, outcomes: Sequence[Outcome], claimants: Collection[str]
    ) -> None:
        if self._failing[0]:
            raise DatabaseAway("the database is away")
        self.recorded_batches.append(len(outcomes))
        for outcome in outcomes:
            n = self._s.notifications.get(outcome.notification_id)
            if n is None or not (n.claimed_by in claimants or n.state == "pending"):
                continue
            for name, value in outcome.values().items():
                setattr(n, name, value)

    async def give_back_claims_of(
        self, claimants: Collection[str], keeping: Collection[int] = ()
    ) -> int:
        given = [
            n
            for n in self._s.notifications.values()
            if n.state == "sending" and n.claimed_by in claimants and n.id not in keeping
        ]
        for n in given:
            n.state, n.claimed_by = "pending", None
        return len(given)

    async def release_claims_of_dead_instances(self, dead_after: timedelta) -> int:
        live = {i for i, beat in self._s.instances.items() if beat > self._s.now - dead_after}
        released = [
            n
            for n in self._s.notifications.values()
            if n.state == "sending"
            and (
                (n.claimed_by is not None and n.claimed_by not in live)
                or (
                    n.claimed_by is None
                    and n.claimed_at is not None
                    and n.claimed_at < self._s.now - LEGACY_CLAIM_LEASE
                )
            )
        ]
        for n in released:
            n.state, n.claimed_by = "pending", None
        return len(released)

    async def parked(self, limit: int) -> list[ParkedNotification]:
        return [
            ParkedNotification(
                n.id,
                n.note.event_id,
                n.note.report_id,
                n.note.channel,
                n.attempts,
                n.last_error,
                n.created_at,
            )
            for n in sorted(self._s.notifications.values(), key=lambda n: n.id)
            if n.state == "parked"
        ][:limit]

    async def retry_parked(self, notification_id: int) -> bool:
        n = self._s.notifications.get(notification_id)
        if n is None or n.state != "parked":
            return False
        n.state, n.attempts, n.next_attempt_at = "pending", 0, self._s.now
        return True


class FakeInstances:
    def __init__(self, state: State) -> None:
        self._s = state

    async def renew(self, instance_id: str, dead_after: timedelta) -> bool:
        beat = self._s.instances.get(instance_id)
        if beat is None or beat <= self._s.now - dead_after:
            return False
        self._s.instances[instance_id] = self._s.now
        return True

    async def join(self, instance_id: str) -> None:
        self._s.instances[instance_id] = self._s.now

    async def forget_dead(self, dead_after: timedelta) -> None:
        for i, beat in list(self._s.instances.items()):
            if beat < self._s.now - dead_after:
                del self._s.instances[i]

    async def leave(self, instance_ids: Collection[str]) -> None:
        for i in instance_ids:
            self._s.instances.pop(i, None)


class FakeOffices:
    def __init__(self, state: State) -> None:
        self._s = state

    async def replace(self, jurisdiction: str, offices: Sequence[Office]) -> None:
        for key in [k for k in self._s.offices if k[0] == jurisdiction]:
            del self._s.offices[key]
        for o in offices:
            self._s.offices[jurisdiction, o.code] = o

    async def find(self, jurisdiction: str | None, code: str) -> Office | None:
        for (j, c), office in sorted(self._s.offices.items()):
            if c == code and (jurisdiction is None or j == jurisdiction):
                return office
        return None


class FakeJurisdictions:
    def __init__(self, state: State) -> None:
        self._s = state

    async def city(self, jurisdiction: str | None) -> City:
        return self._s.cities.get(jurisdiction or "", City())

    async def set_name(self, jurisdiction: str, name: str) -> None:
        self._s.cities[jurisdiction] = replace(self._s.cities.get(jurisdiction, City()), name=name)

    async def set_sender_name(self, jurisdiction: str, sender_name: str | None) -> None:
        self._s.cities[jurisdiction] = replace(
            self._s.cities.get(jurisdiction, City()), sender_name=sender_name
        )

    async def record_reports(self, jurisdiction_of: Mapping[UUID, str]) -> None:
        for report_id, code in jurisdiction_of.items():
            self._s.report_jurisdictions.setdefault(report_id, code)


def _covers(s: AlertSubscription, e: ReportRouted) -> bool:
    if s.confirmed_at is None:
        return False
    if (
        s.jurisdiction is not None
        and e.jurisdiction is not None
        and s.jurisdiction != e.jurisdiction
    ):
        return False
    if s.service_code is not None and s.service_code != e.service_code:
        return False
    if s.area_code is not None and s.area_code in {a.code for a in e.areas}:
        return True
    if s.point is None or e.lat is None or e.long is None:
        return False
    lat, long, radius_m = s.point
    dy = math.radians(e.lat - lat)
    dx = math.cos(math.radians((e.lat + lat) / 2)) * math.radians(e.long - long)
    return 6371008.8 * math.hypot(dx, dy) <= radius_m


class FakeAlertSubscriptions:
    def __init__(self, state: State, queue: FakeNotificationQueue) -> None:
        self._s = state
        self._queue = queue

    async def add(self, request: AlertRequest, confirm_token: str, unsubscribe_token: str) -> None:
        i = self._s.new_id()
        self._s.alerts[i] = AlertSubscription(
            id=i,
            email=request.email,
            locale=request.locale,
            confirm_token=confirm_token,
            unsubscribe_token=unsubscribe_token,
            created_at=self._s.now,
            service_code=request.service_code,
            area_code=request.area_code,
            jurisdiction=request.jurisdiction,
            point=request.point,
        )

    async def unconfirmed_since(self, email: str, since: datetime) -> int:
        return sum(
            1
            for s in self._s.alerts.values()
            if s.email.lower() == email.lower() and s.confirmed_at is None and s.created_at > since
        )

    async def by_confirm_token(self, token: str) -> AlertSubscription | None:
        return next((s for s in self._s.alerts.values() if s.confirm_token == token), None)

    async def by_unsubscribe_token(self, token: str) -> AlertSubscription | None:
        return next((s for s in self._s.alerts.values() if s.unsubscribe_token == token), None)

    async def confirm(self, confirm_token: str, at: datetime) -> bool:
        s = await self.by_confirm_token(confirm_token)
        if s is None:
            return False
        self._s.alerts[s.id] = replace(s, confirmed_at=s.confirmed_at or at)
        return True

    async def delete(self, unsubscribe_token: str) -> bool:
        s = await self.by_unsubscribe_token(unsubscribe_token)
        if s is None:
            return False
        del self._s.alerts[s.id]
        for n in list(self._s.notifications.values()):
            if n.note.subscription_id == s.id:
                del self._s.notifications[n.id]
        return True

    async def delete_unconfirmed_created_before(self, cutoff: datetime) -> int:
        gone = [
            s.id
            for s in self._s.alerts.values()
            if s.confirmed_at is None and s.created_at < cutoff
        ]
        for i in gone:
            del self._s.alerts[i]
        return len(gone)

    async def queue_alerts_to_confirmed_subscriptions_covering(
        self, reports: Sequence[ReportRouted]
    ) -> int:
        alerts = [
            Notification(
                e.event_id, e.report_id, "alert", e.model_dump_json(), subscription_id=s.id
            )
            for e in reports
            for s in sorted(self._s.alerts.values(), key=lambda s: s.id)
            if _covers(s, e)
        ]
        before = len(self._s.notifications)
        await self._queue.queue(alerts)
        return len(self._s.notifications) - before


class FakeUnitOfWork:
    def __init__(self, state: State, failing: list[bool]) -> None:
        self.inbox = FakeInbox(state)
        self.contacts = FakeContacts(state)
        self.status_changes = FakeStatusChanges(state)
        self.notifications = FakeNotificationQueue(state, failing)
        self.instances = FakeInstances(state)
        self.offices = FakeOffices(state)
        self.jurisdictions = FakeJurisdictions(state)
        self.alerts = FakeAlertSubscriptions(state, self.notifications)


class FakeDatabase:
    """The state, and the unit of work factory over it: each unit works on a copy that
    replaces the state when it ends without an exception (and is dropped when it raises)."""

    def __init__(self) -> None:
        self.state = State()
        #: How many units of work were opened, and how many outcomes each recording held.
        self.units = 0
        self.recorded_batches: list[int] = []
        self._failing = [False]

    def go_away(self, away: bool = True) -> None:
        self._failing[0] = away

    def advance(self, by: timedelta) -> None:
        self.state.now += by

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[FakeUnitOfWork]:
        self.units += 1
        working = self.state.copy()
        uow = FakeUnitOfWork(working, self._failing)
        yield uow
        self.recorded_batches += uow.notifications.recorded_batches
        self.state = working

    # What the tests look at.

    def notifications(self, channel: str | None = None) -> list[StoredNotification]:
        return sorted(
            (n for n in self.state.notifications.values() if channel in (None, n.note.channel)),
            key=lambda n: n.id,
        )

    def contacts(self) -> list[Contact]:
        return sorted(self.state.contacts.values(), key=lambda c: c.id)


class FakeMailSender:
    """Records what it sends; fails while ``failures`` says so (an exception or a count)."""

    def __init__(self) -> None:
        self.sent: list[Mail] = []
        self.failures = 0
        self.always_fail = False

    async def send(self, mail: Mail, ready: Ready | None = None) -> None:
        if ready is not None:
            await ready()
        if self.always_fail or self.failures:
            self.failures = max(0, self.failures - 1)
            raise ConnectionRefusedError("the SMTP server refused")
        self.sent.append(mail)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.sent if m.to == address]


class FakeHookSender:
    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], str]] = []

    async def send(self, payload: dict[str, Any], event_id: str) -> None:
        self.sent.append((payload, event_id))


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def mail() -> FakeMailSender:
    return FakeMailSender()


@pytest.fixture
def hooks() -> FakeHookSender:
    return FakeHookSender()


@pytest.fixture
def settings() -> NotifierSettings:
    return NotifierSettings(
        public_base_url="https://notifier.example",
        tracking_base_url="https://web.example/reports",
        max_attempts=3,
        workers=2,
    )
