"""Geo-router's explain API: where does a report at this place go, and why."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from geo_router import handlers
from geo_router.adapters.db import unit_of_work
from geo_router.adapters.index import RoutingCache
from mm_shared.api_docs import json_answer
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import MatchedArea, OfficeRef
from mm_shared.outbox import Outbox
from mm_shared.service import Problems


class RuleOut(BaseModel):
    id: int
    priority: int
    #: The area the rule names (level and code); both None for the jurisdiction-wide default.
    area_level: str | None
    area_code: str | None
    explanation: str


class RouteOut(BaseModel):
    jurisdiction: str
    areas: list[MatchedArea]
    office: OfficeRef
    rule: RuleOut


class RuleListed(BaseModel):
    id: int
    service_code: str
    area_level: str | None
    area_code: str | None
    priority: int
    office: OfficeRef
    explanation: str


class ProblemOut(BaseModel):
    field: str | None
    message: str


class RefusalOut(BaseModel):
    """Geo-router's error shape."""

    error: str = Field(description="machine-readable, e.g. invalid_field, not_found")
    detail: str = Field(description="the problems in one sentence")
    problems: list[ProblemOut] | None = None


class NoOfficeOut(BaseModel):
    """No rule gives the place and category an office (or the place is outside the city)."""

    error: str
    detail: str | None
    areas: list[MatchedArea]


class GeoJSONResponse(JSONResponse):
    """Documents an answer as application/geo+json."""

    media_type = "application/geo+json"


class FeatureOut(BaseModel):
    type: str = "Feature"
    id: str | int | None = None
    geometry: dict[str, Any]
    properties: dict[str, Any]


class FeatureCollectionOut(BaseModel):
    type: str = "FeatureCollection"
    features: list[FeatureOut]


class OfficeOut(BaseModel):
    code: str
    name: str
    public_name: str
    email: str


def refusal(status: int, code: str, problems: Problems) -> JSONResponse:
    """Geo-router's error shape: a code, the problems in one sentence, and each of them."""
    return JSONResponse(
        {
            "error": code,
            "detail": "; ".join(f"{field}: {why}" if field else why for field, why in problems),
            "problems": [{"field": field, "message": why} for field, why in problems],
        },
        status_code=status,
    )


def refused(_: Request, status: int, code: str, problems: Problems) -> Response:
    """For the service frame: FastAPI's own refusals in the same shape."""
    return refusal(status, code, problems)


def router(outbox: Outbox, cache: RoutingCache, default_jurisdiction: str) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["routing"])

    @api.get(
        "/route",
        response_model=RouteOut,
        responses={
            404: {"model": NoOfficeOut, "description": "No office for this place and category"},
            422: {"model": RefusalOut, "description": "A parameter is not valid"},
        },
    )
    async def explain_route(
        lat: float = Query(ge=-90, le=90),
        long: float = Query(ge=-180, le=180),
        service_code: str = Query(min_length=1),
        jurisdiction: str = default_jurisdiction,
    ) -> Any:
        """The areas containing the point, the office responsible and the rule that decided."""
        if service_code not in CATEGORIES_BY_CODE:
            known = ", ".join(sorted(CATEGORIES_BY_CODE))
            why = f"unknown service_code {service_code!r}; the categories are {known}"
            return refusal(422, "invalid_field", [("service_code", why)])
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
                id=rule.id,
                priority=rule.priority,
                area_level=rule.area_level,
                area_code=rule.area_code,
                explanation=route.decision.explanation,
            ),
        )

    @api.get("/areas", response_model=FeatureCollectionOut, response_class=GeoJSONResponse)
    async def list_areas(jurisdiction: str = default_jurisdiction, level: str | None = None) -> Any:
        """The current areas (all levels, or one) as a GeoJSON FeatureCollection."""
        async with unit_of_work(outbox) as uow:
            features = await uow.geography.areas_geojson(jurisdiction, level)
        return JSONResponse(
            {"type": "FeatureCollection", "features": features}, media_type="application/geo+json"
        )

    @api.get(
        "/areas/{level}/{code}",
        response_model=FeatureOut,
        response_class=GeoJSONResponse,
        responses={404: json_answer("RefusalOut", "No such area")},
    )
    async def get_area(level: str, code: str, jurisdiction: str = default_jurisdiction) -> Any:
        """One current area as a GeoJSON Feature."""
        async with unit_of_work(outbox) as uow:
            features = await uow.geography.areas_geojson(jurisdiction, level, code)
        if not features:
            return JSONResponse(
                {"error": "not_found", "detail": f"no area {level} {code} in {jurisdiction}"},
                status_code=404,
            )
        return JSONResponse(features[0], media_type="application/geo+json")

    @api.get("/rules", response_model=list[RuleListed])
    async def list_rules(jurisdiction: str = default_jurisdiction) -> Any:
        """The responsibility rules in force, each with its explanation."""
        async with unit_of_work(outbox) as uow:
            rules = await uow.geography.rules(jurisdiction)
        return [
            RuleListed(
                id=r.id,
                service_code=r.service_code,
                area_level=r.area_level,
                area_code=r.area_code,
                priority=r.priority,
                office=r.office,
                explanation=r.explain([]),
            )
            for r in rules
        ]

    @api.get("/offices", response_model=list[OfficeOut])
    async def list_offices(jurisdiction: str = default_jurisdiction) -> Any:
        async with unit_of_work(outbox) as uow:
            return await uow.geography.offices(jurisdiction)

    return api
