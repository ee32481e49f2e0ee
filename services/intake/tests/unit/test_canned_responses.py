"""The offices' canned responses: each office keeps its own, under titles of its own. Against
the fakes of tests/unit/conftest.py."""

from collections.abc import Awaitable, Callable

import pytest

from intake import handlers
from intake.domain import InvalidReport, Report, StaffMember, TitleTaken
from intake.ports import UnitOfWorkFactory

NewReport = Callable[..., Awaitable[Report]]


async def test_an_office_keeps_changes_and_drops_its_canned_responses(
    uows: UnitOfWorkFactory, roads: StaffMember
) -> None:
    kept = await handlers.keep_canned_response(
        uows, roads, jurisdiction="leipzig", office_code="VTA", title=" Loch ", body="Wird gefüllt."
    )
    assert (kept.title, kept.updated_by) == ("Loch", "staff:anna")
    changed = await handlers.keep_canned_response(
        uows,
        roads,
        jurisdiction="leipzig",
        office_code="VTA",
        title="Schlagloch",
        body="Wird diese Woche gefüllt.",
        response_id=kept.id,
    )
    assert changed.id == kept.id
    assert [c.title for c in await handlers.canned_responses(uows, roads)] == ["Schlagloch"]
    await handlers.drop_canned_response(uows, roads, kept.id)
    assert await handlers.canned_responses(uows, roads) == []


async def test_an_office_sees_and_changes_only_its_own(
    uows: UnitOfWorkFactory, roads: StaffMember, parks: StaffMember, admin: StaffMember
) -> None:
    theirs = await handlers.keep_canned_response(
        uows, parks, jurisdiction="leipzig", office_code="ASG", title="Baum", body="Gefällt."
    )
    await handlers.keep_canned_response(
        uows, roads, jurisdiction="leipzig", office_code="VTA", title="Loch", body="Gefüllt."
    )
    assert [c.title for c in await handlers.canned_responses(uows, roads)] == ["Loch"]
    assert [c.title for c in await handlers.canned_responses(uows, admin)] == ["Baum", "Loch"]
    with pytest.raises(handlers.NotYourOffice):
        await handlers.keep_canned_response(
            uows, roads, jurisdiction="leipzig", office_code="ASG", title="Ast", body="Weg."
        )
    with pytest.raises(handlers.TicketNotFound):
        await handlers.keep_canned_response(
            uows,
            roads,
            jurisdiction="leipzig",
            office_code="VTA",
            title="Baum",
            body="Meins.",
            response_id=theirs.id,
        )
    with pytest.raises(handlers.TicketNotFound):
        await handlers.drop_canned_response(uows, roads, theirs.id)
    assert [c.title for c in await handlers.canned_responses(uows, parks)] == ["Baum"]


async def test_a_title_is_taken_once_per_office_and_a_response_needs_text(
    uows: UnitOfWorkFactory, roads: StaffMember, parks: StaffMember
) -> None:
    await handlers.keep_canned_response(
        uows, roads, jurisdiction="leipzig", office_code="VTA", title="Danke", body="Danke!"
    )
    with pytest.raises(TitleTaken):
        await handlers.keep_canned_response(
            uows, roads, jurisdiction="leipzig", office_code="VTA", title="Danke", body="Nochmal"
        )
    # Another office may use the same title.
    await handlers.keep_canned_response(
        uows, parks, jurisdiction="leipzig", office_code="ASG", title="Danke", body="Danke!"
    )
    with pytest.raises(InvalidReport, match="body is required"):
        await handlers.keep_canned_response(
            uows, roads, jurisdiction="leipzig", office_code="VTA", title="Leer", body="  "
        )


async def test_statistics_cover_the_offices_asked_for(
    uows: UnitOfWorkFactory, assigned_report: NewReport, roads: StaffMember
) -> None:
    await assigned_report(office="VTA")
    await assigned_report(office="VTA", service_code="003")
    await assigned_report(office="ASG")
    found = await handlers.office_statistics(
        uows, "leipzig", roads.seen_offices, start=None, end=None, timezone="Europe/Berlin"
    )
    assert found.per_category == [("001", 1), ("003", 1)]
