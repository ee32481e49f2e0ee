"""What the notifier's use cases need of the world, as interfaces: the repositories of one unit
of work (a transaction), the factory that opens one, and the channels messages leave by.
``adapters/db.py`` implements the repositories over PostgreSQL, ``adapters/senders.py`` the
channels; the unit tests use in-memory fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

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

#: Awaited by a mail sender before the server takes the mail (see MailSender.send).
Ready = Callable[[], Awaitable[None]]


class MailSender(Protocol):
    async def send(self, mail: Mail, ready: Ready | None = None) -> None:
        """Sends the mail. ``ready``, if given, is awaited before the server takes the mail
        (after its envelope, before its content): while it runs, nothing is delivered yet,
        and if it raises, the mail is not sent and its exception is raised."""
        ...


class HookSender(Protocol):
    async def send(self, payload: dict[str, Any], event_id: str) -> None: ...


class Inbox(Protocol):
    """Event ids already processed (idempotent consumers)."""

    async def first_deliveries(self, event_ids: Sequence[UUID]) -> set[UUID]:
        """Records the ids as processed; returns those not seen before."""
        ...

    async def first_delivery(self, event_id: UUID) -> bool: ...


class ContactRepository(Protocol):
    async def add(self, contacts: Sequence[NewContact]) -> list[Contact]:
        """Stores each contact whose report does not have its address yet; returns the stored."""
        ...

    async def of_reports(self, report_ids: Collection[UUID]) -> list[Contact]: ...

    async def reporters_of(self, report_id: UUID) -> list[Contact]:
        """The contacts of the report's reporter (with a reporter's token), locked until the
        unit of work ends."""
        ...

    async def ids_with_unsubscribe_tokens(self, tokens: Collection[str]) -> list[int]: ...

    async def preference_of(self, unsubscribe_token: str) -> Preference | None: ...

    async def set_preference(self, unsubscribe_token: str, preference: Preference) -> bool:
        """False if no contact has this token."""
        ...

    async def of_reports_closed_before(
        self, cutoff: datetime, closed: Collection[ReportStatus]
    ) -> list[int]:
        """Contacts of reports whose latest status change is to one of ``closed`` and happened
        before ``cutoff``, and with no delivery still under way to them."""
        ...

    async def erase(self, contact_ids: Collection[int]) -> int:
        """Erases the contacts and every notification sent or due to them; returns how many
        contacts were erased."""
        ...


class StatusChangeRepository(Protocol):
    async def add(self, changes: Sequence[StatusChange]) -> None:
        """Stores the changes not stored yet."""
        ...

    async def of_reports(self, report_ids: Collection[UUID]) -> list[StatusChange]: ...

    async def originals_of(self, report_id: UUID) -> list[UUID]:
        """The reports this one was merged into as a duplicate."""
        ...


class NotificationQueue(Protocol):
    async def queue(self, notifications: Sequence[Notification]) -> None:
        """Queues each notification not queued yet (same event, channel and recipient)."""
        ...

    async def claim_due_in_order_per_recipient(
        self, instance_id: str, limit: int, now: datetime
    ) -> list[Claimed]:
        """Claims up to ``limit`` pending notifications due by ``now`` for ``instance_id``,
        in queue order, none of another claimant's, and none with an earlier one to the same
        recipient about the same report still pending or being sent (so "resolved" never
        overtakes a retried "in progress")."""
        ...

    async def record_outcomes(
        self, outcomes: Sequence[Outcome], claimants: Collection[str]
    ) -> None:
        """Records each outcome, unless its claim is held by somebody other than
        ``claimants`` now (ours was released meanwhile and somebody else took it)."""
        ...

    async def give_back_claims_of(
        self, claimants: Collection[str], keeping: Collection[int] = ()
    ) -> int:
        """Claims of ``claimants`` (but those of ``keeping``) go back to the queue."""
        ...

    async def release_claims_of_dead_instances(self, dead_after: timedelta) -> int:
        """Claims of instances whose heartbeat is older than ``dead_after`` (and claims from
        before instances had heartbeats, older than their lease) go back to the queue;
        returns how many."""
        ...

    async def parked(self, limit: int) -> list[ParkedNotification]: ...

    async def retry_parked(self, notification_id: int) -> bool:
        """A parked notification is due again, with its attempts reset."""
        ...


class InstanceRegistry(Protocol):
    """Live notifier instances and their heartbeats (the database's clock)."""

    async def renew(self, instance_id: str, dead_after: timedelta) -> bool:
        """Renews the heartbeat of an instance still counted alive; False if it is not."""
        ...

    async def join(self, instance_id: str) -> None: ...

    async def forget_dead(self, dead_after: timedelta) -> None: ...

    async def leave(self, instance_ids: Collection[str]) -> None: ...


class OfficeDirectory(Protocol):
    async def replace(self, jurisdiction: str, offices: Sequence[Office]) -> None:
        """The jurisdiction's offices are these now."""
        ...

    async def find(self, jurisdiction: str | None, code: str) -> Office | None:
        """The office of that code in the jurisdiction (in any, for None)."""
        ...


class JurisdictionRepository(Protocol):
    async def city(self, jurisdiction: str | None) -> City:
        """The city's name and mail sender name; the deployment's defaults for None or an
        unknown one."""
        ...

    async def set_name(self, jurisdiction: str, name: str) -> None: ...

    async def set_sender_name(self, jurisdiction: str, sender_name: str | None) -> None: ...

    async def record_reports(self, jurisdiction_of: Mapping[UUID, str]) -> None:
        """Each report's jurisdiction, unless one is recorded for it already."""
        ...


class AlertSubscriptions(Protocol):
    async def add(
        self, request: AlertRequest, confirm_token: str, unsubscribe_token: str
    ) -> None: ...

    async def unconfirmed_since(self, email: str, since: datetime) -> int:
        """How many subscriptions for this address (in any case) created since ``since``
        nobody confirmed."""
        ...

    async def by_confirm_token(self, token: str) -> AlertSubscription | None: ...

    async def by_unsubscribe_token(self, token: str) -> AlertSubscription | None: ...

    async def confirm(self, confirm_token: str, at: datetime) -> bool:
        """Confirms (once: a second click keeps the first time); False for an unknown token."""
        ...

    async def delete(self, unsubscribe_token: str) -> bool:
        """Deletes the subscription with the alerts still due to it."""
        ...

    async def delete_unconfirmed_created_before(self, cutoff: datetime) -> int: ...

    async def queue_alerts_to_confirmed_subscriptions_covering(
        self, reports: Sequence[ReportRouted]
    ) -> int:
        """One alert per report and confirmed subscription that covers it: of the report's
        jurisdiction (or any; a report naming none is of the deployment's one jurisdiction of
        its time), of its category (or any), for one of its areas or a circle around its
        place. Set-based: a city may have many subscriptions. Returns how many were queued."""
        ...


class UnitOfWork(Protocol):
    """One transaction: what its repositories write commits together when the ``async with``
    block ends without an exception, and is rolled back when it raises."""

    @property
    def inbox(self) -> Inbox: ...

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def status_changes(self) -> StatusChangeRepository: ...

    @property
    def notifications(self) -> NotificationQueue: ...

    @property
    def instances(self) -> InstanceRegistry: ...

    @property
    def offices(self) -> OfficeDirectory: ...

    @property
    def jurisdictions(self) -> JurisdictionRepository: ...

    @property
    def alerts(self) -> AlertSubscriptions: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> AbstractAsyncContextManager[UnitOfWork]: ...
