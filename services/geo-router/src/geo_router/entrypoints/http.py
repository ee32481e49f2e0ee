"""Geo-router's explain API: where does a report at this place go, and why."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from geo_router import handlers
from geo_router.adapters.db import unit_of_work
from geo_router.adapters.index import RoutingCache
from mm_shared.events import MatchedArea, OfficeRef
from mm_shared.outbox import Outbox


class RuleOut(BaseModel):
    id: int
    priority: int
    explanation: str


class RouteOut(BaseModel):
    jurisdiction: str
    areas: list[MatchedArea]
    office: OfficeRef
    rule: RuleOut


class OfficeOut(BaseModel):
    code: str
    name: str
    public_name: str
    email: str


def router(outbox: Outbox, cache: RoutingCache, default_jurisdiction: str) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["routing"])

    @api.get("/route", response_model=RouteOut, responses={404: {"description": "no office"}})
    async def explain_route(
        lat: float = Query(ge=-90, le=90),
        long: float = Query(ge=-180, le=180),
        service_code: str = Query(min_length=1),
        jurisdiction: str = default_jurisdiction,
    ) -> Any:
        """The areas containing the point, the office responsible and the rule that decided."""
        route = handlers.explain_route(cache, jurisdiction, lat, long, service_code)
        if route.decision is None:
            return JSONResponse(
                {
                    "error": route.failure,
                    "detail": route.detail,
                    "areas": [a.model_dump() for a in route.areas],
                },
                status_code=404,
            )
        rule = route.decision.rule
        return RouteOut(
            jurisdiction=jurisdiction,
            areas=list(route.areas),
            office=route.decision.office,
            rule=RuleOut(
                id=rule.id, priority=rule.priority, explanation=route.decision.explanation
            ),
        )

    @api.get("/offices", response_model=list[OfficeOut])
    async def list_offices(jurisdiction: str = default_jurisdiction) -> Any:
        async with unit_of_work(outbox) as uow:
            return await uow.geography.offices(jurisdiction)

    return api
