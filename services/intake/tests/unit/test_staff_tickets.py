"""Staff work their offices' tickets: transitions and notes, what is refused, reassignment
through geo-router, duplicates, the queue. Against the fakes of tests/unit/conftest.py."""

from collections.abc import Awaitable, Callable
from uuid import UUID

import pytest

from intake import handlers
from intake.domain import InvalidReport, Report, StaffMember, TransitionNotAllowed
from intake.ports import TicketFilter, UnitOfWorkFactory
from mm_shared.events import Event, ReportReassigned, ReportStatus, ReportStatusChanged

NewReport = Callable[..., Awaitable[Report]]


async def test_an_office_moves_its_ticket_on_and_the_reporter_hears_of_it(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await assigned_report(office="VTA")
    changed = await handlers.change_ticket(
        uows,
        roads,
        report.id,
        ReportStatus.RESOLVED,
        public_note="Repariert",
        internal_note="Kolonne 3",
    )
    assert changed is not None
    assert changed.status is ReportStatus.RESOLVED
    now = stored[report.id]
    assert now.status is ReportStatus.RESOLVED
    entry = now.history[-1]
    assert (entry.changed_by, entry.public_note, entry.internal_note) == (
        "staff:anna",
        "Repariert",
        "Kolonne 3",
    )
    announced = outbox[-1]
    assert isinstance(announced, ReportStatusChanged)
    assert (announced.status, announced.previous_status) == (
        ReportStatus.RESOLVED,
        ReportStatus.ASSIGNED,
    )
    assert announced.public_note == "Repariert"
    assert "Kolonne 3" not in announced.model_dump_json()


async def test_a_transition_the_lifecycle_forbids_is_refused_and_changes_nothing(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await assigned_report(office="VTA")
    await handlers.change_ticket(uows, roads, report.id, ReportStatus.RESOLVED)
    before, published = stored[report.id].history[:], len(outbox)
    with pytest.raises(TransitionNotAllowed):
        await handlers.change_ticket(
            uows, roads, report.id, ReportStatus.REJECTED, public_note="Kein Schaden"
        )
    with pytest.raises(InvalidReport, match="cannot set received"):
        await handlers.change_ticket(uows, roads, report.id, ReportStatus.RECEIVED)
    await handlers.change_ticket(uows, roads, report.id, ReportStatus.IN_PROGRESS)
    with pytest.raises(InvalidReport, match="rejection needs a public_note"):
        await handlers.change_ticket(uows, roads, report.id, ReportStatus.REJECTED)
    assert stored[report.id].status is ReportStatus.IN_PROGRESS
    assert len(stored[report.id].history) == len(before) + 1
    assert len(outbox) == published + 1


async def test_another_offices_ticket_is_not_found_and_stays_as_it_was(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    parks: StaffMember,
    admin: StaffMember,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await assigned_report(office="VTA")
    published = len(outbox)
    with pytest.raises(handlers.TicketNotFound):
        await handlers.staff_ticket(uows, parks, report.id)
    with pytest.raises(handlers.TicketNotFound):
        await handlers.change_ticket(uows, parks, report.id, ReportStatus.IN_PROGRESS)
    with pytest.raises(handlers.TicketNotFound):
        await handlers.note_ticket(
            uows, parks, report.id, public_note=None, internal_note="nicht meins"
        )
    assert stored[report.id].status is ReportStatus.ASSIGNED
    assert len(stored[report.id].history) == 2
    assert len(outbox) == published
    other_city = StaffMember(9, "dora", frozenset({"VTA"}), jurisdiction="koeln")
    with pytest.raises(handlers.TicketNotFound):
        await handlers.staff_ticket(uows, other_city, report.id)
    assert (await handlers.staff_ticket(uows, admin, report.id)).id == report.id


async def test_an_internal_note_tells_nobody_and_a_public_one_tells_the_reporter(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await assigned_report(office="VTA")
    published = len(outbox)
    await handlers.note_ticket(
        uows, roads, report.id, public_note=None, internal_note="Material bestellt"
    )
    assert len(outbox) == published
    await handlers.note_ticket(
        uows, roads, report.id, public_note="Wir kümmern uns", internal_note=None
    )
    (news,) = outbox[published:]
    assert isinstance(news, ReportStatusChanged)
    assert news.note_only
    assert news.public_note == "Wir kümmern uns"
    notes = [(h.public_note, h.internal_note) for h in stored[report.id].history[2:]]
    assert notes == [(None, "Material bestellt"), ("Wir kümmern uns", None)]
    assert stored[report.id].status is ReportStatus.ASSIGNED
    with pytest.raises(InvalidReport):
        await handlers.note_ticket(uows, roads, report.id, public_note=" ", internal_note=None)


async def test_handing_a_ticket_to_another_office_is_asked_of_geo_router(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await assigned_report(office="VTA")
    directory = {"VTA": "Verkehrsamt", "ASG": "Amt für Stadtgrün"}
    published = len(outbox)
    answer = await handlers.change_ticket(
        uows,
        roads,
        report.id,
        ReportStatus.ASSIGNED,
        office_code="ASG",
        internal_note="Baum, nicht Straße",
        offices=lambda jurisdiction: directory if jurisdiction == "leipzig" else None,
    )
    assert answer is None
    (asked,) = outbox[published:]
    assert isinstance(asked, ReportReassigned)
    assert (asked.office_code, asked.reassigned_by, asked.reason) == (
        "ASG",
        "staff:anna",
        "Baum, nicht Straße",
    )
    office = stored[report.id].office
    assert office is not None
    assert office.code == "VTA"  # until geo-router announces the new one
    with pytest.raises(InvalidReport, match="unknown office_code 'XYZ'"):
        await handlers.change_ticket(
            uows,
            roads,
            report.id,
            ReportStatus.ASSIGNED,
            office_code="XYZ",
            offices=lambda _: directory,
        )
    with pytest.raises(InvalidReport, match="needs an office_code"):
        await handlers.change_ticket(uows, roads, report.id, ReportStatus.ASSIGNED)
    assert len(outbox) == published + 1


async def test_a_duplicate_goes_only_into_a_ticket_the_member_may_see(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    stored: dict[UUID, Report],
) -> None:
    original = await assigned_report(office="VTA")
    theirs = await assigned_report(office="ASG")
    copy = await assigned_report(office="VTA")
    with pytest.raises(handlers.InvalidField) as refused:
        await handlers.change_ticket(
            uows, roads, copy.id, ReportStatus.DUPLICATE, duplicate_of=theirs.id
        )
    assert refused.value.field == "duplicate_of"
    await handlers.change_ticket(
        uows, roads, copy.id, ReportStatus.DUPLICATE, duplicate_of=original.id
    )
    assert stored[copy.id].duplicate_of == original.id
    third = await assigned_report(office="VTA")
    with pytest.raises(handlers.InvalidField, match=f"merge into {original.id}"):
        await handlers.change_ticket(
            uows, roads, third.id, ReportStatus.DUPLICATE, duplicate_of=copy.id
        )


async def test_nearby_candidates_are_open_reports_of_the_category_nearest_first(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    new_report: NewReport,
    roads: StaffMember,
) -> None:
    ticket = await assigned_report(office="VTA", at=(51.3400, 12.3700))
    near = await new_report(at=(51.3401, 12.3700))
    nearer = await assigned_report(office="ASG", at=(51.34005, 12.3700))
    await new_report(at=(51.3400, 12.3700), service_code="003")  # another category
    await new_report(at=(51.3500, 12.3700))  # too far
    this, found = await handlers.nearby_candidates(uows, roads, ticket.id, radius_m=50)
    assert this.id == ticket.id
    assert [r.id for r in found] == [nearer.id, near.id]


async def test_the_queue_shows_a_page_of_the_offices_tickets_and_counts_per_status(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
) -> None:
    mine = [await assigned_report(office="VTA") for _ in range(3)]
    await assigned_report(office="ASG")
    await handlers.change_ticket(uows, roads, mine[0].id, ReportStatus.IN_PROGRESS)
    found = TicketFilter(offices=roads.seen_offices, jurisdiction=roads.jurisdiction)
    page, counts = await handlers.queue(uows, found, sort="-requested_at", offset=0, limit=2)
    assert [r.id for r in page] == [mine[2].id, mine[1].id]
    assert counts == {"assigned": 2, "in_progress": 1}
    in_progress = TicketFilter(
        offices=roads.seen_offices, statuses=[ReportStatus.IN_PROGRESS], jurisdiction="leipzig"
    )
    page, counts = await handlers.queue(uows, in_progress, sort="-requested_at", offset=0, limit=9)
    assert [r.id for r in page] == [mine[0].id]
    assert counts == {"assigned": 2, "in_progress": 1}  # the tabs ignore the status filter


async def test_a_bearer_token_authenticates_its_member(
    uows: UnitOfWorkFactory, roads: StaffMember, staff_tokens: dict[str, StaffMember]
) -> None:
    staff_tokens["mm_valid"] = roads
    assert await handlers.authenticate(uows, "mm_valid") == roads
    assert await handlers.authenticate(uows, "mm_unknown") is None
