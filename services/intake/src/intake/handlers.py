"""Intake's use cases. Each runs in one unit of work and stages the events it implies."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from uuid import UUID

from prometheus_client import Counter, Gauge, Histogram

from intake import domain
from intake.domain import (
    CannedResponse,
    Contact,
    InvalidReport,
    OfficeBacklog,
    Photo,
    Report,
    ReporterTokens,
    StaffMember,
    TransitionNotAllowed,
    canned_response_problems,
    distance_m,
    is_working_day,
    overdue,
    reporter_reopen,
    staff_note,
    staff_transition,
    submit,
)
from intake.ports import (
    Geocoder,
    HolidaysOf,
    OfficesOf,
    Outlines,
    ReportSearch,
    Statistics,
    SubmissionWriter,
    TicketFilter,
    UnitOfWorkFactory,
    UsedKey,
)
from mm_shared.categories import CATEGORIES, CATEGORIES_BY_CODE, Category
from mm_shared.events import (
    OfficeReminderDue,
    ReporterContactSubmitted,
    ReportReassigned,
    ReportRouted,
    ReportRoutingFailed,
    ReportStatus,
    ReportStatusChanged,
    ReportSubmitted,
    utcnow,
)

log = logging.getLogger(__name__)

ROUTER = "geo-router"
ACCEPTED = Counter("mm_reports_accepted_total", "Reports accepted, by category", ["service_code"])
REFUSED = Counter("mm_reports_refused_total", "Submissions refused, by reason", ["reason"])
RESUBMITTED = Counter(
    "mm_reports_resubmitted_total", "Reports re-published because they stayed unrouted"
)
# Buckets around the 60 s objective (docs/operations.md): le="60" counts the timely ones.
ASSIGNMENT_LATENCY = Histogram(
    "mm_report_assignment_seconds",
    "From a report's submission to its first assignment to an office",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)


class OutsideJurisdiction(InvalidReport):
    pass


class ServiceDisabled(InvalidReport):
    """The category is switched off in the report's jurisdiction (its manifest says so)."""


class UnknownJurisdiction(LookupError):
    """A request named a jurisdiction this deployment does not serve."""

    def __init__(self, code: str, served: Sequence[str]) -> None:
        known = ", ".join(served) or "none yet"
        super().__init__(f"no jurisdiction {code!r} is served here; served: {known}")
        self.code = code


class IdempotencyConflict(ValueError):
    pass


@dataclass(frozen=True)
class Submission:
    #: The jurisdiction the client named (Open311 ``jurisdiction_id``); None: the one that
    #: covers the place.
    jurisdiction: str | None
    service_code: str
    lat: float | None
    long: float | None
    description: str | None
    contact: Contact | None
    address: str | None = None
    media_url: str | None = None
    attributes: Mapping[str, list[str]] | None = None
    photos: Sequence[Photo] = ()
    #: Days to resolve per category, overriding the catalogue's (configuration, so not part
    #: of the request's fingerprint).
    service_levels: Mapping[str, float] | None = field(default=None, repr=False)
    #: Where a report goes while no outline is known (configuration, as above).
    default_jurisdiction: str = field(default="leipzig", repr=False)

    def fingerprint(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()


def check_named(boundaries: Outlines, code: str | None) -> None:
    """Raises UnknownJurisdiction for a named jurisdiction that is not served. While no
    outline is known at all, any name passes (routing has the last word, as for the place)."""
    served = boundaries.all()
    if code is not None and served and boundaries.get(code) is None:
        REFUSED.labels("unknown_jurisdiction").inc()
        raise UnknownJurisdiction(code, [j.code for j in served])


def offered_categories(boundaries: Outlines, code: str | None) -> list[Category]:
    """The shared catalogue, without the categories jurisdiction ``code`` switched off (all of
    it without one)."""
    chosen = boundaries.get(code) if code else None
    off = chosen.disabled_service_codes if chosen else frozenset()
    return [c for c in CATEGORIES if c.code not in off]


def choose_jurisdiction(
    boundaries: Outlines,
    requested: str | None,
    default: str,
    service_code: str,
    lat: float,
    long: float,
) -> str:
    """The jurisdiction a report at (lat, long) belongs to: the one named (the place must lie
    inside it), else the one covering the place (precedence, then the smaller area). Raises
    UnknownJurisdiction, OutsideJurisdiction, ServiceDisabled. While no outline is known,
    the named one or ``default`` (routing decides)."""
    check_named(boundaries, requested)
    served = boundaries.all()
    if not served:
        return requested or default
    chosen = boundaries.get(requested) if requested else boundaries.covering(lat, long)
    # One that covering() found covers the place: asked again only of the one named.
    if chosen is None or (requested and not chosen.covers(lat, long)):
        REFUSED.labels("outside_jurisdiction").inc()
        if requested and chosen is not None:
            where = f"the area of {chosen.name}"
        else:
            where = "the areas this service covers: " + ", ".join(sorted({j.name for j in served}))
        problem = (
            f"the location ({lat}, {long}) is outside {where}: "
            "reports can only be taken for places inside them"
        )
        swapped = chosen.covers(long, lat) if chosen else boundaries.covering(long, lat)
        if swapped:
            problem += f"; lat and long look swapped: did you mean lat={long}, long={lat}?"
        raise OutsideJurisdiction([problem])
    if service_code in chosen.disabled_service_codes:
        REFUSED.labels("service_disabled").inc()
        raise ServiceDisabled(
            [
                f"service_code {service_code!r} is not offered in {chosen.name}: "
                f"services?jurisdiction={chosen.code} lists what is"
            ]
        )
    return chosen.code


async def submit_report(
    writer: SubmissionWriter, boundaries: Outlines, tokens: ReporterTokens, submission: Submission
) -> Report:
    report, events = _create(boundaries, tokens, submission)
    await writer.write(report, events)
    ACCEPTED.labels(report.service_code).inc()
    return report


async def submit_report_once(
    uows: UnitOfWorkFactory,
    boundaries: Outlines,
    tokens: ReporterTokens,
    submission: Submission,
    idempotency_key: str,
) -> tuple[Report, bool]:
    """Submit under an Idempotency-Key: a retry with the same key and request returns the
    report created the first time (and False: nothing new was created)."""
    fingerprint = submission.fingerprint()
    async with uows() as uow:
        # Serialise concurrent retries of the same key.
        await uow.idempotency_keys.lock(idempotency_key)
        previous = await uow.idempotency_keys.get(idempotency_key)
        if previous is not None:
            if previous.request_hash != fingerprint:
                raise IdempotencyConflict(
                    "this Idempotency-Key was already used for a different request"
                )
            existing = await uow.reports.get(previous.report_id)
            assert existing is not None
            return existing, False
        report, events = _create(boundaries, tokens, submission)
        await uow.reports.add([report], events)
        await uow.idempotency_keys.add(idempotency_key, UsedKey(fingerprint, report.id))
    ACCEPTED.labels(report.service_code).inc()
    return report, True


async def idempotency_key_used(uows: UnitOfWorkFactory, idempotency_key: str) -> bool:
    async with uows() as uow:
        found = await uow.idempotency_keys.get(idempotency_key)
    return found is not None


def _create(
    boundaries: Outlines, tokens: ReporterTokens, s: Submission
) -> tuple[Report, list[ReportSubmitted | ReporterContactSubmitted]]:
    check_named(boundaries, s.jurisdiction)
    problems = domain.submission_problems(
        service_code=s.service_code,
        lat=s.lat,
        long=s.long,
        description=s.description,
        contact=s.contact,
        address=s.address,
        media_url=s.media_url,
        attributes=s.attributes,
    )
    if problems:
        REFUSED.labels("invalid").inc()
        raise InvalidReport(problems)
    assert s.lat is not None
    assert s.long is not None
    # Checked above, before the place decides the jurisdiction (so that is what a client hears
    # first of), and not again.
    return submit(
        jurisdiction=choose_jurisdiction(
            boundaries, s.jurisdiction, s.default_jurisdiction, s.service_code, s.lat, s.long
        ),
        service_code=s.service_code,
        lat=s.lat,
        long=s.long,
        description=s.description,
        contact=s.contact,
        address=s.address,
        media_url=s.media_url,
        attributes=s.attributes,
        photos=s.photos,
        service_levels=s.service_levels,
        tokens=tokens,
        checked=True,
    )


async def follow(uows: UnitOfWorkFactory, report_id: UUID, contact: Contact) -> bool:
    """ "Me too": another reporter follows an existing report and hears of its changes."""
    async with uows() as uow:
        report = await uow.reports.get(report_id)
        if report is None:
            return False
        following = ReporterContactSubmitted(
            report_id=report_id,
            correlation_id=report_id,
            jurisdiction=report.jurisdiction,
            email=contact.email,
            first_name=contact.first_name,
            last_name=contact.last_name,
            phone=contact.phone,
            locale=contact.language,
        )
        await uow.kept_contacts.add([following])
    return True


class ReportNotFound(LookupError):
    pass


class InvalidReporterToken(PermissionError):
    pass


async def check_reopenable(
    uows: UnitOfWorkFactory, tokens: ReporterTokens, report_id: UUID, token: str, within: timedelta
) -> None:
    """Whether the reporter may say "not fixed" now (raises why not), asked before their
    photo is stored: a photo for a report that stays closed would be kept for nothing."""
    if not tokens.valid(report_id, token):
        raise InvalidReporterToken(report_id)
    report = await get_report(uows, report_id)
    if report is None:
        raise ReportNotFound(report_id)
    domain.check_reopenable(report, now=utcnow(), within=within)


async def reopen_by_reporter(
    uows: UnitOfWorkFactory,
    tokens: ReporterTokens,
    report_id: UUID,
    token: str,
    *,
    note: str | None,
    photo: Photo | None,
    within: timedelta,
) -> Report:
    """ "Not fixed": the reporter (who holds the report's token) takes a resolved report back
    to its office, with a public note and at most one photo."""
    if not tokens.valid(report_id, token):
        raise InvalidReporterToken(report_id)
    async with uows() as uow:
        report = await uow.reports.get(report_id, for_update=True)
        if report is None:
            raise ReportNotFound(report_id)
        seen = len(report.history)
        change = reporter_reopen(report, note=note, now=utcnow(), within=within)
        if photo is not None:
            report.photos.append(photo)
        await uow.reports.save(
            [(report, report.history[seen:])],
            [change],
            new_photos=[(report.id, len(report.photos) - 1, photo)] if photo else (),
        )
    return report


async def get_report(uows: UnitOfWorkFactory, report_id: UUID) -> Report | None:
    async with uows() as uow:
        return await uow.reports.get(report_id)


RoutingResult = ReportRouted | ReportRoutingFailed


def _apply_routing(report: Report, event: RoutingResult) -> ReportStatusChanged | None:
    """The transition a routing result implies, or None if it changes nothing. The rules only
    ever route a new report; a staff override (``override``) moves an assigned one."""
    try:
        if isinstance(event, ReportRouted):
            if report.office == event.office:
                return None
            if not event.override and report.status is not ReportStatus.RECEIVED:
                return None
            report.areas = list(event.areas) or report.areas
            areas = ", ".join(f"{a.level} {a.name}" for a in event.areas)
            return report.change_status(
                ReportStatus.ASSIGNED,
                ROUTER,
                office=event.office,
                internal_note=f"{event.rule} (areas: {areas})" if areas else event.rule,
                correlation_id=event.correlation_id,
            )
        return report.change_status(
            ReportStatus.REJECTED,
            ROUTER,
            public_note="Für diesen Ort ist keine Dienststelle zuständig.",
            internal_note=f"routing failed: {event.reason}: {event.detail}",
            correlation_id=event.correlation_id,
        )
    except TransitionNotAllowed:
        # Staff already moved the report on; a late routing result must not undo that.
        log.info("routing result for %s in status %s ignored", report.id, report.status)
        return None


async def record_routing_results(uows: UnitOfWorkFactory, events: Sequence[RoutingResult]) -> None:
    """Geo-router's decisions become status transitions; a redelivered decision changes
    nothing. Without locks or a transaction around it (two round trips for a batch): the
    transitions are written only where the report is unchanged since it was read, with their
    events and the deliveries recorded, in one statement. A report someone changed meanwhile
    (staff at work) is read and decided again."""
    pending = list(events)
    for _ in range(_RACES_BEFORE_GIVING_UP):
        if not pending:
            return
        async with uows(autocommit=True) as uow:
            deliveries = [(e.event_id, e.report_id) for e in pending]
            fresh, reports = await uow.reports.unprocessed(deliveries)
            read_updated_at = {r.id: r.updated_at for r in reports.values()}
            announcements = []
            first_assignments: dict[UUID, datetime] = {}
            for event in pending:
                if event.event_id not in fresh:
                    continue
                report = reports.get(event.report_id)
                if report is None:
                    log.warning("routing result for unknown report %s ignored", event.report_id)
                    continue
                was_new = report.status is ReportStatus.RECEIVED
                change = _apply_routing(report, event)
                if change is not None:
                    announcements.append(change)
                    if was_new and report.status is ReportStatus.ASSIGNED:
                        first_assignments[report.id] = report.requested_at
            changed = [(r, r.history) for r in reports.values() if r.history]
            done = await uow.reports.save_unless_changed(
                changed, announcements, read_updated_at=read_updated_at, deliveries=deliveries
            )
        now = utcnow()
        for report_id, requested_at in first_assignments.items():
            if report_id in done:
                ASSIGNMENT_LATENCY.observe((now - requested_at).total_seconds())
        conflicts = {r.id for r, _ in changed if r.id not in done}
        pending = [e for e in pending if e.report_id in conflicts]
    if pending:  # the consumer retries the batch after a pause
        raise RuntimeError(f"{len(pending)} routing results kept racing with other changes")


_RACES_BEFORE_GIVING_UP = 5


async def resubmit_unrouted(uows: UnitOfWorkFactory, older_than: timedelta) -> int:
    """Re-publish reports that stayed unrouted (a lost message, a broker that forgot): geo-router
    decides once and re-announces, so this is always safe."""
    async with uows() as uow:
        stale = await uow.reports.unrouted_since(utcnow() - older_than)
        if not stale:
            return 0
        await uow.publish(
            *(
                ReportSubmitted(
                    report_id=r.id,
                    correlation_id=r.id,
                    jurisdiction=r.jurisdiction,
                    service_code=r.service_code,
                    lat=r.lat,
                    long=r.long,
                    submitted_at=r.requested_at,
                    resubmission=True,
                )
                for r in stale
            )
        )
        await uow.reports.mark_resubmitted([r.id for r in stale])
    RESUBMITTED.inc(len(stale))
    log.warning("re-published %d reports not routed within %s", len(stale), older_than)
    return len(stale)


async def reannounce(
    uows: UnitOfWorkFactory,
    since: datetime,
    batch_size: int = 1000,
    contacts_kept: timedelta | None = None,
) -> int:
    """Stage again every event intake announced since ``since`` and keeps (each report's
    submission and its status changes from the history; reporters' contacts while they are
    kept, ``contacts_kept``: all still stored when None), exactly, with the original event ids,
    in their order: after a broker lost them, consumers take what they miss and drop what they
    have (their inboxes, geo-router's stored decisions). Not kept, so not re-announced: staff's
    reassignment requests, the offices' reminders. Returns how many events were staged."""
    staged = await _reannounce_history(uows, since, batch_size)
    # Keyset pages: one group commit keeps many contacts at the same moment.
    after: tuple[datetime, UUID] | None = None
    while True:
        async with uows() as uow:
            contacts = await uow.kept_contacts.kept_since(
                since, after=after, kept_within=contacts_kept, limit=batch_size
            )
            if not contacts:
                return staged
            await uow.publish(*(event for _, event in contacts))
        kept_at, last = contacts[-1]
        after, staged = (kept_at, last.event_id), staged + len(contacts)


async def _reannounce_history(uows: UnitOfWorkFactory, since: datetime, batch_size: int) -> int:
    async with uows() as uow:
        first = await uow.history.first_since(since)
    if first is None:
        return 0
    after = first - 1
    staged = 0
    while True:
        async with uows() as uow:
            entries = await uow.history.announced_after(after, batch_size)
            if not entries:
                return staged
            await uow.publish(*(event for _, event in entries))
        after, staged = entries[-1][0], staged + len(entries)


async def forget_kept_contacts(uows: UnitOfWorkFactory, kept_for: timedelta) -> int:
    """Erase the reporters' contact events kept longer than ``kept_for`` (storage limitation:
    they are kept for re-announcing only). Returns how many were erased."""
    async with uows() as uow:
        return await uow.kept_contacts.forget_older_than(kept_for)


async def erase_kept_contact(
    uows: UnitOfWorkFactory, tokens: ReporterTokens, report_id: UUID, token: str
) -> int:
    """The reporter asks to erase their contact data (GDPR Art. 17): intake's kept copy of it
    goes (the notifier erases its own on the same request). Raises InvalidReporterToken for a
    token that is not theirs. Returns how many were erased (0: none was kept any more)."""
    if not tokens.valid(report_id, token):
        raise InvalidReporterToken(report_id)
    async with uows() as uow:
        return await uow.kept_contacts.erase_reporters(report_id)


TRANSITIONS = Counter(
    "mm_ticket_transitions_total", "Status transitions made by staff", ["status", "office"]
)


class InvalidField(InvalidReport):
    """A request that cannot be carried out because of one field, named."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__([problem])
        self.field = field


class TicketNotFound(LookupError):
    """No such ticket, or not one of the asking staff member's offices (they look the same)."""


async def authenticate(uows: UnitOfWorkFactory, token: str) -> StaffMember | None:
    async with uows() as uow:
        return await uow.staff.authenticate(token)


async def staff_ticket(uows: UnitOfWorkFactory, member: StaffMember, report_id: UUID) -> Report:
    report = await get_report(uows, report_id)
    if report is None or not member.may_handle(
        report.jurisdiction, report.office.code if report.office else None
    ):
        raise TicketNotFound(report_id)
    return report


async def change_ticket(
    uows: UnitOfWorkFactory,
    member: StaffMember,
    report_id: UUID,
    status: ReportStatus,
    *,
    public_note: str | None = None,
    internal_note: str | None = None,
    office_code: str | None = None,
    duplicate_of: UUID | None = None,
    offices: OfficesOf = lambda _: None,
) -> Report | None:
    """A staff transition. Handing a ticket to another office (``assigned`` with an
    ``office_code``, one of ``offices(ticket's jurisdiction)`` when that directory is known)
    is asked of geo-router, which announces the new office; None then."""
    async with uows() as uow:
        report = await uow.reports.get(report_id, for_update=True)
        if report is None or not member.may_handle(
            report.jurisdiction, report.office.code if report.office else None
        ):
            raise TicketNotFound(report_id)
        if status is ReportStatus.ASSIGNED:
            if not office_code:
                raise InvalidReport(["assigning to another office needs an office_code"])
            directory = offices(report.jurisdiction)
            if directory is not None and office_code not in directory:
                known = ", ".join(sorted(directory))
                raise InvalidReport([f"unknown office_code {office_code!r}; offices: {known}"])
            if report.status not in (ReportStatus.ASSIGNED, ReportStatus.IN_PROGRESS):
                raise TransitionNotAllowed(f"a {report.status.value} ticket cannot be reassigned")
            await uow.publish(
                ReportReassigned(
                    report_id=report.id,
                    correlation_id=report.id,
                    jurisdiction=report.jurisdiction,
                    office_code=office_code,
                    reassigned_by=member.label,
                    reason=internal_note or public_note,
                )
            )
            return None
        if status is ReportStatus.DUPLICATE and duplicate_of is not None:
            # Only into a ticket the member may see: else staff could learn of other offices'
            # tickets, and hand reporters to them, by trying ids. An unknown id and another
            # office's ticket are refused alike, as they are a 404 elsewhere in this API.
            original = await uow.reports.get(duplicate_of)
            if original is None or not member.may_handle(
                original.jurisdiction, original.office.code if original.office else None
            ):
                raise InvalidField(
                    "duplicate_of", f"no ticket {duplicate_of} among your offices' tickets"
                )
            if original.status is ReportStatus.DUPLICATE:
                raise InvalidField(
                    "duplicate_of",
                    f"ticket {duplicate_of} is itself a duplicate: merge into "
                    f"{original.duplicate_of} instead",
                )
        seen = len(report.history)
        change = staff_transition(
            report,
            status,
            member.label,
            public_note=public_note,
            internal_note=internal_note,
            duplicate_of=duplicate_of,
        )
        await uow.reports.save([(report, report.history[seen:])], [change])
    TRANSITIONS.labels(status.value, report.office.code if report.office else "none").inc()
    return report


async def note_ticket(
    uows: UnitOfWorkFactory,
    member: StaffMember,
    report_id: UUID,
    *,
    public_note: str | None,
    internal_note: str | None,
) -> Report:
    """A note on a ticket, its status kept; a public one reaches the reporter."""
    async with uows() as uow:
        report = await uow.reports.get(report_id, for_update=True)
        if report is None or not member.may_handle(
            report.jurisdiction, report.office.code if report.office else None
        ):
            raise TicketNotFound(report_id)
        seen = len(report.history)
        news = staff_note(
            report, member.label, public_note=public_note, internal_note=internal_note
        )
        await uow.reports.save([(report, report.history[seen:])], [news] if news else [])
    return report


OPEN_TICKET_AGE = Gauge(
    "mm_open_ticket_age_seconds",
    "Age of the oldest open ticket per office (for SLAs)",
    ["jurisdiction", "office"],
)
OPEN_TICKETS = Gauge("mm_open_tickets", "Open tickets per office", ["jurisdiction", "office"])
OVERDUE_TICKETS = Gauge(
    "mm_overdue_tickets",
    "Tickets waiting longer than the reminders allow, per office: not accepted, stalled, or past their service level",
    ["jurisdiction", "office", "reason"],
)


def _by_jurisdiction(tickets: Sequence[Report]) -> dict[str, list[Report]]:
    found: dict[str, list[Report]] = {}
    for ticket in tickets:
        found.setdefault(ticket.jurisdiction, []).append(ticket)
    return found


async def measure_open_tickets(
    uows: UnitOfWorkFactory,
    *,
    accept_within_working_days: int,
    work_within_days: float,
    holidays: Container[date] = (),
    holidays_of: HolidaysOf | None = None,
) -> None:
    """The offices' gauges, per (jurisdiction, office): office codes repeat across cities."""
    async with uows() as uow:
        by_office = await uow.reports.open_by_office()
        tickets = await uow.reports.open_tickets()
    for jurisdiction, office, count, oldest in by_office:
        OPEN_TICKETS.labels(jurisdiction, office).set(count)
        OPEN_TICKET_AGE.labels(jurisdiction, office).set((utcnow() - oldest).total_seconds())
    due: dict[tuple[str, str], OfficeBacklog] = {}
    for jurisdiction, theirs in _by_jurisdiction(tickets).items():
        found = overdue(
            theirs,
            utcnow(),
            accept_within_working_days=accept_within_working_days,
            work_within_days=work_within_days,
            holidays=holidays_of(jurisdiction) if holidays_of else holidays,
        )
        due |= {(jurisdiction, office): backlog for office, backlog in found.items()}
    # Every office with open tickets gets both series (0 when none is overdue), so a
    # dashboard shows an office that caught up as 0, not as its last overdue count.
    for key in {(j, o) for j, o, _, _ in by_office} | set(due):
        backlog = due.get(key) or OfficeBacklog()
        OVERDUE_TICKETS.labels(*key, "not_accepted").set(len(backlog.not_accepted))
        OVERDUE_TICKETS.labels(*key, "stalled").set(len(backlog.stalled))
        OVERDUE_TICKETS.labels(*key, "past_service_level").set(len(backlog.past_service_level))


async def send_office_reminders(
    uows: UnitOfWorkFactory,
    day: date,
    *,
    accept_within_working_days: int,
    work_within_days: float,
    holidays: Container[date] = (),
    holidays_of: HolidaysOf | None = None,
) -> int:
    """Once per working day of each jurisdiction (across all intake instances): one summary
    per office that has tickets waiting too long, each jurisdiction with its own public
    holidays. Returns how many offices are reminded."""
    reminded = 0
    async with uows() as uow:
        tickets = await uow.reports.open_tickets()
        for jurisdiction, theirs in sorted(_by_jurisdiction(tickets).items()):
            days_off = holidays_of(jurisdiction) if holidays_of else holidays
            if not is_working_day(day, days_off):
                continue
            if not await uow.reports.claim_reminder_day(jurisdiction, day):
                continue
            due = overdue(
                theirs,
                utcnow(),
                accept_within_working_days=accept_within_working_days,
                work_within_days=work_within_days,
                holidays=days_off,
            )
            await uow.publish(
                *(
                    OfficeReminderDue(
                        jurisdiction=jurisdiction,
                        office_code=office,
                        day=day,
                        not_accepted=tuple(backlog.not_accepted),
                        stalled=tuple(backlog.stalled),
                        past_service_level=tuple(backlog.past_service_level),
                        accept_within_working_days=accept_within_working_days,
                        work_within_days=work_within_days,
                    )
                    for office, backlog in sorted(due.items())
                )
            )
            reminded += len(due)
    return reminded


# The staff console.


async def queue(
    uows: UnitOfWorkFactory, found: TicketFilter, *, sort: str, offset: int, limit: int
) -> tuple[list[Report], dict[str, int]]:
    """One page of the staff queue and its counts per status: two queries at once, on two
    connections (counting all of an office's tickets costs more than finding a page)."""

    async def page() -> list[Report]:
        async with uows(autocommit=True) as uow:
            return await uow.reports.page(found, sort=sort, offset=offset, limit=limit)

    async def counts() -> dict[str, int]:
        async with uows(autocommit=True) as uow:
            return await uow.reports.status_counts(found)

    return await asyncio.gather(page(), counts())


async def nearby_candidates(
    uows: UnitOfWorkFactory, member: StaffMember, report_id: UUID, radius_m: float
) -> tuple[Report, list[Report]]:
    """Open reports of the same category near a ticket: candidates to mark it a duplicate of
    (any office's of its jurisdiction: a duplicate may have been routed elsewhere), nearest
    first."""
    ticket = await staff_ticket(uows, member, report_id)
    async with uows() as uow:
        nearby = await uow.reports.open_nearby(
            ticket.service_code, ticket.lat, ticket.long, radius_m
        )
    # Only the ticket's own jurisdiction's: a merge crosses no city limit.
    nearby = [r for r in nearby if r.id != ticket.id and r.jurisdiction == ticket.jurisdiction]
    return ticket, sorted(nearby, key=lambda r: distance_m(ticket.lat, ticket.long, r.lat, r.long))


class NotYourOffice(PermissionError):
    pass


async def canned_responses(uows: UnitOfWorkFactory, member: StaffMember) -> list[CannedResponse]:
    async with uows() as uow:
        return await uow.canned_responses.of_offices(member.jurisdiction, member.seen_offices)


async def keep_canned_response(
    uows: UnitOfWorkFactory,
    member: StaffMember,
    *,
    jurisdiction: str,
    office_code: str,
    title: str,
    body: str,
    response_id: int | None = None,
) -> CannedResponse:
    """Add a canned response for one of my offices (in ``jurisdiction``), or
    (``response_id``) change one of theirs. Raises TicketNotFound for another office's
    response, NotYourOffice, InvalidReport, TitleTaken."""
    if problems := canned_response_problems(title, body):
        raise InvalidReport(problems)
    if not member.may_handle(jurisdiction, office_code):
        raise NotYourOffice(office_code)
    response = CannedResponse(
        id=response_id or 0,
        jurisdiction=jurisdiction,
        office_code=office_code,
        title=title.strip(),
        body=body.strip(),
        updated_by=member.label,
        updated_at=utcnow(),
    )
    async with uows() as uow:
        kept = uow.canned_responses
        if response_id is None:
            return await kept.add(response)
        existing = await kept.get(response_id)
        if existing is None or not member.may_handle(existing.jurisdiction, existing.office_code):
            raise TicketNotFound(response_id)
        return await kept.replace(response)


async def drop_canned_response(
    uows: UnitOfWorkFactory, member: StaffMember, response_id: int
) -> None:
    async with uows() as uow:
        kept = uow.canned_responses
        existing = await kept.get(response_id)
        if existing is None or not member.may_handle(existing.jurisdiction, existing.office_code):
            raise TicketNotFound(response_id)
        await kept.delete(response_id)


async def office_statistics(
    uows: UnitOfWorkFactory,
    jurisdiction: str | None,
    offices: frozenset[str] | None,
    *,
    start: datetime | None,
    end: datetime | None,
    timezone: str,
) -> Statistics:
    """Of ``offices`` (None: all) in ``jurisdiction`` (None: every one)."""
    async with uows() as uow:
        return await uow.statistics.of(
            jurisdiction, offices, start=start, end=end, timezone=timezone
        )


# The rules the HTTP entrypoints had held themselves.


@dataclass(frozen=True)
class NearbyReport:
    report: Report
    distance_m: float


async def possible_duplicates(
    uows: UnitOfWorkFactory,
    *,
    service_code: str,
    lat: float,
    long: float,
    radius_m: float,
    acknowledged: bool = False,
    idempotency_key: str | None = None,
) -> list[NearbyReport]:
    """The duplicate rule: the open reports of a new submission's category within
    ``radius_m`` of its place, which its reporter is shown instead (to follow one of them).
    None when the reporter acknowledged theirs is a new one, for the retry of a submission
    already accepted under its Idempotency-Key (it found none then, or was acknowledged),
    and for an unknown category (which the submission refuses anyway)."""
    if acknowledged or service_code not in CATEGORIES_BY_CODE:
        return []
    async with uows() as uow:
        if idempotency_key and await uow.idempotency_keys.get(idempotency_key):
            return []
        nearby = await uow.reports.open_nearby(service_code, lat, long, radius_m)
    return [NearbyReport(r, distance_m(lat, long, r.lat, r.long)) for r in nearby]


class AddressNotLocated(InvalidReport):
    """A report placed by its address alone, which cannot be located: the reporter's to fix."""


async def locate(
    geocoder: Geocoder | None, lat: float | None, long: float | None, address: str | None
) -> tuple[float | None, float | None]:
    """Where a report is: its coordinates, else (with an address alone) the place the
    geocoder finds for its address. Raises AddressNotLocated; what the geocoder raises when
    it cannot answer passes through (not the reporter's fault: they may try again)."""
    if (lat is not None and long is not None) or not address:
        return lat, long
    if geocoder is None:
        raise AddressNotLocated(
            [
                "address_string alone cannot be located here (no geocoder is configured): "
                "send lat and long as well"
            ]
        )
    found = await geocoder.locate(address)
    if found is None:
        raise AddressNotLocated(
            [f"address_string {address!r} was not found: check it or send lat and long"]
        )
    return found


async def find_reports(
    uows: UnitOfWorkFactory, criteria: ReportSearch = ReportSearch()
) -> list[Report]:
    """Public reports by the Open311 filters, a bounding box or an area, newest first."""
    async with uows() as uow:
        return await uow.reports.search(criteria)


async def report_id_for_token(uows: UnitOfWorkFactory, token: str) -> UUID | None:
    """The report behind an Open311 token handed out before every service was realtime."""
    async with uows() as uow:
        return await uow.reports.id_for_token(token)


async def move_ticket(
    uows: UnitOfWorkFactory,
    member: StaffMember,
    report_id: UUID,
    status: ReportStatus,
    *,
    public_note: str | None = None,
    internal_note: str | None = None,
    office_code: str | None = None,
    duplicate_of: UUID | None = None,
    offices: OfficesOf = lambda _: None,
) -> Report | None:
    """:func:`change_ticket`, answered with the ticket as stored after it (None: a hand-over
    asked of geo-router)."""
    changed = await change_ticket(
        uows,
        member,
        report_id,
        status,
        public_note=public_note,
        internal_note=internal_note,
        office_code=office_code,
        duplicate_of=duplicate_of,
        offices=offices,
    )
    if changed is None:
        return None
    stored = await get_report(uows, changed.id)
    assert stored is not None
    return stored


async def accept_submission(
    writer: SubmissionWriter,
    uows: UnitOfWorkFactory,
    boundaries: Outlines,
    tokens: ReporterTokens,
    submission: Submission,
    idempotency_key: str | None = None,
) -> tuple[Report, bool]:
    """A new report, and whether it is new: under an Idempotency-Key once only (a retry gets
    the report created the first time, and False), without one through ``writer``, which
    commits concurrent submissions together."""
    if idempotency_key:
        return await submit_report_once(uows, boundaries, tokens, submission, idempotency_key)
    return await submit_report(writer, boundaries, tokens, submission), True
