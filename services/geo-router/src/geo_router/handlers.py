"""Geo-router's use cases: route reports (in batches), honour staff reassignments, reload and
announce a jurisdiction when its areas or rules change, explain a route."""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from prometheus_client import Counter, Histogram

from geo_router.adapters.db import DecisionRows, unit_of_work
from geo_router.adapters.index import JurisdictionIndex, RoutingCache
from geo_router.domain import Decision
from mm_shared.events import (
    JurisdictionBoundaryChanged,
    MatchedArea,
    OfficeContact,
    OfficeDirectoryChanged,
    OfficeRef,
    ReportReassigned,
    ReportRouted,
    ReportRoutingFailed,
    ReportSubmitted,
    RoutingFailureReason,
    Topic,
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


_SLOTS = {
    "event_id": UUID(int=1),
    "correlation_id": UUID(int=2),
    "report_id": UUID(int=3),
    "occurred_at": datetime(2000, 1, 1, tzinfo=UTC),
}


@functools.lru_cache(maxsize=4096)
def _routed_template(
    office: OfficeRef, areas: tuple[MatchedArea, ...], rule: str
) -> list[str | tuple[str]]:
    """ReportRouted's JSON for one decision, as pydantic writes it, cut at the per-report
    fields: literal text and ``(field,)`` slots. A city has a few hundred (office, areas, rule)
    combinations; filling a slot is far cheaper than building and serialising the model."""
    sample = ReportRouted(office=office, areas=areas, rule=rule, **_SLOTS).model_dump_json()
    marks = {
        f'"{value.isoformat().replace("+00:00", "Z")}"'
        if isinstance(value, datetime)
        else f'"{value}"': name
        for name, value in _SLOTS.items()
    }
    parts: list[str | tuple[str]] = []
    rest = sample
    while True:
        found = [(rest.find(mark), mark) for mark in marks if mark in rest]
        if not found:
            parts.append(rest)
            return parts
        at, mark = min(found)
        parts += [rest[:at], (marks[mark],)]
        rest = rest[at + len(mark) :]


def routed_message(
    event: ReportSubmitted, decision: Decision, areas: tuple[MatchedArea, ...]
) -> tuple[UUID, Message]:
    """The ReportRouted announcement of ``decision`` for ``event``'s report, serialised, and
    its event id."""
    event_id = uuid4()
    values = {
        "event_id": f'"{event_id}"',
        "correlation_id": f'"{event.correlation_id}"',
        "report_id": f'"{event.report_id}"',
        "occurred_at": f'"{datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}"',
    }
    payload = "".join(
        part if isinstance(part, str) else values[part[0]]
        for part in _routed_template(decision.office, areas, decision.explanation)
    )
    return event_id, Message(
        Topic.REPORT_ROUTED.value,
        values["report_id"][1:-1].encode(),
        payload.encode(),
        {
            "event_type": "ReportRouted",
            "schema_version": "1",
            "event_id": values["event_id"][1:-1],
            "correlation_id": values["correlation_id"][1:-1],
        },
    )


def _count(routes: Sequence[tuple[str, Route]]) -> None:
    # Counted per batch: a labelled metric per report costs more than the lookup.
    offices = collections.Counter(
        (jurisdiction, r.decision.office.code) for jurisdiction, r in routes if r.decision
    )
    failures = collections.Counter(r.failure.value for _, r in routes if r.failure is not None)
    for (jurisdiction, office), n in offices.items():
        ROUTED.labels(jurisdiction, office).inc(n)
    for reason, n in failures.items():
        ROUTING_FAILED.labels(reason).inc(n)


@dataclass
class RoutedBatch:
    """A consumed batch routed in memory; :func:`store_routes` makes it count."""

    rows: DecisionRows
    routes: dict[UUID, tuple[str, Route]]
    resubmitted: set[UUID]
    started: float


def route_batch(cache: RoutingCache, events: Sequence[ReportSubmitted]) -> RoutedBatch:
    """Route a batch in memory, one decision per report (no I/O)."""
    started = time.perf_counter()
    BATCH_SIZE.observe(len(events))
    pending: dict[str, dict[UUID, ReportSubmitted]] = {}
    for event in events:
        pending.setdefault(event.jurisdiction, {}).setdefault(event.report_id, event)
    announced: list[tuple[UUID, UUID, Message]] = []
    routes: dict[UUID, tuple[str, Route]] = {}
    for jurisdiction, batch in pending.items():
        found = find_routes(
            cache.get(jurisdiction),
            jurisdiction,
            [(e.lat, e.long, e.service_code) for e in batch.values()],
        )
        for submitted, route in zip(batch.values(), found, strict=True):
            routes[submitted.report_id] = (jurisdiction, route)
            if route.decision is not None:
                event_id, message = routed_message(submitted, route.decision, route.areas)
                announced.append((submitted.report_id, event_id, message))
            else:
                announcement = _announcement(submitted, route)
                announced.append(
                    (announcement.report_id, announcement.event_id, Message.of(announcement))
                )
    resubmitted = {e.report_id for e in events if e.resubmission}
    return RoutedBatch(DecisionRows.of(announced), routes, resubmitted, started)


async def store_routes(outbox: Outbox, batch: RoutedBatch) -> None:
    """Store and announce a routed batch in one transaction. The stored decision makes it
    idempotent: a report decided before (a redelivery) keeps its first decision and is not
    announced again; a resubmission (intake's sweeper saw no answer) re-announces the stored
    decision unchanged, with its event id."""
    # Each statement is complete by itself: no transaction round trips around them.
    async with unit_of_work(outbox, autocommit=True) as uow:
        decided_now = await uow.decide_once(batch.rows)
        repeated = await uow.decisions.get_many(sorted(batch.resubmitted - decided_now))
        await uow.publish(*repeated.values())
    _count([batch.routes[r] for r in decided_now])
    ROUTING_LATENCY.observe(time.perf_counter() - batch.started)


async def reassign(outbox: Outbox, event: ReportReassigned) -> None:
    """A staff reassignment overrides the rules for that report from now on."""
    async with unit_of_work(outbox) as uow:
        if not await uow.first_delivery(event.event_id):
            return
        office = await uow.geography.office(event.jurisdiction, event.office_code)
        if office is None:
            raise PermanentFailure(
                f"reassignment of {event.report_id} to unknown office {event.office_code!r}",
                event_ids=[event.event_id],
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
