"""Geo-router's use cases: route a report; explain a route."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from geo_router.adapters.db import UnitOfWork, unit_of_work
from geo_router.domain import Decision, choose_office, one_area_per_level
from mm_shared.events import (
    MatchedArea,
    ReportRouted,
    ReportRoutingFailed,
    ReportSubmitted,
    RoutingFailureReason,
    Topic,
)
from mm_shared.outbox import Outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    areas: tuple[MatchedArea, ...]
    decision: Decision | None
    failure: RoutingFailureReason | None
    detail: str


async def find_route(
    uow: UnitOfWork, jurisdiction: str, lat: float, long: float, service_code: str
) -> Route:
    level_order = await uow.geography.level_order(jurisdiction)
    if not level_order:
        return Route(
            (),
            None,
            RoutingFailureReason.UNKNOWN_JURISDICTION,
            f"unknown jurisdiction {jurisdiction!r}",
        )
    matches = await uow.geography.areas_at(jurisdiction, lat, long)
    areas = one_area_per_level(matches, level_order)
    if not areas:
        return Route(
            (),
            None,
            RoutingFailureReason.OUTSIDE_JURISDICTION,
            f"({lat}, {long}) lies outside every area of {jurisdiction}",
        )
    decision = choose_office(
        service_code, areas, await uow.geography.rules(jurisdiction, service_code)
    )
    if decision is None:
        return Route(
            areas,
            None,
            RoutingFailureReason.NO_RESPONSIBLE_OFFICE,
            f"no rule names an office for service_code {service_code!r} here",
        )
    return Route(areas, decision, None, decision.explanation)


async def route_report(outbox: Outbox, event: ReportSubmitted) -> None:
    """Decide once per report; a redelivery changes nothing, a resubmission re-announces."""
    async with unit_of_work(outbox) as uow:
        if not await uow.first_delivery(event.event_id):
            return
        existing = await uow.decisions.get(event.report_id)
        if existing is not None:
            if event.resubmission:
                event_class = (
                    ReportRouted
                    if existing["topic"] == Topic.REPORT_ROUTED
                    else ReportRoutingFailed
                )
                await uow.publish(event_class.model_validate(existing["event"]))
            return
        route = await find_route(uow, event.jurisdiction, event.lat, event.long, event.service_code)
        result: ReportRouted | ReportRoutingFailed
        if route.decision is not None:
            result = ReportRouted(
                report_id=event.report_id,
                correlation_id=event.correlation_id,
                office=route.decision.office,
                areas=route.areas,
                rule=route.decision.explanation,
            )
        else:
            assert route.failure is not None
            log.info("report %s not routed: %s", event.report_id, route.detail)
            result = ReportRoutingFailed(
                report_id=event.report_id,
                correlation_id=event.correlation_id,
                reason=route.failure,
                detail=route.detail,
            )
        await uow.decisions.add(result)
        await uow.publish(result)


async def explain_route(
    outbox: Outbox, jurisdiction: str, lat: float, long: float, service_code: str
) -> Route:
    async with unit_of_work(outbox) as uow:
        return await find_route(uow, jurisdiction, lat, long, service_code)
