"""Geo-router's decisions become status transitions: once per delivered event, never undoing
what staff did since, and decided again when someone changed the report between the read and
the write (optimistic, no locks). Against the fakes of tests/unit/conftest.py."""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from intake import handlers
from intake.domain import Report, StaffMember
from intake.ports import UnitOfWorkFactory
from mm_shared.events import (
    Event,
    ReportRouted,
    ReportRoutingFailed,
    ReportStatus,
    ReportStatusChanged,
    RoutingFailureReason,
)

NewReport = Callable[..., Awaitable[Report]]
RoutedTo = Callable[..., ReportRouted]


def failed(report: Report) -> ReportRoutingFailed:
    return ReportRoutingFailed(
        report_id=report.id,
        correlation_id=report.id,
        reason=RoutingFailureReason.NO_RESPONSIBLE_OFFICE,
        detail="no rule for category 001 here",
    )


def office_of(report: Report) -> str | None:
    return report.office.code if report.office else None


def changes_of(outbox: list[Event], report: Report) -> list[ReportStatusChanged]:
    return [e for e in outbox if isinstance(e, ReportStatusChanged) and e.report_id == report.id]


async def test_a_routed_report_is_assigned_to_its_office_once(
    uows: UnitOfWorkFactory,
    new_report: NewReport,
    routed_to: RoutedTo,
    stored: dict[UUID, Report],
    outbox: list[Event],
    processed: set[UUID],
) -> None:
    report = await new_report()
    decision = routed_to(report, "VTA")
    await handlers.record_routing_results(uows, [decision])
    await handlers.record_routing_results(uows, [decision])  # redelivered: nothing new
    now = stored[report.id]
    assert now.status is ReportStatus.ASSIGNED
    assert now.office is not None
    assert now.office.code == "VTA"
    assert [a.name for a in now.areas] == ["Zentrum"]
    assert [h.status for h in now.history] == [ReportStatus.RECEIVED, ReportStatus.ASSIGNED]
    assert now.history[-1].internal_note == "category 001 → VTA (areas: ortsteil Zentrum)"
    (assigned,) = changes_of(outbox, report)
    assert assigned.status is ReportStatus.ASSIGNED
    assert assigned.correlation_id == decision.correlation_id
    assert decision.event_id in processed


async def test_a_failed_routing_rejects_the_report_saying_why(
    uows: UnitOfWorkFactory,
    new_report: NewReport,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await new_report()
    await handlers.record_routing_results(uows, [failed(report)])
    now = stored[report.id]
    assert now.status is ReportStatus.REJECTED
    assert now.history[-1].public_note == "Für diesen Ort ist keine Dienststelle zuständig."
    assert "no_responsible_office" in (now.history[-1].internal_note or "")
    (rejected,) = changes_of(outbox, report)
    assert rejected.status is ReportStatus.REJECTED


async def test_a_batch_decides_each_report_and_skips_unknown_ones(
    uows: UnitOfWorkFactory,
    new_report: NewReport,
    routed_to: RoutedTo,
    stored: dict[UUID, Report],
    processed: set[UUID],
) -> None:
    first, second = await new_report(), await new_report()
    ghost = Report(uuid4(), "leipzig", "001", 51.3, 12.3, "", first.requested_at)
    to_nobody = routed_to(ghost)
    await handlers.record_routing_results(
        uows, [routed_to(first, "VTA"), failed(second), to_nobody]
    )
    assert stored[first.id].status is ReportStatus.ASSIGNED
    assert stored[second.id].status is ReportStatus.REJECTED
    assert ghost.id not in stored
    assert to_nobody.event_id in processed


async def test_a_late_decision_does_not_undo_what_staff_did(
    uows: UnitOfWorkFactory,
    assigned_report: NewReport,
    routed_to: RoutedTo,
    roads: StaffMember,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    report = await assigned_report(office="VTA")
    await handlers.change_ticket(uows, roads, report.id, ReportStatus.IN_PROGRESS)
    published = len(outbox)
    # A decision for another office that arrives late (not an override) changes nothing.
    late = routed_to(report, "ASG")
    await handlers.record_routing_results(uows, [late])
    assert stored[report.id].status is ReportStatus.IN_PROGRESS
    assert office_of(stored[report.id]) == "VTA"
    assert len(outbox) == published
    # Staff's own reassignment comes back as an override, and moves it.
    await handlers.record_routing_results(uows, [routed_to(report, "ASG", override=True)])
    assert stored[report.id].status is ReportStatus.ASSIGNED
    assert office_of(stored[report.id]) == "ASG"


async def test_a_report_changed_between_read_and_write_is_read_and_decided_again(
    uows: UnitOfWorkFactory,
    new_report: NewReport,
    routed_to: RoutedTo,
    stored: dict[UUID, Report],
    outbox: list[Event],
    processed: set[UUID],
    meanwhile: list[Callable[..., None]],
) -> None:
    report = await new_report()

    def someone_touches_it(tables: object) -> None:
        touched = stored[report.id]
        touched.updated_at = (touched.updated_at or touched.requested_at) + timedelta(seconds=1)

    meanwhile.append(someone_touches_it)
    decision = routed_to(report, "VTA")
    await handlers.record_routing_results(uows, [decision])
    assert stored[report.id].status is ReportStatus.ASSIGNED
    assert len(changes_of(outbox, report)) == 1  # the refused write staged nothing
    assert [h.status for h in stored[report.id].history] == [
        ReportStatus.RECEIVED,
        ReportStatus.ASSIGNED,
    ]
    assert decision.event_id in processed


async def test_a_report_that_keeps_changing_fails_the_batch_for_a_retry(
    uows: UnitOfWorkFactory,
    new_report: NewReport,
    routed_to: RoutedTo,
    stored: dict[UUID, Report],
    outbox: list[Event],
    processed: set[UUID],
    meanwhile: list[Callable[..., None]],
) -> None:
    report, other = await new_report(), await new_report()

    def someone_touches_it(tables: object) -> None:
        touched = stored[report.id]
        touched.updated_at = (touched.updated_at or touched.requested_at) + timedelta(seconds=1)
        meanwhile.append(someone_touches_it)  # and again before the next write

    meanwhile.append(someone_touches_it)
    decision = routed_to(report, "VTA")
    with pytest.raises(RuntimeError, match="1 routing results kept racing"):
        await handlers.record_routing_results(uows, [decision, routed_to(other, "VTA")])
    meanwhile.clear()
    assert stored[report.id].status is ReportStatus.RECEIVED
    assert decision.event_id not in processed  # it comes again
    assert stored[other.id].status is ReportStatus.ASSIGNED  # the others were written
    assert changes_of(outbox, report) == []
