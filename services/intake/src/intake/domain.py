"""Intake's domain: the report and its lifecycle. Pure Python, no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal
from uuid import UUID, uuid4

from pydantic import EmailStr, TypeAdapter, ValidationError

from intake.catalogue import check_attributes, expected_days
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import (
    MatchedArea,
    OfficeRef,
    OverdueTicket,
    ReporterContactSubmitted,
    ReportStatus,
    ReportStatusChanged,
    ReportSubmitted,
    utcnow,
)
from mm_shared.text import forbidden_character, why_forbidden

MAX_DESCRIPTION = 4000

#: Which status may follow which. "assigned → assigned" is a reassignment to another office.
TRANSITIONS: dict[ReportStatus, frozenset[ReportStatus]] = {
    ReportStatus.RECEIVED: frozenset(
        {ReportStatus.ASSIGNED, ReportStatus.REJECTED, ReportStatus.DUPLICATE}
    ),
    ReportStatus.ASSIGNED: frozenset(
        {
            ReportStatus.ASSIGNED,
            ReportStatus.IN_PROGRESS,
            ReportStatus.RESOLVED,
            ReportStatus.REJECTED,
            ReportStatus.DUPLICATE,
        }
    ),
    ReportStatus.IN_PROGRESS: frozenset(
        # → assigned: staff handed it to another office.
        {
            ReportStatus.ASSIGNED,
            ReportStatus.RESOLVED,
            ReportStatus.REJECTED,
            ReportStatus.DUPLICATE,
        }
    ),
    ReportStatus.RESOLVED: frozenset({ReportStatus.IN_PROGRESS}),
    ReportStatus.REJECTED: frozenset({ReportStatus.IN_PROGRESS}),
    ReportStatus.DUPLICATE: frozenset(),
}
#: The one transition a reporter makes: "not fixed" sends a resolved report back to its office
#: (see reporter_reopen). Nobody else may take that way back (staff reopen to in_progress).
REPORTER_TRANSITIONS = frozenset({(ReportStatus.RESOLVED, ReportStatus.ASSIGNED)})


class InvalidReport(ValueError):
    """A submission that cannot be accepted; ``problems`` lists every reason at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class TransitionNotAllowed(ValueError):
    pass


class ReopenRefused(ValueError):
    """The reporter cannot reopen the report (``code`` says why: not resolved, too late)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ReporterTokens:
    """The reporter's handle on their report: an HMAC of its id under a secret all intake
    instances share. Nothing stored, nothing to look up; only who got it in the answer (and
    in their mails) can act as the reporter."""

    secret: bytes = field(repr=False)

    def issue(self, report_id: UUID) -> str:
        digest = hmac.new(self.secret, str(report_id).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def valid(self, report_id: UUID, token: str) -> bool:
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        return hmac.compare_digest(self.issue(report_id).encode(), token.encode())


@dataclass(frozen=True)
class Contact:
    email: str
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    locale: str = "de"

    @property
    def language(self) -> Literal["de", "en"]:
        """The mails' language: English for any English locale ("en-GB"), German otherwise."""
        return "en" if self.locale.lower().startswith("en") else "de"


@dataclass(frozen=True)
class StaffMember:
    """A member of an office's staff, as a bearer credential (a local token, an OIDC login)
    identifies them."""

    account_id: int
    name: str
    #: Office codes within ``jurisdiction``.
    offices: frozenset[str]
    is_admin: bool = False
    #: The jurisdiction the member works for; None only for a deployment-wide admin.
    jurisdiction: str | None = None

    def may_handle(self, jurisdiction: str, office_code: str | None) -> bool:
        """Whether the member may see and work a ticket of ``office_code`` in
        ``jurisdiction`` (an admin: any of their jurisdiction, or of all)."""
        if self.jurisdiction is not None and jurisdiction != self.jurisdiction:
            return False
        return self.is_admin or (office_code is not None and office_code in self.offices)

    @property
    def seen_offices(self) -> frozenset[str] | None:
        """The offices whose tickets the member sees within their jurisdiction; None: all."""
        return None if self.is_admin else self.offices

    @property
    def label(self) -> str:
        return f"staff:{self.name}"


@dataclass(frozen=True)
class StatusChange:
    status: ReportStatus
    previous_status: ReportStatus | None
    changed_at: datetime
    changed_by: str
    public_note: str | None = None
    internal_note: str | None = None
    #: The event that told the others of this entry (kept with it, to re-announce it after a
    #: broker lost it); None for internal notes, which tell nobody.
    announced: ReportSubmitted | ReportStatusChanged | None = None


@dataclass(frozen=True)
class Photo:
    digest: str
    content_type: str
    width: int
    height: int


@dataclass
class Report:
    id: UUID
    jurisdiction: str
    service_code: str
    lat: float
    long: float
    description: str
    requested_at: datetime
    status: ReportStatus = ReportStatus.RECEIVED
    office: OfficeRef | None = None
    updated_at: datetime | None = None
    history: list[StatusChange] = field(default_factory=list)
    address: str | None = None
    media_url: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    #: Open311's ``token``. No longer handed out (every service is realtime, so a POST answers
    #: the id); ``GET /tokens/{token}`` still answers those handed out before.
    token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    photos: list[Photo] = field(default_factory=list)
    areas: list[MatchedArea] = field(default_factory=list)
    duplicate_of: UUID | None = None
    #: By when the city means to have resolved it: the category's service level, fixed when
    #: the report arrives (a later change of the level does not move a promise made).
    expected_at: datetime | None = None

    def is_overdue(self, now: datetime) -> bool:
        """Still open past its service level."""
        return not self.status.is_closed and self.expected_at is not None and now > self.expected_at

    def change_status(
        self,
        status: ReportStatus,
        changed_by: str,
        *,
        office: OfficeRef | None = None,
        public_note: str | None = None,
        internal_note: str | None = None,
        correlation_id: UUID | None = None,
        duplicate_of: UUID | None = None,
        reopened_by_reporter: bool = False,
    ) -> ReportStatusChanged:
        allowed = (
            (self.status, status) in REPORTER_TRANSITIONS
            if reopened_by_reporter
            else status in TRANSITIONS[self.status]
        )
        if not allowed:
            raise TransitionNotAllowed(f"{self.status} → {status} is not allowed")
        if status is ReportStatus.DUPLICATE:
            if duplicate_of is None or duplicate_of == self.id:
                raise InvalidReport(["a duplicate needs duplicate_of: the id of another report"])
            self.duplicate_of = duplicate_of
        now = utcnow()
        previous, self.status, self.updated_at = self.status, status, now
        if office is not None:
            self.office = office
        event = self._announce(
            previous,
            now,
            changed_by,
            public_note,
            correlation_id,
            reopened_by_reporter=reopened_by_reporter,
        )
        self.history.append(
            StatusChange(status, previous, now, changed_by, public_note, internal_note, event)
        )
        return event

    def add_note(
        self, by: str, *, public_note: str | None, internal_note: str | None
    ) -> ReportStatusChanged | None:
        """A note without a change of status. ``updated_at`` stays when the status was entered
        (the offices' reminders count from it); a public note is news for the reporter."""
        now = utcnow()
        news = (
            self._announce(self.status, now, by, public_note, note_only=True)
            if public_note
            else None
        )
        self.history.append(
            StatusChange(self.status, self.status, now, by, public_note, internal_note, news)
        )
        return news

    def _announce(
        self,
        previous: ReportStatus,
        at: datetime,
        by: str,
        public_note: str | None,
        correlation_id: UUID | None = None,
        *,
        note_only: bool = False,
        reopened_by_reporter: bool = False,
    ) -> ReportStatusChanged:
        return ReportStatusChanged(
            report_id=self.id,
            correlation_id=correlation_id or self.id,
            jurisdiction=self.jurisdiction,
            occurred_at=at,
            service_code=self.service_code,
            previous_status=previous,
            status=self.status,
            office=self.office,
            public_note=public_note,
            changed_by=by,
            duplicate_of=self.duplicate_of if self.status is ReportStatus.DUPLICATE else None,
            note_only=note_only,
            reopened_by_reporter=reopened_by_reporter,
        )


def check_coordinates(lat: float, long: float) -> list[str]:
    """Plausibility of WGS84 coordinates, with hints for the usual mistakes."""
    if not (math.isfinite(lat) and math.isfinite(long)):
        return ["lat and long must be finite numbers"]
    problems = []
    if abs(lat) > 90 or abs(long) > 180:
        if abs(lat) > 1000 or abs(long) > 1000:
            problems.append(
                "lat/long look like projected metres (e.g. UTM); send WGS84 degrees "
                "(EPSG:4326), e.g. lat=51.34, long=12.37"
            )
        else:
            problems.append("lat must be within -90..90 and long within -180..180 (WGS84 degrees)")
    return problems


_EMAIL = TypeAdapter(EmailStr)


def email_problems(email: str) -> list[str]:
    """The address as ReporterContactSubmitted will take it, or why not."""
    try:
        _EMAIL.validate_python(email)
    except ValidationError as invalid:
        reason = invalid.errors()[0]["msg"].removeprefix("value is not a valid email address: ")
        return [f"email {email!r} is not a valid e-mail address: {reason}"]
    return []


def character_problems(**texts: str | Sequence[str] | None) -> list[str]:
    """Characters XML 1.0 forbids (:mod:`mm_shared.text`): they would break Open311's XML, and
    NUL, which PostgreSQL stores none of, would fail a write that carries other people's
    reports too."""
    problems = []
    for name, text in texts.items():
        for value in [text] if isinstance(text, str) else text or ():
            if character := forbidden_character(value):
                problems.append(f"{name} {why_forbidden(character)}")
                break
    return problems


def find_problems(
    service_code: str,
    lat: float | None,
    long: float | None,
    description: str | None,
    *,
    check_location: bool = True,
    attributes: Mapping[str, list[str]] | None = None,
) -> list[str]:
    """Everything wrong with a submission, so that the client can fix it all at once."""
    problems: list[str] = []
    if not service_code:
        problems.append("service_code is required")
    elif service_code not in CATEGORIES_BY_CODE:
        problems.append(f"unknown service_code {service_code!r}")
    else:
        problems.extend(check_attributes(service_code, attributes or {}))
    if check_location:
        if lat is None or long is None:
            problems.append("a location is required: lat and long (WGS84 degrees)")
        else:
            problems.extend(check_coordinates(lat, long))
    if description and len(description) > MAX_DESCRIPTION:
        problems.append(f"description is longer than {MAX_DESCRIPTION} characters")
    return problems


def submission_problems(
    *,
    service_code: str,
    lat: float | None,
    long: float | None,
    description: str | None,
    contact: Contact | None,
    address: str | None = None,
    media_url: str | None = None,
    attributes: Mapping[str, list[str]] | None = None,
) -> list[str]:
    """Everything wrong with a submission itself (where it belongs is decided elsewhere)."""
    problems = find_problems(service_code, lat, long, description, attributes=attributes)
    problems += character_problems(
        description=description,
        address=address,
        media_url=media_url,
        **{f"attribute[{code}]": values for code, values in (attributes or {}).items()},
    )
    if contact is not None:
        problems += email_problems(contact.email)
        problems += character_problems(
            first_name=contact.first_name, last_name=contact.last_name, phone=contact.phone
        )
    return problems


def submit(
    *,
    jurisdiction: str,
    service_code: str,
    lat: float | None,
    long: float | None,
    description: str | None,
    contact: Contact | None,
    address: str | None = None,
    media_url: str | None = None,
    attributes: Mapping[str, list[str]] | None = None,
    photos: Sequence[Photo] = (),
    tokens: ReporterTokens | None = None,
    service_levels: Mapping[str, float] | None = None,
    checked: bool = False,
) -> tuple[Report, list[ReportSubmitted | ReporterContactSubmitted]]:
    """Validate a submission and create the report with the events it implies (the contact's
    with the reporter's token when ``tokens`` are given). ``service_levels`` (days per
    category) override the catalogue's. ``checked``: the caller found no
    :func:`submission_problems` already (the use case checks before the place decides the
    jurisdiction), so they are not looked for again: each check costs a request's time."""
    if not checked:
        problems = submission_problems(
            service_code=service_code,
            lat=lat,
            long=long,
            description=description,
            contact=contact,
            address=address,
            media_url=media_url,
            attributes=attributes,
        )
        if problems:
            raise InvalidReport(problems)
    assert lat is not None
    assert long is not None
    now = utcnow()
    report = Report(
        id=uuid4(),
        jurisdiction=jurisdiction,
        service_code=service_code,
        lat=lat,
        long=long,
        description=description or "",
        requested_at=now,
        updated_at=now,
        address=address,
        media_url=media_url,
        attributes=dict(attributes or {}),
        photos=list(photos),
        expected_at=now + timedelta(days=expected_days(service_code, service_levels)),
    )
    submitted = ReportSubmitted(
        report_id=report.id,
        correlation_id=report.id,
        occurred_at=now,
        jurisdiction=jurisdiction,
        service_code=service_code,
        lat=lat,
        long=long,
        submitted_at=now,
    )
    report.history.append(
        StatusChange(ReportStatus.RECEIVED, None, now, "citizen", announced=submitted)
    )
    events: list[ReportSubmitted | ReporterContactSubmitted] = [submitted]
    if contact is not None:
        events.append(
            ReporterContactSubmitted(
                report_id=report.id,
                correlation_id=report.id,
                occurred_at=now,
                jurisdiction=jurisdiction,
                email=contact.email,
                first_name=contact.first_name,
                last_name=contact.last_name,
                phone=contact.phone,
                locale=contact.language,
                reporter_token=tokens.issue(report.id) if tokens else None,
            )
        )
    return report, events


def distance_m(lat1: float, long1: float, lat2: float, long2: float) -> float:
    """Great-circle distance (haversine), good to well under a metre at city scale."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(long2 - long1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


#: What staff may set by hand; ``assigned`` to another office goes through geo-router.
STAFF_STATUSES = frozenset(
    {ReportStatus.IN_PROGRESS, ReportStatus.RESOLVED, ReportStatus.REJECTED, ReportStatus.DUPLICATE}
)


def staff_transition(
    report: Report,
    status: ReportStatus,
    by: str,
    *,
    public_note: str | None,
    internal_note: str | None,
    duplicate_of: UUID | None,
) -> ReportStatusChanged:
    """A change made by office staff, with the rules users asked for: a rejection says why."""
    if status not in STAFF_STATUSES:
        raise InvalidReport([f"staff cannot set {status.value} directly"])
    if status is ReportStatus.REJECTED and not (public_note and public_note.strip()):
        raise InvalidReport(["a rejection needs a public_note saying why"])
    if problems := character_problems(public_note=public_note, internal_note=internal_note):
        raise InvalidReport(problems)
    return report.change_status(
        status,
        by,
        public_note=public_note,
        internal_note=internal_note,
        duplicate_of=duplicate_of,
    )


def staff_note(
    report: Report, by: str, *, public_note: str | None, internal_note: str | None
) -> ReportStatusChanged | None:
    """Staff add a note and keep the status: internal for colleagues, public for the reporter
    (who is told, as of a change)."""
    public_note = (public_note or "").strip() or None
    internal_note = (internal_note or "").strip() or None
    if public_note is None and internal_note is None:
        raise InvalidReport(["a note needs a public_note or an internal_note"])
    if problems := character_problems(public_note=public_note, internal_note=internal_note):
        raise InvalidReport(problems)
    return report.add_note(by, public_note=public_note, internal_note=internal_note)


REPORTER = "reporter"


def check_reopenable(report: Report, *, now: datetime, within: timedelta) -> None:
    """Raises ReopenRefused unless the reporter may still say "not fixed"."""
    if report.status is not ReportStatus.RESOLVED:
        raise ReopenRefused(
            "not_resolved", f"only a resolved report can be reopened; this one is {report.status}"
        )
    resolved_at = report.updated_at or report.requested_at
    if now - resolved_at > within:
        raise ReopenRefused(
            "reopen_period_over",
            f"a report can be reopened within {within.days} days of its resolution",
        )


def reporter_reopen(
    report: Report, *, note: str | None, now: datetime, within: timedelta
) -> ReportStatusChanged:
    """The reporter says a resolved report is not fixed: within ``within`` of its resolution
    it goes back to its office as ``assigned``, the reporter's note public."""
    note = (note or "").strip() or None
    if problems := character_problems(note=note):
        raise InvalidReport(problems)
    if note and len(note) > MAX_DESCRIPTION:
        raise InvalidReport([f"note is longer than {MAX_DESCRIPTION} characters"])
    check_reopenable(report, now=now, within=within)
    return report.change_status(
        ReportStatus.ASSIGNED, REPORTER, public_note=note, reopened_by_reporter=True
    )


def is_working_day(day: date, holidays: Container[date] = ()) -> bool:
    return day.weekday() < 5 and day not in holidays


def working_days_between(start: date, end: date, holidays: Container[date] = ()) -> int:
    """Working days (Monday to Friday, not a public holiday) after ``start`` up to and
    including ``end``."""
    if end <= start:
        return 0
    days = (end - start).days
    return sum(is_working_day(start + timedelta(days=n), holidays) for n in range(1, days + 1))


@dataclass
class OfficeBacklog:
    """An office's tickets that wait too long, by why."""

    not_accepted: list[OverdueTicket] = field(default_factory=list)
    stalled: list[OverdueTicket] = field(default_factory=list)
    past_service_level: list[OverdueTicket] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.not_accepted or self.stalled or self.past_service_level)


def overdue(
    tickets: Sequence[Report],
    now: datetime,
    *,
    accept_within_working_days: int,
    work_within_days: float,
    holidays: Container[date] = (),
) -> dict[str, OfficeBacklog]:
    """Per office: tickets not accepted (still ``assigned``) after N working days, tickets
    ``in_progress`` for more than M days (``updated_at`` is when they entered that status), and
    the other open tickets past their category's service level."""
    found: dict[str, OfficeBacklog] = {}
    for ticket in tickets:
        if ticket.office is None or ticket.updated_at is None:
            continue
        since = ticket.updated_at
        days = (now - since).total_seconds() / 86400
        entry = OverdueTicket(
            report_id=ticket.id,
            service_code=ticket.service_code,
            status=ticket.status,
            since=since,
            days=round(days, 1),
        )
        backlog = found.setdefault(ticket.office.code, OfficeBacklog())
        if ticket.status is ReportStatus.ASSIGNED and (
            working_days_between(since.date(), now.date(), holidays) > accept_within_working_days
        ):
            backlog.not_accepted.append(entry)
        elif ticket.status is ReportStatus.IN_PROGRESS and days > work_within_days:
            backlog.stalled.append(entry)
        elif ticket.is_overdue(now):
            backlog.past_service_level.append(entry)
    return {office: backlog for office, backlog in found.items() if backlog}


@dataclass(frozen=True)
class CannedResponse:
    """A text an office keeps to insert into its public notes ("Textbaustein")."""

    id: int
    jurisdiction: str
    office_code: str
    title: str
    body: str
    updated_by: str
    updated_at: datetime


class TitleTaken(ValueError):
    """The office already has a canned response of that title."""


MAX_CANNED_TITLE = 200


def canned_response_problems(title: str, body: str) -> list[str]:
    """A canned response ("Textbaustein") needs a short title and a text to insert."""
    problems = []
    if not title.strip():
        problems.append("title is required")
    elif len(title) > MAX_CANNED_TITLE:
        problems.append(f"title is longer than {MAX_CANNED_TITLE} characters")
    if not body.strip():
        problems.append("body is required")
    elif len(body) > MAX_DESCRIPTION:
        problems.append(f"body is longer than {MAX_DESCRIPTION} characters")
    return problems + character_problems(title=title, body=body)
