"""What a reporter does with their token: "not fixed" within the window after the resolution,
and erasing the contact intake kept; and the kept contacts' end. Against the fakes of
tests/unit/conftest.py."""

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from uuid import UUID

import pytest

from intake import handlers
from intake.domain import (
    Contact,
    Photo,
    ReopenRefused,
    Report,
    ReporterTokens,
    StaffMember,
)
from intake.ports import UnitOfWorkFactory
from mm_shared.events import Event, ReporterContactSubmitted, ReportStatus, ReportStatusChanged

NewReport = Callable[..., Awaitable[Report]]
WITHIN = timedelta(days=14)
PHOTO = Photo("ab" * 32, "image/jpeg", 640, 480)


async def resolved(
    uows: UnitOfWorkFactory, assigned_report: NewReport, member: StaffMember
) -> Report:
    report = await assigned_report(office="VTA")
    changed = await handlers.change_ticket(
        uows, member, report.id, ReportStatus.RESOLVED, public_note="Repariert"
    )
    assert changed is not None
    return changed


async def test_the_reporter_reopens_a_resolved_report_with_a_note_and_a_photo(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await resolved(uows, assigned_report, roads)
    token = tokens.issue(report.id)
    await handlers.check_reopenable(uows, tokens, report.id, token, WITHIN)
    published = len(outbox)
    reopened = await handlers.reopen_by_reporter(
        uows, tokens, report.id, token, note="Loch ist noch da", photo=PHOTO, within=WITHIN
    )
    assert reopened.status is ReportStatus.ASSIGNED
    now = stored[report.id]
    assert now.status is ReportStatus.ASSIGNED
    assert now.photos == [PHOTO]
    assert now.history[-1].changed_by == "reporter"
    (told,) = outbox[published:]
    assert isinstance(told, ReportStatusChanged)
    assert told.reopened_by_reporter
    assert told.public_note == "Loch ist noch da"


async def test_a_wrong_token_or_an_unknown_report_reopens_nothing(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
    new_id: Callable[[], UUID],
) -> None:
    report = await resolved(uows, assigned_report, roads)
    with pytest.raises(handlers.InvalidReporterToken):
        await handlers.check_reopenable(uows, tokens, report.id, "not-the-token", WITHIN)
    with pytest.raises(handlers.InvalidReporterToken):
        await handlers.reopen_by_reporter(
            uows, tokens, report.id, tokens.issue(new_id()), note=None, photo=None, within=WITHIN
        )
    unknown = new_id()
    with pytest.raises(handlers.ReportNotFound):
        await handlers.check_reopenable(uows, tokens, unknown, tokens.issue(unknown), WITHIN)
    with pytest.raises(handlers.ReportNotFound):
        await handlers.reopen_by_reporter(
            uows, tokens, unknown, tokens.issue(unknown), note=None, photo=None, within=WITHIN
        )
    assert stored[report.id].status is ReportStatus.RESOLVED


async def test_after_the_window_or_before_the_resolution_the_report_stays(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await resolved(uows, assigned_report, roads)
    stored[report.id].updated_at = datetime.now().astimezone() - WITHIN - timedelta(hours=1)
    token = tokens.issue(report.id)
    published = len(outbox)
    with pytest.raises(ReopenRefused) as late:
        await handlers.check_reopenable(uows, tokens, report.id, token, WITHIN)
    assert late.value.code == "reopen_period_over"
    with pytest.raises(ReopenRefused):
        await handlers.reopen_by_reporter(
            uows, tokens, report.id, token, note=None, photo=PHOTO, within=WITHIN
        )
    assert stored[report.id].status is ReportStatus.RESOLVED
    assert stored[report.id].photos == []
    assert len(outbox) == published

    still_open = await assigned_report(office="VTA")
    with pytest.raises(ReopenRefused) as not_resolved:
        await handlers.check_reopenable(
            uows, tokens, still_open.id, tokens.issue(still_open.id), WITHIN
        )
    assert not_resolved.value.code == "not_resolved"


async def test_the_reporter_erases_their_kept_contact_and_not_the_followers(
    uows: UnitOfWorkFactory,
    new_report: NewReport,
    tokens: ReporterTokens,
    kept: list[tuple[datetime, ReporterContactSubmitted]],
) -> None:
    report = await new_report(contact=Contact("anna@example.org"))
    other = await new_report(contact=Contact("carla@example.org"))
    await handlers.follow(uows, report.id, Contact("bernd@example.org"))
    with pytest.raises(handlers.InvalidReporterToken):
        await handlers.erase_kept_contact(uows, tokens, report.id, tokens.issue(other.id))
    assert len(kept) == 3
    assert await handlers.erase_kept_contact(uows, tokens, report.id, tokens.issue(report.id)) == 1
    assert sorted(c.email for _, c in kept) == ["bernd@example.org", "carla@example.org"]
    assert await handlers.erase_kept_contact(uows, tokens, report.id, tokens.issue(report.id)) == 0


async def test_kept_contacts_are_forgotten_after_their_time(
    uows: UnitOfWorkFactory,
    new_report: NewReport,
    kept: list[tuple[datetime, ReporterContactSubmitted]],
) -> None:
    await new_report(contact=Contact("old@example.org"))
    await new_report(contact=Contact("new@example.org"))
    kept_at, contact = kept[0]
    kept[0] = (kept_at - timedelta(days=31), contact)
    assert await handlers.forget_kept_contacts(uows, timedelta(days=30)) == 1
    assert [c.email for _, c in kept] == ["new@example.org"]
    assert await handlers.forget_kept_contacts(uows, timedelta(days=30)) == 0
