"""Geo-router's use cases: route reports (in batches), honour staff reassignments, reload and
announce a jurisdiction when its areas or rules change, explain a route.

They reach the database, the outbox and the routing index only through the interfaces in
:mod:`geo_router.ports`; ``bootstrap.py`` passes the implementations in (``adapters/``)."""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple
from uuid import UUID

from prometheus_client import Counter, Histogram

from geo_router.domain import EMPTY_MULTIPOLYGON, Decision, Outline
from geo_router.ports import (
    Announcement,
    History,
    PreparedDecisions,
    PrepareDecisions,
    RoutingCache,
    RoutingIndex,
    UnitOfWorkFactory,
)
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
    Topic,
)
from mm_shared.kafka import Message, PermanentFailure

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


class Route(NamedTuple):  # one per report: a tuple is cheaper to build than a dataclass
    areas: tuple[MatchedArea, ...]
    decision: Decision | None
    failure: RoutingFailureReason | None
    detail: str


def find_routes(
    index: RoutingIndex | None,
    jurisdiction: str,
    points: Sequence[tuple[float, float, str]],
    *,
    retired: bool = False,
) -> list[Route]:
    """Routes for (lat, long, service_code) points of one jurisdiction: only its areas and
    rules count, even where another jurisdiction covers the point too."""
    if index is None:
        detail = (
            f"jurisdiction {jurisdiction!r} was retired and takes no more reports"
            if retired
            else f"unknown jurisdiction {jurisdiction!r}"
        )
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
            jurisdiction=event.jurisdiction,
            office=route.decision.office,
            areas=route.areas,
            rule=route.decision.explanation,
            service_code=event.service_code,
            lat=event.lat,
            long=event.long,
        )
    assert route.failure is not None
    log.info("report %s not routed: %s", event.report_id, route.detail)
    return ReportRoutingFailed(
        report_id=event.report_id,
        correlation_id=event.correlation_id,
        jurisdiction=event.jurisdiction,
        reason=route.failure,
        detail=route.detail,
    )


#: Stand-ins for the per-report fields, in the order of ``str.format``'s {0}–{3}; {4}–{6}
#: (service_code, lat, long) are the model's last fields, written at the template's end.
_SLOTS = {
    "event_id": UUID(int=1),
    "correlation_id": UUID(int=2),
    "report_id": UUID(int=3),
    "occurred_at": datetime(2000, 1, 1, tzinfo=UTC),
}
_MARKS = [f'"{UUID(int=i)}"' for i in (1, 2, 3)] + ['"2000-01-01T00:00:00Z"']
_UNSET_TAIL = ',"service_code":null,"lat":null,"long":null}'
_TAIL = ',"service_code":{4},"lat":{5},"long":{6}}}'  # the model's closing brace, escaped

#: (Decision object, jurisdiction) → (the decision, its ReportRouted format). The index makes
#: one Decision per (category, areas) and keeps it; holding it here as well keeps its id from
#: being reused.
_routed_formats: dict[tuple[int, str], tuple[Decision, str]] = {}
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _routed_format(decision: Decision, areas: tuple[MatchedArea, ...], jurisdiction: str) -> str:
    """ReportRouted's JSON for ``decision`` as pydantic writes it, with the per-report fields
    as ``str.format`` fields. A city has a few hundred decisions; filling in four strings is
    far cheaper than building and serialising the model (or hashing it for a cache key)."""
    cached = _routed_formats.get((id(decision), jurisdiction))
    if cached is not None:
        return cached[1]
    if len(_routed_formats) >= 4096:  # old indexes' decisions
        _routed_formats.clear()
    sample = ReportRouted(
        jurisdiction=jurisdiction,
        office=decision.office,
        areas=areas,
        rule=decision.explanation,
        **_SLOTS,
    ).model_dump_json()
    assert sample.endswith(_UNSET_TAIL), "ReportRouted's last fields moved: adapt _TAIL"
    routed_format = sample.removesuffix(_UNSET_TAIL).replace("{", "{{").replace("}", "}}")
    # The envelope and report_id come before any free text, so the first match is the field.
    for position, mark in enumerate(_MARKS):
        routed_format = routed_format.replace(mark, f'"{{{position}}}"', 1)
    routed_format += _TAIL
    _routed_formats[(id(decision), jurisdiction)] = (decision, routed_format)
    return routed_format


def random_event_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs as text from one system call; ``uuid4()`` makes one
    call per id, which showed up in geo-router's profile under load."""
    h = os.urandom(16 * n).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def routed_messages(
    decided: Sequence[tuple[ReportSubmitted, Decision, tuple[MatchedArea, ...]]],
) -> list[tuple[str, Message]]:
    """The ReportRouted announcements of a batch's decisions, serialised, with their event
    ids. One timestamp for the batch: its reports were routed in the same millisecond."""
    occurred_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    topic = Topic.REPORT_ROUTED.value
    announced = []
    for (event, decision, areas), event_id in zip(
        decided, random_event_ids(len(decided)), strict=True
    ):
        report_id = str(event.report_id)
        correlation_id = (
            report_id if event.correlation_id == event.report_id else str(event.correlation_id)
        )
        payload = _routed_format(decision, areas, event.jurisdiction).format(
            event_id,
            correlation_id,
            report_id,
            occurred_at,
            json.dumps(event.service_code),
            repr(event.lat),
            repr(event.long),
        )
        headers = {
            "event_type": "ReportRouted",
            "schema_version": "1",
            "event_id": event_id,
            "correlation_id": correlation_id,
        }
        announced.append((event_id, Message(topic, report_id.encode(), payload.encode(), headers)))
    return announced


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

    rows: PreparedDecisions
    routes: dict[UUID, tuple[str, Route]]
    resubmitted: set[UUID]
    started: float


def route_batch(
    cache: RoutingCache, prepare: PrepareDecisions, events: Sequence[ReportSubmitted]
) -> RoutedBatch:
    """Route a batch in memory, one decision per report (no I/O); ``prepare`` puts the
    decisions into the form their write takes."""
    started = time.perf_counter()
    BATCH_SIZE.observe(len(events))
    pending: dict[str, dict[UUID, ReportSubmitted]] = {}
    for event in events:
        pending.setdefault(event.jurisdiction, {}).setdefault(event.report_id, event)
    announced: list[Announcement] = []
    routes: dict[UUID, tuple[str, Route]] = {}
    for jurisdiction, batch in pending.items():
        found = find_routes(
            cache.get(jurisdiction),
            jurisdiction,
            [(e.lat, e.long, e.service_code) for e in batch.values()],
            retired=jurisdiction in cache.retired,
        )
        decided = []
        for submitted, route in zip(batch.values(), found, strict=True):
            routes[submitted.report_id] = (jurisdiction, route)
            if route.decision is not None:
                decided.append((submitted, route.decision, route.areas))
            else:
                announcement = _announcement(submitted, route)
                announced.append(
                    (announcement.report_id, announcement.event_id, Message.of(announcement))
                )
        announced += [
            (submitted.report_id, event_id, message)
            for (submitted, _, _), (event_id, message) in zip(
                decided, routed_messages(decided), strict=True
            )
        ]
    resubmitted = {e.report_id for e in events if e.resubmission}
    return RoutedBatch(prepare(announced), routes, resubmitted, started)


async def store_routes(unit_of_work: UnitOfWorkFactory, batch: RoutedBatch) -> None:
    """Store and announce a routed batch in one transaction. The stored decision makes it
    idempotent: a report decided before (a redelivery) keeps its first decision and is not
    announced again; a resubmission (intake's sweeper saw no answer) re-announces the stored
    decision unchanged, with its event id."""
    # Each statement is complete by itself: no transaction round trips around them.
    async with unit_of_work(autocommit=True) as uow:
        decided_now = await uow.decide_once(batch.rows)
        repeated = await uow.decisions.get_many(sorted(batch.resubmitted - decided_now))
        await uow.publish(*repeated.values())
    _count([batch.routes[r] for r in decided_now])
    ROUTING_LATENCY.observe(time.perf_counter() - batch.started)


async def reassign(unit_of_work: UnitOfWorkFactory, event: ReportReassigned) -> None:
    """A staff reassignment overrides the rules for that report from now on."""
    async with unit_of_work() as uow:
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
            jurisdiction=event.jurisdiction,
            office=office,
            areas=areas,
            rule=f"Manuelle Zuweisung durch {event.reassigned_by}{note}",
            override=True,
        )
        message = Message.of(announcement)
        await uow.decisions.record([(announcement.report_id, announcement.event_id, message)])
        await uow.publish(message)


async def reload_and_announce(
    unit_of_work: UnitOfWorkFactory,
    cache: RoutingCache,
    jurisdiction: str | None = None,
    *,
    if_changed: bool = False,
) -> None:
    """Rebuild the routing index; announce each reloaded jurisdiction's outline (for intake)
    and office directory (for the notifier), and each retired one's retirement."""
    indexes = await cache.reload(jurisdiction, if_changed=if_changed)
    retired = [
        Outline.of_retired(code, name)
        for code, name in cache.retired.items()
        if jurisdiction is None or code == jurisdiction
    ]
    await _announce_geography(unit_of_work, [i.outline() for i in indexes] + retired)
    for index in indexes:
        log.info("routing index for %s loaded (version %s)", index.code, index.version)


async def _announce_geography(unit_of_work: UnitOfWorkFactory, outlines: Sequence[Outline]) -> None:
    """Each outline with its office directory; a retired jurisdiction's retirement alone
    (compacted topic: announcing it again only repeats the latest state)."""
    async with unit_of_work() as uow:
        for outline in outlines:
            if outline.retired:
                await uow.publish(retirement(outline.code, outline.name))
                continue
            directory = await uow.geography.offices(outline.code)
            await uow.publish(
                JurisdictionBoundaryChanged(
                    jurisdiction=outline.code,
                    name=outline.name,
                    version=outline.version,
                    boundary=outline.boundary,
                    precedence=outline.precedence,
                    disabled_service_codes=outline.disabled_service_codes,
                ),
                OfficeDirectoryChanged(
                    jurisdiction=outline.code,
                    offices=tuple(
                        OfficeContact(code=o["code"], name=o["public_name"], email=o["email"])
                        for o in directory
                    ),
                    sender_name=outline.sender_name,
                    holidays_country=outline.holidays_country,
                    holidays_subdivision=outline.holidays_subdivision,
                ),
            )


def retirement(code: str, name: str) -> JurisdictionBoundaryChanged:
    """The announcement that a jurisdiction takes no more reports: no outline at all."""
    return JurisdictionBoundaryChanged(
        jurisdiction=code,
        name=name,
        version="retired",
        boundary=EMPTY_MULTIPOLYGON,
        retired=True,
    )


async def reannounce(unit_of_work: UnitOfWorkFactory, history: History, since: datetime) -> int:
    """Stage again the routing decisions taken since ``since`` (ReportRouted or
    ReportRoutingFailed as stored, with their original event ids; a report's latest, an
    override if staff chose its office), then each jurisdiction's outline and office directory
    (compacted topics a broker may have lost whole): after a broker lost them, intake takes
    what it misses and drops what it has. The outlines are read as the index would publish
    them, without building one. Returns how many decisions were staged."""
    staged = 0
    async for decisions in history.decisions_since(since):
        async with unit_of_work() as uow:
            await uow.publish(*decisions)
        staged += len(decisions)
    await _announce_geography(unit_of_work, await history.current_outlines())
    return staged


def explain_route(
    cache: RoutingCache, jurisdiction: str, lat: float, long: float, service_code: str
) -> Route:
    return find_routes(
        cache.get(jurisdiction),
        jurisdiction,
        [(lat, long, service_code)],
        retired=jurisdiction in cache.retired,
    )[0]


def covering_jurisdiction(cache: RoutingCache, lat: float, long: float) -> str | None:
    """The jurisdiction a report at this place belongs to when it names none: of those whose
    areas cover it, the highest precedence, then the smallest (as intake decides)."""
    covering = [index for index in cache.all() if index.areas_at_many([lat], [long])[0]]
    if not covering:
        return None
    return min(covering, key=lambda i: (-i.precedence, i.extent, i.code)).code
