"""What intake does on its own: re-publishing reports that stayed unrouted, the offices' daily
reminders and gauges, re-announcing after a broker lost its data. Against the fakes of
tests/unit/conftest.py."""

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from uuid import UUID

from intake import handlers
from intake.domain import Contact, Report, StaffMember
from intake.ports import UnitOfWorkFactory
from mm_shared.events import (
    Event,
    OfficeReminderDue,
    ReporterContactSubmitted,
    ReportStatus,
    ReportSubmitted,
    utcnow,
)

NewReport = Callable[..., Awaitable[Report]]
MONDAY = date(2026, 11, 30)


def aged(report: Report, days: float) -> None:
    """As if the report had entered its status ``days`` ago."""
    report.updated_at = utcnow() - timedelta(days=days)


async def test_reports_that_stayed_unrouted_are_published_again_once(
    uows: UnitOfWorkFactory,
    new_report: NewReport,
    assigned_report: NewReport,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    waiting = await new_report()
    routed = await assigned_report(office="VTA")
    await new_report()  # too young: not among them
    for report in (waiting, routed):
        stored[report.id].requested_at -= timedelta(hours=1)
    published = len(outbox)
    assert await handlers.resubmit_unrouted(uows, timedelta(minutes=30)) == 1
    (again,) = outbox[published:]
    assert isinstance(again, ReportSubmitted)
    assert (again.report_id, again.resubmission) == (waiting.id, True)
    # Marked: not again until it waited as long once more.
    assert await handlers.resubmit_unrouted(uows, timedelta(minutes=30)) == 0


async def test_each_office_with_overdue_tickets_is_reminded_once_per_working_day(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    roads: StaffMember,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    not_accepted = await assigned_report(office="VTA")
    stalled = await assigned_report(office="VTA")
    await handlers.change_ticket(uows, roads, stalled.id, ReportStatus.IN_PROGRESS)
    await assigned_report(office="ASG")  # fresh: not overdue
    aged(stored[not_accepted.id], days=10)
    aged(stored[stalled.id], days=20)
    published = len(outbox)
    saturday = MONDAY - timedelta(days=2)
    assert (
        await handlers.send_office_reminders(
            uows, saturday, accept_within_working_days=3, work_within_days=14
        )
        == 0
    )
    assert (
        await handlers.send_office_reminders(
            uows, MONDAY, accept_within_working_days=3, work_within_days=14
        )
        == 1
    )
    (reminder,) = outbox[published:]
    assert isinstance(reminder, OfficeReminderDue)
    assert (reminder.jurisdiction, reminder.office_code, reminder.day) == ("leipzig", "VTA", MONDAY)
    assert [t.report_id for t in reminder.not_accepted] == [not_accepted.id]
    assert [t.report_id for t in reminder.stalled] == [stalled.id]
    # Another instance, the same day: the day is claimed.
    assert (
        await handlers.send_office_reminders(
            uows, MONDAY, accept_within_working_days=3, work_within_days=14
        )
        == 0
    )
    # A public holiday of the jurisdiction is no working day.
    tuesday = MONDAY + timedelta(days=1)
    reminded = await handlers.send_office_reminders(
        uows,
        tuesday,
        holidays_of=lambda jurisdiction: {tuesday} if jurisdiction == "leipzig" else set(),
        accept_within_working_days=3,
        work_within_days=14,
    )
    assert reminded == 0
    assert len(outbox) == published + 1


async def test_the_open_ticket_gauges_count_per_office(
    uows: UnitOfWorkFactory, assigned_report: NewReport, stored: dict[UUID, Report]
) -> None:
    late = await assigned_report(office="VTA")
    await assigned_report(office="VTA")
    aged(stored[late.id], days=10)
    await handlers.measure_open_tickets(uows, accept_within_working_days=3, work_within_days=14)
    assert handlers.OPEN_TICKETS.labels("leipzig", "VTA")._value.get() == 2
    overdue = handlers.OVERDUE_TICKETS.labels("leipzig", "VTA", "not_accepted")
    assert overdue._value.get() == 1


async def test_reannouncing_stages_the_kept_events_again_with_their_ids_in_order(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    outbox: list[Event],
    kept: list[tuple[datetime, ReporterContactSubmitted]],
) -> None:
    since = utcnow()
    first = await assigned_report(office="VTA", contact=Contact("anna@example.org"))
    second = await assigned_report(office="ASG", contact=None)
    await handlers.follow(uows, second.id, Contact("bernd@example.org"))
    announced = list(outbox)
    outbox.clear()
    staged = await handlers.reannounce(uows, since, batch_size=2)
    # Each report's submission and assignment, in the order written, then the contacts.
    assert staged == 6
    history = [e for e in announced if not isinstance(e, ReporterContactSubmitted)]
    contacts = [e for e in announced if isinstance(e, ReporterContactSubmitted)]
    assert outbox == history + contacts
    assert {e.report_id for e in contacts} == {first.id, second.id}
    outbox.clear()
    # Contacts kept longer than they may be are not re-announced.
    kept[0] = (kept[0][0] - timedelta(days=40), kept[0][1])
    await handlers.reannounce(uows, since - timedelta(days=41), contacts_kept=timedelta(days=30))
    assert [e.email for e in outbox if isinstance(e, ReporterContactSubmitted)] == [
        "bernd@example.org"
    ]
