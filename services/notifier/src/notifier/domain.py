"""What to tell a reporter, and when. Pure Python."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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
