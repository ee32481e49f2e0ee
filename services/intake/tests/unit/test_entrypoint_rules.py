"""The rules the HTTP entrypoints once held themselves, now use cases: the duplicate rule of a
submission, locating an address, finding reports, and answering a staff transition with the
moved ticket. Against the fakes of tests/unit/conftest.py."""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from intake import handlers
from intake.domain import Report, ReporterTokens, StaffMember
from intake.ports import Outlines, ReportSearch, SubmissionWriter, UnitOfWorkFactory
from mm_shared.events import Event, ReportReassigned, ReportStatus, utcnow

NewReport = Callable[..., Awaitable[Report]]
#: About 20 m north of conftest's IN_LEIPZIG (51.34, 12.37); 0.001° of latitude is ~111 m.
NEAR = (51.34018, 12.37)
FAR = (51.342, 12.37)


async def duplicates_of(uows: UnitOfWorkFactory, **asked: object) -> list[handlers.NearbyReport]:
    where = asked.pop("at", NEAR)
    assert isinstance(where, tuple)
    return await handlers.possible_duplicates(
        uows,
        service_code=str(asked.pop("service_code", "001")),
        lat=where[0],
        long=where[1],
        radius_m=50.0,
        **asked,  # type: ignore[arg-type]
    )


async def test_an_open_report_of_the_category_close_by_is_a_possible_duplicate(
    uows: UnitOfWorkFactory, new_report: NewReport
) -> None:
    close = await new_report()
    await new_report(at=FAR)
    await new_report(service_code="002")

    [found] = await duplicates_of(uows)

    assert found.report.id == close.id
    assert 15 < found.distance_m < 25


async def test_a_closed_report_close_by_is_no_duplicate(
    uows: UnitOfWorkFactory, assigned_report: NewReport, roads: StaffMember
) -> None:
    report = await assigned_report(office="VTA")
    assert [n.report.id for n in await duplicates_of(uows)] == [report.id]
    await handlers.change_ticket(uows, roads, report.id, ReportStatus.RESOLVED)

    assert await duplicates_of(uows) == []


async def test_a_reporter_who_says_theirs_is_new_is_not_asked_again(
    uows: UnitOfWorkFactory, new_report: NewReport
) -> None:
    await new_report()

    assert await duplicates_of(uows, acknowledged=True) == []


async def test_an_unknown_category_has_no_duplicates_to_offer(
    uows: UnitOfWorkFactory, new_report: NewReport
) -> None:
    await new_report()

    assert await duplicates_of(uows, service_code="999") == []


async def test_the_retry_of_an_accepted_submission_is_not_held_up_by_its_own_report(
    uows: UnitOfWorkFactory, outlines: Outlines, tokens: ReporterTokens
) -> None:
    submission = handlers.Submission(
        jurisdiction=None,
        service_code="001",
        lat=NEAR[0],
        long=NEAR[1],
        description="Schlagloch",
        contact=None,
    )
    first, created = await handlers.submit_report_once(uows, outlines, tokens, submission, "key-1")
    assert created

    assert await duplicates_of(uows, idempotency_key="key-1") == []
    [other] = await duplicates_of(uows, idempotency_key="key-2")
    assert other.report.id == first.id


class FakeGeocoder:
    def __init__(self, places: dict[str, tuple[float, float]]) -> None:
        self.places = places
        self.asked: list[str] = []

    async def locate(self, address: str) -> tuple[float, float] | None:
        self.asked.append(address)
        return self.places.get(address)


class Unreachable(Exception):
    pass


class DownGeocoder:
    async def locate(self, address: str) -> tuple[float, float] | None:
        raise Unreachable(address)


async def test_coordinates_are_taken_as_given_and_no_geocoder_is_asked() -> None:
    geocoder = FakeGeocoder({"Markt 1": (51.3, 12.3)})

    assert await handlers.locate(geocoder, 51.34, 12.37, "Markt 1") == (51.34, 12.37)
    assert await handlers.locate(geocoder, None, None, None) == (None, None)
    assert geocoder.asked == []


async def test_an_address_alone_is_located_by_the_geocoder() -> None:
    geocoder = FakeGeocoder({"Markt 1": (51.3397, 12.3731)})

    assert await handlers.locate(geocoder, None, None, "Markt 1") == (51.3397, 12.3731)
    assert await handlers.locate(geocoder, 51.0, None, "Markt 1") == (51.3397, 12.3731)
    assert geocoder.asked == ["Markt 1", "Markt 1"]


async def test_an_address_not_found_is_the_reporter_s_to_fix() -> None:
    with pytest.raises(handlers.AddressNotLocated) as refused:
        await handlers.locate(FakeGeocoder({}), None, None, "Nirgendwo 7")
    assert refused.value.problems == [
        "address_string 'Nirgendwo 7' was not found: check it or send lat and long"
    ]


async def test_without_a_geocoder_an_address_alone_cannot_be_located() -> None:
    with pytest.raises(handlers.AddressNotLocated) as refused:
        await handlers.locate(None, None, None, "Markt 1")
    assert "no geocoder is configured" in refused.value.problems[0]


async def test_a_geocoder_that_cannot_answer_is_not_the_reporter_s_fault() -> None:
    with pytest.raises(Unreachable):
        await handlers.locate(DownGeocoder(), None, None, "Markt 1")


async def test_reports_are_found_by_the_public_filters_newest_first(
    uows: UnitOfWorkFactory, new_report: NewReport, assigned_report: NewReport
) -> None:
    older = await new_report()
    newer = await assigned_report(service_code="002")

    everything = await handlers.find_reports(uows)
    assert [r.id for r in everything] == [newer.id, older.id]
    assert [
        r.id for r in await handlers.find_reports(uows, ReportSearch(service_codes=["002"]))
    ] == [newer.id]
    open_received = await handlers.find_reports(
        uows, ReportSearch(statuses=[ReportStatus.RECEIVED])
    )
    assert [r.id for r in open_received] == [older.id]
    assert [r.id for r in await handlers.find_reports(uows, ReportSearch(ids=[older.id]))] == [
        older.id
    ]
    assert await handlers.find_reports(uows, ReportSearch(jurisdiction="sachsen")) == []
    later = utcnow() + timedelta(minutes=1)
    assert await handlers.find_reports(uows, ReportSearch(start=later)) == []
    assert len(await handlers.find_reports(uows, ReportSearch(limit=1))) == 1


async def test_an_open311_token_leads_to_its_report(
    uows: UnitOfWorkFactory, new_report: NewReport
) -> None:
    report = await new_report()

    assert await handlers.report_id_for_token(uows, report.token) == report.id
    assert await handlers.report_id_for_token(uows, "no-such-token") is None


async def test_a_transition_is_answered_with_the_moved_ticket(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    stored: dict[UUID, Report],
) -> None:
    report = await assigned_report(office="VTA")

    moved = await handlers.move_ticket(
        uows, roads, report.id, ReportStatus.IN_PROGRESS, internal_note="Kolonne 3"
    )

    assert moved is not None
    assert moved.status is ReportStatus.IN_PROGRESS
    assert moved.history == stored[report.id].history
    assert moved.history[-1].internal_note == "Kolonne 3"


async def test_a_hand_over_is_answered_with_nothing_yet(
    uows: UnitOfWorkFactory, assigned_report: NewReport, roads: StaffMember, outbox: list[Event]
) -> None:
    report = await assigned_report(office="VTA")

    moved = await handlers.move_ticket(
        uows,
        roads,
        report.id,
        ReportStatus.ASSIGNED,
        office_code="ASG",
        offices=lambda _: {"VTA": "Verkehr", "ASG": "Stadtgrün"},
    )

    assert moved is None
    assert isinstance(outbox[-1], ReportReassigned)
    assert outbox[-1].office_code == "ASG"


async def test_another_office_s_ticket_cannot_be_moved(
    uows: UnitOfWorkFactory, assigned_report: NewReport, parks: StaffMember
) -> None:
    report = await assigned_report(office="VTA")

    with pytest.raises(handlers.TicketNotFound):
        await handlers.move_ticket(uows, parks, report.id, ReportStatus.IN_PROGRESS)
    with pytest.raises(handlers.TicketNotFound):
        await handlers.move_ticket(uows, parks, uuid4(), ReportStatus.IN_PROGRESS)


async def test_a_submission_with_a_key_is_accepted_once_and_one_without_each_time(
    uows: UnitOfWorkFactory,
    writer: SubmissionWriter,
    outlines: Outlines,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
) -> None:
    submission = handlers.Submission(
        jurisdiction=None,
        service_code="001",
        lat=NEAR[0],
        long=NEAR[1],
        description="Schlagloch",
        contact=None,
    )

    first, created = await handlers.accept_submission(
        writer, uows, outlines, tokens, submission, "key-1"
    )
    again, created_again = await handlers.accept_submission(
        writer, uows, outlines, tokens, submission, "key-1"
    )
    assert (created, created_again, again.id) == (True, False, first.id)
    unkeyed = [
        await handlers.accept_submission(writer, uows, outlines, tokens, submission)
        for _ in range(2)
    ]
    assert [created for _, created in unkeyed] == [True, True]
    assert len(stored) == 3
