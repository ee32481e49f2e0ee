"""What to tell whom, and when. Pure Python: the rules the handlers apply and the records they
pass through the ports."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from mm_shared.events import ReportStatus


class Preference(StrEnum):
    EVERY_CHANGE = "every_change"
    ONLY_CLOSED = "only_closed"
    NONE = "none"


def wants(preference: Preference, status: ReportStatus) -> bool:
    if preference is Preference.NONE:
        return False
    if preference is Preference.ONLY_CLOSED:
        return status.is_closed
    return True


def retry_delay_s(attempts: int) -> float:
    """Exponential backoff: 2 s, 4 s, 8 s … capped at 30 minutes."""
    return float(min(2**attempts, 1800))


#: Reporters' mails, the city app's webhook, the office's mail when a reporter reopens a
#: report, area alerts to subscribers.
EMAIL, WEBHOOK, OFFICE, ALERT = "email", "webhook", "office", "alert"


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    #: None for mails to offices, which are not a subscription.
    unsubscribe_url: str | None
    #: The name the mail comes from ("Mängelmelder Köln"), its jurisdiction's; None: the
    #: configured sender's own.
    sender_name: str | None = None


@dataclass(frozen=True)
class City:
    """The jurisdiction a mail is about, as far as the notifier knows it: its name for the
    wording ("Stadt Köln") and the sender name of its mails ("Mängelmelder Köln")."""

    name: str | None = None
    sender_name: str | None = None


# Reporters (and followers) and the status changes they hear about.


@dataclass(frozen=True)
class NewContact:
    """Somebody to tell about a report's changes from ``subscribed_at`` on."""

    report_id: UUID
    email: str
    locale: str
    preference: Preference
    unsubscribe_token: str
    subscribed_at: datetime
    first_name: str | None = None
    last_name: str | None = None
    #: The reporter's own token (None for followers): proves a request to erase the contact.
    reporter_token: str | None = None


@dataclass(frozen=True)
class Contact(NewContact):
    """A stored contact."""

    id: int = 0


@dataclass(frozen=True)
class StatusChange:
    """A report's status change as the notifier keeps it: the event as it came, as JSON text.
    Nothing here reads the event; it is stored and queued as it is, and parsed only when a
    notification of it is delivered (``Claimed.event``)."""

    event_id: UUID
    report_id: UUID
    occurred_at: datetime
    event_json: str


def hears_about(contact: NewContact, change: StatusChange) -> bool:
    """A contact hears of its report's changes from its subscription on: a follower gets no old
    news, and a change that reached us before the contact did still counts if it happened
    after the subscription."""
    return contact.report_id == change.report_id and contact.subscribed_at <= change.occurred_at


def handed_on_token(unsubscribe_token: str, original: UUID) -> str:
    """The link token of a contact handed on from a duplicate to its original: derived from the
    duplicate's, so that erasing one contact finds its copy (hex MD5 of token and the
    original's id, as the copies stored before were made)."""
    return hashlib.md5(
        (unsubscribe_token + str(original)).encode(), usedforsecurity=False
    ).hexdigest()


def handed_on(contact: Contact, original: UUID, merged_at: datetime) -> NewContact:
    """A duplicate's contact, now following the original from the merge on."""
    return NewContact(
        report_id=original,
        email=contact.email,
        locale=contact.locale,
        preference=contact.preference,
        unsubscribe_token=handed_on_token(contact.unsubscribe_token, original),
        subscribed_at=merged_at,
        first_name=contact.first_name,
        last_name=contact.last_name,
    )


#: Statuses after which a report is closed (their contacts' data expire after the retention).
CLOSED_STATUSES = tuple(s for s in ReportStatus if s.is_closed)


# The notification queue.


@dataclass(frozen=True)
class Notification:
    """One message to send: an event on a channel, to a contact, a subscription, or (webhook,
    office) nobody of ours."""

    event_id: UUID
    report_id: UUID
    channel: str
    #: The event, as JSON text.
    event_json: str
    contact_id: int | None = None
    subscription_id: int | None = None


def mail_to_contact(change: StatusChange, contact: Contact) -> Notification:
    return Notification(
        change.event_id, change.report_id, EMAIL, change.event_json, contact_id=contact.id
    )


def to_nobody(change: StatusChange, channel: str) -> Notification:
    return Notification(change.event_id, change.report_id, channel, change.event_json)


@dataclass(frozen=True)
class Claimed:
    """A notification an instance claimed, with what its message needs of its recipient (a
    reporter's contact or an alert subscriber; nothing for the webhook and offices) and of
    its report's jurisdiction."""

    id: int
    channel: str
    event: dict[str, Any]
    attempts: int = 0
    contact_id: int | None = None
    subscription_id: int | None = None
    email: str | None = None
    first_name: str | None = None
    locale: str | None = None
    preference: str | None = None
    unsubscribe_token: str | None = None
    reporter_token: str | None = None
    area_code: str | None = None
    #: The event's own jurisdiction, else the one an earlier event of the report named.
    jurisdiction: str | None = None
    jurisdiction_name: str | None = None
    sender_name: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of a claimed notification: sent, skipped, parked, or pending again (a retry
    later, or a claim given back)."""

    notification_id: int
    state: str
    attempts: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None

    def values(self) -> dict[str, Any]:
        """The columns this outcome sets (a claim given back also drops its claimant)."""
        values: dict[str, Any] = {"state": self.state}
        for name in ("attempts", "last_error", "next_attempt_at", "sent_at"):
            if (value := getattr(self, name)) is not None:
                values[name] = value
        if self.state == "pending" and self.attempts is None:
            values["claimed_by"] = None
        return values


def sent(notification_id: int, at: datetime) -> Outcome:
    return Outcome(notification_id, "sent", sent_at=at)


def skipped(notification_id: int) -> Outcome:
    return Outcome(notification_id, "skipped")


def given_back(notification_id: int) -> Outcome:
    """Claimed but not attempted: back to the queue."""
    return Outcome(notification_id, "pending")


def failed(claim: Claimed, error: str, now: datetime, max_attempts: int) -> Outcome:
    """A failed attempt is tried again later (backing off), and parked for an operator after
    ``max_attempts``."""
    attempts = claim.attempts + 1
    return Outcome(
        claim.id,
        "parked" if attempts >= max_attempts else "pending",
        attempts=attempts,
        last_error=error[:2000],
        next_attempt_at=now + timedelta(seconds=retry_delay_s(attempts)),
    )


def unattemptable(notification_id: int, error: str) -> Outcome:
    """Cannot even be attempted (a bug, bad data): parked at once, never blocking the rest."""
    return Outcome(notification_id, "parked", last_error=error[:2000])


@dataclass(frozen=True)
class ParkedNotification:
    id: int
    event_id: UUID
    report_id: UUID
    channel: str
    attempts: int
    last_error: str | None
    created_at: datetime


# Offices and area alerts.


@dataclass(frozen=True)
class Office:
    code: str
    name: str
    email: str


@dataclass(frozen=True)
class AlertRequest:
    email: str
    locale: str
    service_code: str | None
    area_code: str | None
    point: tuple[float, float, float] | None  # lat, long, radius in metres
    #: Only this jurisdiction's reports (area codes are unique within one only); None: any.
    jurisdiction: str | None = None


@dataclass(frozen=True)
class AlertSubscription:
    id: int
    email: str
    locale: str
    confirm_token: str
    unsubscribe_token: str
    created_at: datetime
    confirmed_at: datetime | None = None
    service_code: str | None = None
    area_code: str | None = None
    jurisdiction: str | None = None
    point: tuple[float, float, float] | None = field(default=None)


#: Unconfirmed subscriptions per address within a day before we stop mailing it.
UNCONFIRMED_PER_DAY = 3
UNCONFIRMED_COUNTED_FOR = timedelta(days=1)
#: Subscriptions nobody confirmed are no consent: deleted after this long.
UNCONFIRMED_KEPT = timedelta(days=7)


def may_ask_to_confirm(unconfirmed_lately: int) -> bool:
    """An address that asked for several alerts lately without confirming one gets no more
    mails for now (else anybody could make us mail anybody)."""
    return unconfirmed_lately < UNCONFIRMED_PER_DAY
