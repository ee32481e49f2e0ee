"""Intake's use cases: each runs in one unit of work and stages the events it implies."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from intake.adapters.db import SubmissionWriter, unit_of_work
from intake.domain import Contact, Report, TransitionNotAllowed, submit
from mm_shared.events import ReportRouted, ReportRoutingFailed, ReportStatus, ReportStatusChanged
from mm_shared.outbox import Outbox

log = logging.getLogger(__name__)

ROUTER = "geo-router"


async def submit_report(
    writer: SubmissionWriter,
    *,
    jurisdiction: str,
    service_code: str,
    lat: float | None,
    long: float | None,
    description: str | None,
    contact: Contact | None,
) -> Report:
    report, events = submit(
        jurisdiction=jurisdiction,
        service_code=service_code,
        lat=lat,
        long=long,
        description=description,
        contact=contact,
    )
    await writer.write(report, events)
    return report


async def get_report(outbox: Outbox, report_id: UUID) -> Report | None:
    async with unit_of_work(outbox) as uow:
        return await uow.reports.get(report_id)


RoutingResult = ReportRouted | ReportRoutingFailed


def _apply_routing(report: Report, event: RoutingResult) -> ReportStatusChanged | None:
    """The transition a routing result implies, or None if it changes nothing."""
    try:
        if isinstance(event, ReportRouted):
            if report.status == ReportStatus.ASSIGNED and report.office == event.office:
                return None
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


async def record_routing_results(outbox: Outbox, events: Sequence[RoutingResult]) -> None:
    """Geo-router's decisions become status transitions, a consumed batch in one transaction;
    a redelivered decision changes nothing."""
    async with unit_of_work(outbox) as uow:
        fresh = await uow.first_deliveries([e.event_id for e in events])
        events = [e for e in events if e.event_id in fresh]
        reports = await uow.reports.get_many_for_update([e.report_id for e in events])
        announcements = []
        for event in events:
            report = reports.get(event.report_id)
            if report is None:
                log.warning("routing result for unknown report %s ignored", event.report_id)
                continue
            change = _apply_routing(report, event)
            if change is not None:
                announcements.append(change)
        await uow.reports.save_many([(r, r.history) for r in reports.values() if r.history])
        await uow.publish(*announcements)
