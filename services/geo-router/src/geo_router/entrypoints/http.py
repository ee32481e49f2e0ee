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


class JurisdictionOut(BaseModel):
    code: str
    name: str
    precedence: int
    disabled_service_codes: list[str]
    retired: bool


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


def _not_served(code: str, found: Any) -> JSONResponse | None:
    """404 for a jurisdiction that is not loaded or was retired; None when it is served."""
    if found is None:
        why = f"unknown jurisdiction {code!r}; GET /v1/jurisdictions lists them"
        return refusal(404, "unknown_jurisdiction", [("jurisdiction", why)])
    if found.retired_at is not None:
        why = f"jurisdiction {code!r} was retired"
        return refusal(404, "retired_jurisdiction", [("jurisdiction", why)])
    return None


def router(outbox: Outbox, cache: RoutingCache, default_jurisdiction: str) -> APIRouter:
    """``default_jurisdiction`` (GEO_ROUTER_DEFAULT_JURISDICTION) is taken where a client names
    none: clients older than several jurisdictions per deployment (web's maps) knew only one."""
    api = APIRouter(prefix="/v1", tags=["routing"])
    #: For the parameter's documentation in /docs.
    jurisdiction_query = Query(
        default_jurisdiction,
        description="The jurisdiction's code, e.g. koeln (GET /v1/jurisdictions); "
        f"without it, {default_jurisdiction!r}, for clients from before several jurisdictions",
    )

    @api.get("/jurisdictions", response_model=list[JurisdictionOut])
    async def list_jurisdictions() -> Any:
        """Every jurisdiction loaded, retired ones included (marked), sorted by code."""
        async with unit_of_work(outbox) as uow:
            found = await uow.geography.jurisdictions()
        return [
            JurisdictionOut(
                code=j.code,
                name=j.name,
                precedence=j.precedence,
                disabled_service_codes=list(j.disabled_service_codes),
                retired=j.retired_at is not None,
            )
            for j in found
        ]

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
        jurisdiction: str | None = Query(
            None,
            description="The jurisdiction whose areas and rules decide; without it, the one "
            "covering the point (the highest precedence, then the smallest), as for a report "
            "that names none",
        ),
    ) -> Any:
        """The areas containing the point, the office responsible and the rule that decided."""
        if service_code not in CATEGORIES_BY_CODE:
            known = ", ".join(sorted(CATEGORIES_BY_CODE))
            why = f"unknown service_code {service_code!r}; the categories are {known}"
            return refusal(422, "invalid_field", [("service_code", why)])
        if jurisdiction is None:
            jurisdiction = handlers.covering_jurisdiction(cache, lat, long)
            if jurisdiction is None:
                served = ", ".join(sorted(i.name for i in cache.all())) or "none"
                return JSONResponse(
                    {
                        "error": "outside_jurisdiction",
                        "detail": f"({lat}, {long}) lies outside every jurisdiction served "
                        f"here ({served})",
                        "areas": [],
                    },
                    status_code=404,
                )
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

    @api.get(
        "/areas",
        response_model=FeatureCollectionOut,
        response_class=GeoJSONResponse,
        responses={404: json_answer("RefusalOut", "No such jurisdiction, or a retired one")},
    )
    async def list_areas(jurisdiction: str = jurisdiction_query, level: str | None = None) -> Any:
        """The current areas (all levels, or one) as a GeoJSON FeatureCollection."""
        async with unit_of_work(outbox) as uow:
            refused = _not_served(jurisdiction, await uow.geography.jurisdiction(jurisdiction))
            if refused is not None:
                return refused
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
    async def get_area(level: str, code: str, jurisdiction: str = jurisdiction_query) -> Any:
        """One current area as a GeoJSON Feature."""
        async with unit_of_work(outbox) as uow:
            refused = _not_served(jurisdiction, await uow.geography.jurisdiction(jurisdiction))
            if refused is not None:
                return refused
            features = await uow.geography.areas_geojson(jurisdiction, level, code)
        if not features:
            return JSONResponse(
                {"error": "not_found", "detail": f"no area {level} {code} in {jurisdiction}"},
                status_code=404,
            )
        return JSONResponse(features[0], media_type="application/geo+json")

    @api.get(
        "/rules",
        response_model=list[RuleListed],
        responses={404: json_answer("RefusalOut", "No such jurisdiction, or a retired one")},
    )
    async def list_rules(jurisdiction: str = jurisdiction_query) -> Any:
        """The jurisdiction's responsibility rules in force, each with its explanation."""
        async with unit_of_work(outbox) as uow:
            refused = _not_served(jurisdiction, await uow.geography.jurisdiction(jurisdiction))
            if refused is not None:
                return refused
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

    @api.get(
        "/offices",
        response_model=list[OfficeOut],
        responses={404: json_answer("RefusalOut", "No such jurisdiction, or a retired one")},
    )
    async def list_offices(jurisdiction: str = jurisdiction_query) -> Any:
        """The jurisdiction's offices (codes are unique within a jurisdiction only)."""
        async with unit_of_work(outbox) as uow:
            refused = _not_served(jurisdiction, await uow.geography.jurisdiction(jurisdiction))
            if refused is not None:
                return refused
            return await uow.geography.offices(jurisdiction)

    return api
