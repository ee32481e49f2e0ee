"""What intake's use cases need from the world, as interfaces (cosmicpython's repositories and
unit of work): ``handlers.py`` depends on these only. The SQL implementations live in
``adapters/`` (db.py, staff.py, console.py) and ``bootstrap.py`` injects them; the unit tests
inject in-memory fakes (``tests/unit/conftest.py``).

A write that changes rows takes the events announcing the change and stages them in the same
unit of work (in SQL: in the same statement), so a change and its events commit together."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol
from uuid import UUID

from intake.domain import CannedResponse, Photo, Report, StaffMember, StatusChange
from mm_shared.events import (
    Event,
    ReporterContactSubmitted,
    ReportStatus,
    ReportStatusChanged,
    ReportSubmitted,
    utcnow,
)

#: (event id, report id) of a delivered event about a report.
Delivery = tuple[UUID, UUID]
#: A report with the history entries appended since it was read.
Changed = tuple[Report, Sequence[StatusChange]]
#: A new photo of a stored report: (report id, its position among the report's photos, photo).
NewPhoto = tuple[UUID, int, Photo]


@dataclass(frozen=True, kw_only=True)
class ReportSearch:
    """Public reports by ids (overriding the other filters), categories, a time span of their
    request, statuses, a bounding box (min_long, min_lat, max_long, max_lat) or an area (code
    or name), and jurisdiction; at most ``limit``."""

    ids: Sequence[UUID] = ()
    service_codes: Sequence[str] = ()
    start: datetime | None = None
    end: datetime | None = None
    statuses: Sequence[ReportStatus] = ()
    bbox: tuple[float, float, float, float] | None = None
    area: str | None = None
    jurisdiction: str | None = None
    limit: int = 1000


@dataclass(frozen=True)
class TicketFilter:
    """What the staff queue (and its CSV export and map) selects; every field narrows."""

    #: The offices whose tickets are seen; None: all (an admin).
    offices: frozenset[str] | None
    statuses: Sequence[ReportStatus] = ()
    service_codes: Sequence[str] = ()
    #: An area's code or name (Ortsteil, Stadtbezirk: any level geo-router matched).
    area: str | None = None
    older_than: datetime | None = None
    newer_than: datetime | None = None
    #: True: only open tickets past their service level; False: only the others.
    overdue: bool | None = None
    #: The start of a report id, or words in the description.
    q: str | None = None
    now: datetime = field(default_factory=utcnow)
    #: The jurisdiction of those offices (codes are unique only within one); None: every one
    #: (a deployment-wide admin).
    jurisdiction: str | None = None


@dataclass(frozen=True)
class Statistics:
    per_category: list[tuple[str, int]]
    #: (level, code, name, count)
    per_area: list[tuple[str, str, str, int]]
    #: ("2026-11", count), in the city's time zone
    per_month: list[tuple[str, int]]
    median_hours_to_assignment: float | None
    median_hours_to_closing: float | None
    closed: int
    closed_within_service_level: int


@dataclass(frozen=True)
class UsedKey:
    """What an Idempotency-Key was first used for."""

    request_hash: str
    report_id: UUID


class Reports(Protocol):
    """Reports with their history and photos."""

    async def get(self, report_id: UUID, *, for_update: bool = False) -> Report | None:
        """The report with its history and photos; ``for_update``: locked until the unit of
        work ends."""
        ...

    async def add(self, new_reports: Sequence[Report], events: Sequence[Event]) -> None:
        """New reports with their history and photos, their ``events`` staged, and the
        reporters' contact events among them kept (see :class:`KeptContacts`)."""
        ...

    async def save(
        self,
        changed: Sequence[Changed],
        events: Sequence[Event],
        *,
        new_photos: Sequence[NewPhoto] = (),
    ) -> None:
        """The new state of changed reports and their new history entries (and photos), with
        ``events`` staged."""
        ...

    async def unprocessed(
        self, deliveries: Sequence[Delivery]
    ) -> tuple[set[UUID], dict[UUID, Report]]:
        """Of the delivered events, those not processed yet, and the current state of the
        reports they concern (without history: for batches that only append to it)."""
        ...

    async def save_unless_changed(
        self,
        changed: Sequence[Changed],
        events: Sequence[ReportStatusChanged],
        *,
        read_updated_at: Mapping[UUID, datetime | None],
        deliveries: Sequence[Delivery],
    ) -> set[UUID]:
        """Optimistic write of a batch read without locks: each changed report is saved, with
        its events staged, only if its ``updated_at`` is still the one read. The
        ``deliveries`` are recorded as processed, except those of reports changed meanwhile.
        Returns the ids of the reports saved."""
        ...

    async def unrouted_since(self, before: datetime, limit: int = 500) -> list[Report]:
        """Reports still received (never routed) that arrived before ``before`` and were not
        re-published since, oldest first, locked (skipping those another instance holds)."""
        ...

    async def mark_resubmitted(self, report_ids: Sequence[UUID]) -> None: ...

    async def open_tickets(self) -> list[Report]:
        """Assigned and in-progress reports (without history)."""
        ...

    async def open_by_office(self) -> list[tuple[str, str, int, datetime]]:
        """(jurisdiction, office, open tickets, oldest request)."""
        ...

    async def claim_reminder_day(self, jurisdiction: str, day: date) -> bool:
        """True for the first to claim the day's reminders of a jurisdiction, across all
        instances; False after."""
        ...

    async def open_nearby(
        self, service_code: str, lat: float, long: float, radius_m: float
    ) -> list[Report]:
        """Open reports of a category within ``radius_m`` of a place."""
        ...

    async def page(
        self, found: TicketFilter, *, sort: str = "-requested_at", offset: int = 0, limit: int = 50
    ) -> list[Report]:
        """One page of the tickets ``found`` selects, sorted (``-`` first: descending)."""
        ...

    async def status_counts(self, found: TicketFilter) -> dict[str, int]:
        """How many tickets ``found`` selects per status, its status filter aside."""
        ...

    async def search(self, criteria: ReportSearch) -> list[Report]:
        """Reports as ``criteria`` selects them, newest first, with their history and photos."""
        ...

    async def id_for_token(self, token: str) -> UUID | None:
        """The report an Open311 token was handed out for."""
        ...


class History(Protocol):
    """The events the history kept: each report's submission and its status changes."""

    async def first_since(self, since: datetime) -> int | None:
        """The position of the first history entry made at or after ``since``."""
        ...

    async def announced_after(
        self, position: int, limit: int
    ) -> list[tuple[int, ReportSubmitted | ReportStatusChanged]]:
        """The events of the entries after ``position``, in order, with their positions."""
        ...


class IdempotencyKeys(Protocol):
    async def lock(self, key: str) -> None:
        """Serialise concurrent units of work using the same key (until this one ends)."""
        ...

    async def get(self, key: str) -> UsedKey | None: ...

    async def add(self, key: str, used: UsedKey) -> None: ...


class KeptContacts(Protocol):
    """Reporters' contact events as published, kept for a while to re-announce them."""

    async def add(self, contacts: Sequence[ReporterContactSubmitted]) -> None:
        """Stage the contact events and keep them."""
        ...

    async def kept_since(
        self,
        since: datetime,
        *,
        after: tuple[datetime, UUID] | None,
        kept_within: timedelta | None,
        limit: int,
    ) -> list[tuple[datetime, ReporterContactSubmitted]]:
        """Contacts kept at or after ``since`` (and, with ``kept_within``, not longer ago than
        that), after the (kept at, event id) ``after``, in that order, with when kept."""
        ...

    async def forget_older_than(self, kept_for: timedelta) -> int:
        """Erase those kept longer than ``kept_for``; returns how many."""
        ...

    async def erase_reporters(self, report_id: UUID) -> int:
        """Erase the contact of the report's reporter (not of its followers); returns how
        many were erased."""
        ...


class StaffAccounts(Protocol):
    async def authenticate(self, token: str) -> StaffMember | None:
        """The member a valid bearer token belongs to; None for an unknown or revoked one.
        Raises for an expired one (the adapter's ``TokenExpired``)."""
        ...


class CannedResponses(Protocol):
    """The offices' canned responses ("Textbausteine")."""

    async def of_offices(
        self, jurisdiction: str | None, offices: frozenset[str] | None
    ) -> list[CannedResponse]:
        """Of ``offices`` (None: all) in ``jurisdiction`` (None: every one)."""
        ...

    async def get(self, response_id: int) -> CannedResponse | None: ...

    async def add(self, response: CannedResponse) -> CannedResponse:
        """Stored with a new id. Raises TitleTaken."""
        ...

    async def replace(self, response: CannedResponse) -> CannedResponse:
        """A new title and text for the response of that id. Raises TitleTaken."""
        ...

    async def delete(self, response_id: int) -> None: ...


class OfficeStatistics(Protocol):
    async def of(
        self,
        jurisdiction: str | None,
        offices: frozenset[str] | None,
        *,
        start: datetime | None,
        end: datetime | None,
        timezone: str,
    ) -> Statistics:
        """Of reports that arrived between ``start`` and ``end`` and now lie with ``offices``
        (all when None) of ``jurisdiction`` (every one when None)."""
        ...


class UnitOfWork(Protocol):
    """One transaction over intake's data and its outbox: what is written and staged in it
    commits together when the ``async with`` block ends without an exception, or not at all.
    (With ``autocommit``, each write commits alone: for units of one write, or of writes that
    guard themselves.)"""

    @property
    def reports(self) -> Reports: ...

    @property
    def history(self) -> History: ...

    @property
    def idempotency_keys(self) -> IdempotencyKeys: ...

    @property
    def kept_contacts(self) -> KeptContacts: ...

    @property
    def staff(self) -> StaffAccounts: ...

    @property
    def canned_responses(self) -> CannedResponses: ...

    @property
    def statistics(self) -> OfficeStatistics: ...

    async def publish(self, *events: Event) -> object:
        """Stage events that change no row (they reach the broker after the commit)."""
        ...


class UnitOfWorkFactory(Protocol):
    """Opens a unit of work: ``async with uows() as uow: ...``. Each call is a transaction
    of its own (two may run at once)."""

    def __call__(self, *, autocommit: bool = False) -> AbstractAsyncContextManager[UnitOfWork]: ...


class SubmissionWriter(Protocol):
    """Writes new reports with their events; answers once they are durable (the SQL one
    commits concurrent submissions together)."""

    async def write(self, report: Report, events: Sequence[Event]) -> None: ...


class Jurisdiction(Protocol):
    """A served jurisdiction as intake knows it from geo-router's announcement."""

    @property
    def code(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def disabled_service_codes(self) -> frozenset[str]: ...

    def covers(self, lat: float, long: float) -> bool: ...


class Outlines(Protocol):
    """The served jurisdictions' outlines, held in memory (adapters.boundaries.Boundaries)."""

    def get(self, code: str) -> Jurisdiction | None: ...

    def all(self) -> Sequence[Jurisdiction]:
        """Every served jurisdiction, by code."""
        ...

    def covering(self, lat: float, long: float) -> Jurisdiction | None:
        """The jurisdiction a report at this place belongs to (precedence, then the smaller
        area, then the first code)."""
        ...


#: A jurisdiction's office directory (code → name); None while none is known.
OfficesOf = Callable[[str], Mapping[str, str] | None]
#: A jurisdiction's public holidays.
HolidaysOf = Callable[[str], Container[date]]


class Geocoder(Protocol):
    """Locates an address in the city (adapters.geocoder.NominatimGeocoder)."""

    async def locate(self, address: str) -> tuple[float, float] | None:
        """(lat, long) of the best match, None if there is none. Raises the adapter's
        ``GeocoderUnavailable`` when the service cannot answer (not the reporter's fault)."""
        ...
