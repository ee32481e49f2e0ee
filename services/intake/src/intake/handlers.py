"""Intake's use cases: each runs in one unit of work and stages the events it implies."""

from __future__ import annotations

import logging
from uuid import UUID

from intake.adapters.db import unit_of_work
from intake.domain import Contact, Report, TransitionNotAllowed, submit
from mm_shared.events import ReportRouted, ReportRoutingFailed, ReportStatus
from mm_shared.outbox import Outbox

log = logging.getLogger(__name__)

ROUTER = "geo-router"


async def submit_report(
    outbox: Outbox,
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
    async with unit_of_work(outbox) as uow:
        await uow.reports.add(report)
        await uow.publish(*events)
    return report


async def get_report(outbox: Outbox, report_id: UUID) -> Report | None:
    async with unit_of_work(outbox) as uow:
        return await uow.reports.get(report_id)


async def record_routing(outbox: Outbox, event: ReportRouted | ReportRoutingFailed) -> None:
    """Geo-router's decision becomes a status transition of the report (idempotent)."""
    async with unit_of_work(outbox) as uow:
        if not await uow.first_delivery(event.event_id):
            return
        report = await uow.reports.get(event.report_id, for_update=True)
        if report is None:
            log.warning("routing result for unknown report %s ignored", event.report_id)
            return
        seen = len(report.history)
        try:
            if isinstance(event, ReportRouted):
                if report.status == ReportStatus.ASSIGNED and report.office == event.office:
                    return
                change = report.change_status(
                    ReportStatus.ASSIGNED,
                    ROUTER,
                    office=event.office,
                    internal_note=f"{event.rule} (areas: "
                    + ", ".join(f"{a.level} {a.name}" for a in event.areas)
                    + ")",
                    correlation_id=event.correlation_id,
                )
            else:
                change = report.change_status(
                    ReportStatus.REJECTED,
                    ROUTER,
                    public_note="Für diesen Ort ist keine Dienststelle zuständig.",
                    internal_note=f"routing failed: {event.reason}: {event.detail}",
                    correlation_id=event.correlation_id,
                )
        except TransitionNotAllowed:
            # A staff decision already moved the report on; a late routing result must not
            # undo it.
            log.info("routing result for %s in status %s ignored", report.id, report.status)
            return
        await uow.reports.save_changes(report, report.history[seen:])
        await uow.publish(change)
