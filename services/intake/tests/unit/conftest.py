"""Fakes of intake's ports (intake.ports) for the fast tier, as cosmicpython's FakeUnitOfWork:
a database in dictionaries whose units of work commit when their block ends and leave nothing
behind on an exception, an outbox that is a list, and jurisdictions whose outlines are
rectangles.

The world they hold: Leipzig (a rectangle around the city, category 011 switched off) inside
a larger, lower-ranked "Sachsen". Tests see it through the ports (``uows``, ``writer``,
``outlines``) and plain fixtures: ``outbox`` (the events committed, in order), ``stored``
(the reports as the database holds them), ``processed`` (delivered event ids recorded),
``kept`` (kept contact events), ``staff_tokens`` (what the staff accounts authenticate),
``meanwhile`` (changes another writer makes just before the next optimistic write), and
factories for reports (``new_report``, ``assigned_report``)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from intake import handlers
from intake.domain import (
    CannedResponse,
    Contact,
    Photo,
    Report,
    ReporterTokens,
    StaffMember,
    StatusChange,
    TitleTaken,
    distance_m,
)
from intake.ports import (
    Jurisdiction,
    Outlines,
    ReportSearch,
    Statistics,
    SubmissionWriter,
    TicketFilter,
    UnitOfWorkFactory,
    UsedKey,
)
from mm_shared.events import (
    Event,
    MatchedArea,
    OfficeRef,
    ReporterContactSubmitted,
    ReportRouted,
    ReportStatus,
    ReportStatusChanged,
    ReportSubmitted,
    utcnow,
)

OPEN = (ReportStatus.RECEIVED, ReportStatus.ASSIGNED, ReportStatus.IN_PROGRESS)
#: A place in Leipzig, one in Sachsen outside it, one in neither.
IN_LEIPZIG = (51.34, 12.37)
IN_SACHSEN = (51.05, 13.74)
NOWHERE = (48.14, 11.58)


@dataclass(frozen=True)
class FakeJurisdiction:
    code: str
    name: str
    #: (south, west, north, east) in degrees.
    box: tuple[float, float, float, float]
    precedence: int = 0
    disabled_service_codes: frozenset[str] = frozenset()

    def covers(self, lat: float, long: float) -> bool:
        south, west, north, east = self.box
        return south <= lat <= north and west <= long <= east

    @property
    def area(self) -> float:
        south, west, north, east = self.box
        return (north - south) * (east - west)


class FakeOutlines:
    def __init__(self, *jurisdictions: FakeJurisdiction) -> None:
        self._known = {j.code: j for j in jurisdictions}

    def get(self, code: str) -> Jurisdiction | None:
        return self._known.get(code)

    def all(self) -> list[FakeJurisdiction]:
        return [self._known[code] for code in sorted(self._known)]

    def covering(self, lat: float, long: float) -> Jurisdiction | None:
        found = [j for j in self._known.values() if j.covers(lat, long)]
        return min(found, key=lambda j: (-j.precedence, j.area, j.code), default=None)


@dataclass
class Tables:
    """What the database holds (copied whole at the start of each unit of work, put back if
    it fails)."""

    reports: dict[UUID, Report] = field(default_factory=dict)
    resubmitted_at: dict[UUID, datetime] = field(default_factory=dict)
    processed: set[UUID] = field(default_factory=set)
    #: (position, entry): the history in the order written, as its ids would be.
    history: list[tuple[int, StatusChange]] = field(default_factory=list)
    idempotency_keys: dict[str, UsedKey] = field(default_factory=dict)
    kept: list[tuple[datetime, ReporterContactSubmitted]] = field(default_factory=list)
    canned: dict[int, CannedResponse] = field(default_factory=dict)
    reminder_days: set[tuple[str, date]] = field(default_factory=set)
    #: The events committed, in order.
    outbox: list[Event] = field(default_factory=list)

    def restore(self, before: Tables) -> None:
        """Back to ``before``, in place (the fixtures hold these very containers)."""
        for name, kept in vars(before).items():
            now = getattr(self, name)
            if isinstance(now, list):
                now[:] = kept
            else:
                now.clear()
                now.update(kept)


@dataclass
class FakeDatabase:
    tables: Tables = field(default_factory=Tables)
    staff_tokens: dict[str, StaffMember] = field(default_factory=dict)
    #: Run (and dropped) just before the next optimistic write: another writer's change.
    meanwhile: list[Callable[[Tables], None]] = field(default_factory=list)
    positions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    canned_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    units: int = 0

    def write_history(self, entries: Sequence[StatusChange]) -> None:
        self.tables.history += [(next(self.positions), e) for e in entries]


class FakeReports:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow
        self._db = uow.db

    @property
    def _reports(self) -> dict[UUID, Report]:
        return self._db.tables.reports

    async def get(self, report_id: UUID, *, for_update: bool = False) -> Report | None:
        found = self._reports.get(report_id)
        return copy.deepcopy(found) if found else None

    async def add(self, new_reports: Sequence[Report], events: Sequence[Event]) -> None:
        for report in new_reports:
            if report.id in self._reports:
                raise ValueError(f"duplicate key: report {report.id}")
            self._reports[report.id] = copy.deepcopy(report)
            self._db.write_history(report.history)
        contacts = [e for e in events if isinstance(e, ReporterContactSubmitted)]
        self._db.tables.kept += [(utcnow(), c) for c in contacts]
        self._uow.staged += events

    def _write(self, report: Report, changes: Sequence[StatusChange]) -> None:
        # The columns a saved report's row changes, as adapters.db.saved writes them.
        stored = self._reports[report.id]
        stored.status = report.status
        stored.office = report.office
        stored.updated_at = report.updated_at or report.requested_at
        stored.areas = list(report.areas)
        stored.duplicate_of = report.duplicate_of
        stored.history += changes
        self._db.write_history(changes)

    async def save(
        self,
        changed: Sequence[tuple[Report, Sequence[StatusChange]]],
        events: Sequence[Event],
        *,
        new_photos: Sequence[tuple[UUID, int, Photo]] = (),
    ) -> None:
        for report, changes in changed:
            self._write(report, changes)
        for report_id, position, photo in new_photos:
            photos = self._reports[report_id].photos
            assert position == len(photos), "photos are added at the end"
            photos.append(photo)
        self._uow.staged += events

    async def unprocessed(
        self, deliveries: Sequence[tuple[UUID, UUID]]
    ) -> tuple[set[UUID], dict[UUID, Report]]:
        fresh = {e for e, _ in deliveries if e not in self._db.tables.processed}
        concerned = {r for e, r in deliveries if e in fresh and r in self._reports}
        return fresh, {r: _without_details(self._reports[r]) for r in concerned}

    async def save_unless_changed(
        self,
        changed: Sequence[tuple[Report, Sequence[StatusChange]]],
        events: Sequence[ReportStatusChanged],
        *,
        read_updated_at: Mapping[UUID, datetime | None],
        deliveries: Sequence[tuple[UUID, UUID]],
    ) -> set[UUID]:
        others, self._db.meanwhile[:] = list(self._db.meanwhile), []
        for other in others:
            other(self._db.tables)
        saved = set()
        for report, changes in changed:
            read = read_updated_at.get(report.id)
            if read is None or self._reports[report.id].updated_at == read:
                self._write(report, changes)
                saved.add(report.id)
        attempted = {r.id for r, _ in changed}
        self._db.tables.processed |= {e for e, r in deliveries if r in saved or r not in attempted}
        self._uow.staged += [e for e in events if e.report_id in saved]
        return saved

    async def unrouted_since(self, before: datetime, limit: int = 500) -> list[Report]:
        resubmitted = self._db.tables.resubmitted_at
        return sorted(
            (
                _without_details(r)
                for r in self._reports.values()
                if r.status is ReportStatus.RECEIVED
                and r.requested_at < before
                and (r.id not in resubmitted or resubmitted[r.id] < before)
            ),
            key=lambda r: r.requested_at,
        )[:limit]

    async def mark_resubmitted(self, report_ids: Sequence[UUID]) -> None:
        now = utcnow()
        self._db.tables.resubmitted_at |= {r: now for r in report_ids}

    async def open_tickets(self) -> list[Report]:
        return [
            _without_details(r)
            for r in self._reports.values()
            if r.status in (ReportStatus.ASSIGNED, ReportStatus.IN_PROGRESS)
        ]

    async def open_by_office(self) -> list[tuple[str, str, int, datetime]]:
        found: dict[tuple[str, str], list[datetime]] = {}
        for r in self._reports.values():
            if r.status in OPEN and r.office is not None:
                found.setdefault((r.jurisdiction, r.office.code), []).append(r.requested_at)
        return [(j, o, len(times), min(times)) for (j, o), times in found.items()]

    async def claim_reminder_day(self, jurisdiction: str, day: date) -> bool:
        if (jurisdiction, day) in self._db.tables.reminder_days:
            return False
        self._db.tables.reminder_days.add((jurisdiction, day))
        return True

    async def open_nearby(
        self, service_code: str, lat: float, long: float, radius_m: float
    ) -> list[Report]:
        return [
            _without_details(r)
            for r in self._reports.values()
            if r.service_code == service_code
            and r.status in OPEN
            and distance_m(lat, long, r.lat, r.long) <= radius_m
        ]

    def _selected(self, found: TicketFilter, *, with_status: bool = True) -> list[Report]:
        def selected(r: Report) -> bool:
            office = r.office.code if r.office else None
            late = r.status in OPEN and r.expected_at is not None and r.expected_at < found.now
            words = (found.q or "").lower().split()
            return (
                (found.jurisdiction is None or r.jurisdiction == found.jurisdiction)
                and (found.offices is None or office in found.offices)
                and (not with_status or not found.statuses or r.status in found.statuses)
                and (not found.service_codes or r.service_code in found.service_codes)
                and (not found.area or any(found.area in (a.code, a.name) for a in r.areas))
                and (found.older_than is None or r.requested_at < found.older_than)
                and (found.newer_than is None or r.requested_at >= found.newer_than)
                and (found.overdue is None or late == found.overdue)
                and (
                    not words
                    or str(r.id).startswith(found.q or "")
                    or all(w in r.description.lower() for w in words)
                )
            )

        return [_without_details(r) for r in self._reports.values() if selected(r)]

    async def page(
        self, found: TicketFilter, *, sort: str = "-requested_at", offset: int = 0, limit: int = 50
    ) -> list[Report]:
        key = sort.lstrip("-")
        tickets = sorted(self._selected(found), key=lambda r: str(r.id))
        tickets.sort(key=lambda r: _sort_value(r, key), reverse=sort.startswith("-"))
        return tickets[offset : offset + limit]

    async def status_counts(self, found: TicketFilter) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._selected(found, with_status=False):
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        return counts

    async def search(self, criteria: ReportSearch) -> list[Report]:
        c = criteria

        def selected(r: Report) -> bool:
            if c.jurisdiction and r.jurisdiction != c.jurisdiction:
                return False
            if c.ids:
                return r.id in c.ids
            return (
                (not c.service_codes or r.service_code in c.service_codes)
                and (c.start is None or r.requested_at >= c.start)
                and (c.end is None or r.requested_at <= c.end)
                and (not c.statuses or r.status in c.statuses)
                and (
                    c.bbox is None
                    or (c.bbox[1] <= r.lat <= c.bbox[3] and c.bbox[0] <= r.long <= c.bbox[2])
                )
                and (not c.area or any(c.area in (a.code, a.name) for a in r.areas))
            )

        found = [copy.deepcopy(r) for r in self._reports.values() if selected(r)]
        return sorted(found, key=lambda r: r.requested_at, reverse=True)[: c.limit]

    async def id_for_token(self, token: str) -> UUID | None:
        return next((r.id for r in self._reports.values() if r.token == token), None)


def _sort_value(report: Report, key: str) -> str:
    value = getattr(report, key)
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _without_details(report: Report) -> Report:
    """As a query of the reports' table alone reads it: no history, no photos."""
    bare = copy.deepcopy(report)
    bare.history, bare.photos = [], []
    return bare


class FakeHistory:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def first_since(self, since: datetime) -> int | None:
        return min((p for p, e in self._db.tables.history if e.changed_at >= since), default=None)

    async def announced_after(
        self, position: int, limit: int
    ) -> list[tuple[int, ReportSubmitted | ReportStatusChanged]]:
        return [
            (p, e.announced)
            for p, e in self._db.tables.history
            if p > position and e.announced is not None
        ][:limit]


class FakeIdempotencyKeys:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def lock(self, key: str) -> None:
        return None  # the fakes never suspend: no other unit of work runs meanwhile

    async def get(self, key: str) -> UsedKey | None:
        return self._db.tables.idempotency_keys.get(key)

    async def add(self, key: str, used: UsedKey) -> None:
        if key in self._db.tables.idempotency_keys:
            raise ValueError(f"duplicate key: idempotency key {key!r}")
        self._db.tables.idempotency_keys[key] = used


class FakeKeptContacts:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow
        self._tables = uow.db.tables

    async def add(self, contacts: Sequence[ReporterContactSubmitted]) -> None:
        self._tables.kept += [(utcnow(), c) for c in contacts]
        self._uow.staged += contacts

    async def kept_since(
        self,
        since: datetime,
        *,
        after: tuple[datetime, UUID] | None,
        kept_within: timedelta | None,
        limit: int,
    ) -> list[tuple[datetime, ReporterContactSubmitted]]:
        oldest = utcnow() - kept_within if kept_within is not None else since
        found = sorted(
            (
                (at, c)
                for at, c in self._tables.kept
                if at >= since and at >= oldest and (after is None or (at, c.event_id) > after)
            ),
            key=lambda kept: (kept[0], kept[1].event_id),
        )
        return found[:limit]

    async def forget_older_than(self, kept_for: timedelta) -> int:
        before = len(self._tables.kept)
        self._tables.kept[:] = [(at, c) for at, c in self._tables.kept if at >= utcnow() - kept_for]
        return before - len(self._tables.kept)

    async def erase_reporters(self, report_id: UUID) -> int:
        before = len(self._tables.kept)
        self._tables.kept[:] = [
            (at, c)
            for at, c in self._tables.kept
            if not (c.report_id == report_id and c.reporter_token is not None)
        ]
        return before - len(self._tables.kept)


class FakeStaffAccounts:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def authenticate(self, token: str) -> StaffMember | None:
        return self._db.staff_tokens.get(token)


class FakeCannedResponses:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def of_offices(
        self, jurisdiction: str | None, offices: frozenset[str] | None
    ) -> list[CannedResponse]:
        return sorted(
            (
                c
                for c in self._db.tables.canned.values()
                if (jurisdiction is None or c.jurisdiction == jurisdiction)
                and (offices is None or c.office_code in offices)
            ),
            key=lambda c: (c.jurisdiction, c.office_code, c.title),
        )

    async def get(self, response_id: int) -> CannedResponse | None:
        return self._db.tables.canned.get(response_id)

    def _check_title(self, response: CannedResponse) -> None:
        if any(
            (c.jurisdiction, c.office_code, c.title)
            == (response.jurisdiction, response.office_code, response.title)
            and c.id != response.id
            for c in self._db.tables.canned.values()
        ):
            raise TitleTaken(response.title)

    async def add(self, response: CannedResponse) -> CannedResponse:
        self._check_title(response)
        stored = dataclasses.replace(response, id=next(self._db.canned_ids))
        self._db.tables.canned[stored.id] = stored
        return stored

    async def replace(self, response: CannedResponse) -> CannedResponse:
        self._check_title(response)
        self._db.tables.canned[response.id] = response
        return response

    async def delete(self, response_id: int) -> None:
        self._db.tables.canned.pop(response_id, None)


class FakeStatistics:
    """Counts per category only: the statistics' SQL is tested against PostgreSQL."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def of(
        self,
        jurisdiction: str | None,
        offices: frozenset[str] | None,
        *,
        start: datetime | None,
        end: datetime | None,
        timezone: str,
    ) -> Statistics:
        counts: dict[str, int] = {}
        for r in self._db.tables.reports.values():
            office = r.office.code if r.office else None
            if (
                (jurisdiction is None or r.jurisdiction == jurisdiction)
                and (offices is None or office in offices)
                and (start is None or r.requested_at >= start)
                and (end is None or r.requested_at < end)
            ):
                counts[r.service_code] = counts.get(r.service_code, 0) + 1
        return Statistics(sorted(counts.items()), [], [], None, None, 0, 0)


class FakeUnitOfWork:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.staged: list[Event] = []
        self.reports = FakeReports(self)
        self.history = FakeHistory(db)
        self.idempotency_keys = FakeIdempotencyKeys(db)
        self.kept_contacts = FakeKeptContacts(self)
        self.staff = FakeStaffAccounts(db)
        self.canned_responses = FakeCannedResponses(db)
        self.statistics = FakeStatistics(db)

    async def publish(self, *events: Event) -> None:
        self.staged += events


@dataclass
class FakeUnitOfWorks:
    """The factory: each unit of work sees the database as it is, and commits (its changes
    stay, its staged events join the outbox) only if its block ends without an exception.
    ``autocommit`` changes nothing here: a fake unit commits whole or not at all."""

    db: FakeDatabase

    @contextlib.asynccontextmanager
    async def _unit(self) -> AsyncIterator[FakeUnitOfWork]:
        self.db.units += 1
        before = copy.deepcopy(self.db.tables)
        uow = FakeUnitOfWork(self.db)
        try:
            yield uow
        except BaseException:
            self.db.tables.restore(before)
            raise
        self.db.tables.outbox += uow.staged

    def __call__(
        self, *, autocommit: bool = False
    ) -> contextlib.AbstractAsyncContextManager[FakeUnitOfWork]:
        return self._unit()


@dataclass
class FakeSubmissionWriter:
    uows: FakeUnitOfWorks
    written: int = 0

    async def write(self, report: Report, events: Sequence[Event]) -> None:
        async with self.uows() as uow:
            await uow.reports.add([report], events)
        self.written += 1


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def uows(database: FakeDatabase) -> UnitOfWorkFactory:
    return FakeUnitOfWorks(database)


@pytest.fixture
def writer(uows: FakeUnitOfWorks) -> SubmissionWriter:
    return FakeSubmissionWriter(uows)


@pytest.fixture
def outlines() -> Outlines:
    return FakeOutlines(
        FakeJurisdiction(
            "leipzig",
            "Leipzig",
            (51.24, 12.24, 51.45, 12.54),
            precedence=10,
            disabled_service_codes=frozenset({"011"}),
        ),
        FakeJurisdiction("sachsen", "Sachsen", (50.17, 11.87, 51.68, 15.04)),
    )


@pytest.fixture
def no_outlines() -> Outlines:
    """Before geo-router announced any."""
    return FakeOutlines()


@pytest.fixture
def tokens() -> ReporterTokens:
    return ReporterTokens(b"a secret of thirty-two bytes ..")


@pytest.fixture
def outbox(database: FakeDatabase) -> list[Event]:
    return database.tables.outbox


@pytest.fixture
def stored(database: FakeDatabase) -> dict[UUID, Report]:
    return database.tables.reports


@pytest.fixture
def processed(database: FakeDatabase) -> set[UUID]:
    return database.tables.processed


@pytest.fixture
def kept(database: FakeDatabase) -> list[tuple[datetime, ReporterContactSubmitted]]:
    return database.tables.kept


@pytest.fixture
def staff_tokens(database: FakeDatabase) -> dict[str, StaffMember]:
    return database.staff_tokens


@pytest.fixture
def meanwhile(database: FakeDatabase) -> list[Callable[[Tables], None]]:
    return database.meanwhile


@pytest.fixture
def roads() -> StaffMember:
    """A member of Leipzig's road office (VTA)."""
    return StaffMember(1, "anna", frozenset({"VTA"}), jurisdiction="leipzig")


@pytest.fixture
def parks() -> StaffMember:
    """A member of Leipzig's parks office (ASG)."""
    return StaffMember(2, "bernd", frozenset({"ASG"}), jurisdiction="leipzig")


@pytest.fixture
def admin() -> StaffMember:
    return StaffMember(3, "chef", frozenset(), is_admin=True, jurisdiction="leipzig")


NewReport = Callable[..., Awaitable[Report]]


@pytest.fixture
def new_report(writer: SubmissionWriter, outlines: Outlines, tokens: ReporterTokens) -> NewReport:
    """Submits a report (in Leipzig, category 001, with a contact unless told otherwise)."""

    async def submitted(
        *,
        service_code: str = "001",
        at: tuple[float, float] = IN_LEIPZIG,
        contact: Contact | None = Contact("anna@example.org"),
        description: str = "Schlagloch vor Hausnummer 5",
    ) -> Report:
        return await handlers.submit_report(
            writer,
            outlines,
            tokens,
            handlers.Submission(
                jurisdiction=None,
                service_code=service_code,
                lat=at[0],
                long=at[1],
                description=description,
                contact=contact,
            ),
        )

    return submitted


def routed(report: Report, office: str = "VTA", *, override: bool = False) -> ReportRouted:
    return ReportRouted(
        report_id=report.id,
        correlation_id=report.id,
        office=OfficeRef(code=office, name=f"Amt {office}"),
        areas=(MatchedArea(level="ortsteil", code="00", name="Zentrum"),),
        rule=f"category {report.service_code} → {office}",
        override=override,
    )


@pytest.fixture
def routed_to() -> Callable[..., ReportRouted]:
    """Geo-router's decision for a report: ``routed_to(report, "VTA")``."""
    return routed


@pytest.fixture
def assigned_report(new_report: NewReport, uows: UnitOfWorkFactory) -> NewReport:
    """Submits a report and routes it to an office (``office="VTA"``)."""

    async def assigned(*, office: str = "VTA", **submission: object) -> Report:
        report = await new_report(**submission)
        await handlers.record_routing_results(uows, [routed(report, office)])
        found = await handlers.get_report(uows, report.id)
        assert found is not None
        return found

    return assigned


@pytest.fixture
def new_id() -> Callable[[], UUID]:
    return uuid4
