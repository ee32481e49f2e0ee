"""Geo-router's use cases: route reports (in batches), honour staff reassignments, reload and
announce a jurisdiction when its areas or rules change, explain a route."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from prometheus_client import Counter, Histogram

from geo_router.adapters.db import unit_of_work
from geo_router.adapters.index import JurisdictionIndex, RoutingCache
from geo_router.domain import Decision
from mm_shared.events import (
    JurisdictionBoundaryChanged,
    MatchedArea,
    OfficeContact,
    OfficeDirectoryChanged,
    ReportReassigned,
    ReportRouted,
    ReportRoutingFailed,
    ReportSubmitted,
    RoutingFailureReason,
)
from mm_shared.kafka import PermanentFailure
from mm_shared.outbox import Message, Outbox

log = logging.getLogger(__name__)

ROUTED = Counter("mm_reports_routed_total", "Reports routed, by office", ["jurisdiction", "office"])
ROUTING_FAILED = Counter(
    "mm_reports_routing_failed_total", "Reports that could not be routed", ["reason"]
)
ROUTING_LATENCY = Histogram(
    "mm_routing_batch_seconds",
    "Time to route one consumed batch (lookup, decision, storage)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
BATCH_SIZE = Histogram(
    "mm_routing_batch_size",
    "Reports per consumed batch",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)


@dataclass(frozen=True)
class Route:
    areas: tuple[MatchedArea, ...]
    decision: Decision | None
    failure: RoutingFailureReason | None
    detail: str


def find_routes(
    index: JurisdictionIndex | None,
    jurisdiction: str,
    points: Sequence[tuple[float, float, str]],
) -> list[Route]:
    """Routes for (lat, long, service_code) points of one jurisdiction."""
    if index is None:
        detail = f"unknown jurisdiction {jurisdiction!r}"
        return [Route((), None, RoutingFailureReason.UNKNOWN_JURISDICTION, detail) for _ in points]
    matched = index.areas_at_many([p[0] for p in points], [p[1] for p in points])
    routes = []
    for (lat, long, service_code), areas in zip(points, matched, strict=True):
        if not areas:
            detail = f"({lat}, {long}) lies outside every area of {index.name}"
            routes.append(Route((), None, RoutingFailureReason.OUTSIDE_JURISDICTION, detail))
            continue
        decision = index.decide(service_code, areas)
        if decision is None:
            detail = f"no rule names an office for service_code {service_code!r} here"
            routes.append(Route(areas, None, RoutingFailureReason.NO_RESPONSIBLE_OFFICE, detail))
        else:
            routes.append(Route(areas, decision, None, decision.explanation))
    return routes


def _announcement(event: ReportSubmitted, route: Route) -> ReportRouted | ReportRoutingFailed:
    if route.decision is not None:
        return ReportRouted(
            report_id=event.report_id,
            correlation_id=event.correlation_id,
            office=route.decision.office,
            areas=route.areas,
            rule=route.decision.explanation,
        )
    assert route.failure is not None
    log.info("report %s not routed: %s", event.report_id, route.detail)
    return ReportRoutingFailed(
        report_id=event.report_id,
        correlation_id=event.correlation_id,
        reason=route.failure,
        detail=route.detail,
    )


def _count(jurisdiction: str, routes: Sequence[Route]) -> None:
    # Counted per batch: a labelled metric per report costs more than the lookup.
    offices = collections.Counter(r.decision.office.code for r in routes if r.decision is not None)
    failures = collections.Counter(r.failure.value for r in routes if r.failure is not None)
    for office, n in offices.items():
        ROUTED.labels(jurisdiction, office).inc(n)
    for reason, n in failures.items():
        ROUTING_FAILED.labels(reason).inc(n)


async def route_reports(
    outbox: Outbox, cache: RoutingCache, events: Sequence[ReportSubmitted]
) -> None:
    """Decide once per report, for a whole consumed batch in one transaction. The stored
    decision makes it idempotent: a redelivered event changes nothing; a resubmission (intake's
    sweeper saw no answer) re-announces the stored decision unchanged, with its event id."""
    started = time.perf_counter()
    BATCH_SIZE.observe(len(events))
    # Routed before asking the database what is decided already: redeliveries are rare, and
    # the write below keeps only the first decision per report, in one statement.
    pending: dict[str, dict[UUID, ReportSubmitted]] = {}
    for event in events:
        pending.setdefault(event.jurisdiction, {}).setdefault(event.report_id, event)
    announced: list[tuple[UUID, UUID, Message]] = []
    routed: dict[UUID, Route] = {}
    for jurisdiction, batch in pending.items():
        routes = find_routes(
            cache.get(jurisdiction),
            jurisdiction,
            [(e.lat, e.long, e.service_code) for e in batch.values()],
        )
        for submitted, route in zip(batch.values(), routes, strict=True):
            announcement = _announcement(submitted, route)
            routed[submitted.report_id] = route
            announced.append(
                (announcement.report_id, announcement.event_id, Message.of(announcement))
            )
    resubmitted = {e.report_id for e in events if e.resubmission}
    async with unit_of_work(outbox) as uow:
        decided_now = await uow.decide_once(announced)
        # A resubmission of a report decided earlier: announce the stored decision again.
        repeated = (await uow.decisions.get_many(sorted(resubmitted - decided_now))).values()
        await uow.publish(*repeated)
    for jurisdiction, batch in pending.items():
        _count(jurisdiction, [routed[r] for r in batch if r in decided_now])
    ROUTING_LATENCY.observe(time.perf_counter() - started)


async def reassign(outbox: Outbox, event: ReportReassigned) -> None:
    """A staff reassignment overrides the rules for that report from now on."""
    async with unit_of_work(outbox) as uow:
        if not await uow.first_delivery(event.event_id):
            return
        office = await uow.geography.office(event.jurisdiction, event.office_code)
        if office is None:
            raise PermanentFailure(
                f"reassignment of {event.report_id} to unknown office {event.office_code!r}"
            )
        previous = (await uow.decisions.get_many([event.report_id])).get(event.report_id)
        areas = previous.areas if isinstance(previous, ReportRouted) else ()
        note = f": {event.reason}" if event.reason else ""
        announcement = ReportRouted(
            report_id=event.report_id,
            correlation_id=event.correlation_id,
            office=office,
            areas=areas,
            rule=f"Manuelle Zuweisung durch {event.reassigned_by}{note}",
            override=True,
        )
        message = Message.of(announcement)
        await uow.decisions.record([(announcement.report_id, announcement.event_id, message)])
        await uow.publish(message)


async def reload_and_announce(
    outbox: Outbox,
    cache: RoutingCache,
    jurisdiction: str | None = None,
    *,
    if_changed: bool = False,
) -> None:
    """Rebuild the routing index; announce each reloaded jurisdiction's outline (for intake)
    and office directory (for the notifier)."""
    indexes = await cache.reload(jurisdiction, if_changed=if_changed)
    async with unit_of_work(outbox) as uow:
        for index in indexes:
            directory = await uow.geography.offices(index.code)
            await uow.publish(
                JurisdictionBoundaryChanged(
                    jurisdiction=index.code,
                    name=index.name,
                    version=index.version,
                    boundary=index.boundary_geojson(),
                ),
                OfficeDirectoryChanged(
                    jurisdiction=index.code,
                    offices=tuple(
                        OfficeContact(code=o["code"], name=o["public_name"], email=o["email"])
                        for o in directory
                    ),
                ),
            )
    for index in indexes:
        log.info("routing index for %s loaded (version %s)", index.code, index.version)


def explain_route(
    cache: RoutingCache, jurisdiction: str, lat: float, long: float, service_code: str
) -> Route:
    return find_routes(cache.get(jurisdiction), jurisdiction, [(lat, long, service_code)])[0]
