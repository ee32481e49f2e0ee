"""Geo-router's explain API: where does a report at this place go, and why.

The routes are module-level functions; what they need comes in as dependencies that read the
application's state (:func:`install`, called by ``bootstrap.py``): the unit of work and the
routing cache (interfaces of :mod:`geo_router.ports`) and the default jurisdiction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from geo_router import handlers
from geo_router.ports import JurisdictionRecord, RoutingCache, UnitOfWorkFactory
from geo_router.settings import GeoRouterSettings
from mm_shared.api_docs import json_answer
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import MatchedArea, OfficeRef
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


def _not_served(code: str, found: JurisdictionRecord | None) -> JSONResponse | None:
    """404 for a jurisdiction that is not loaded or was retired; None when it is served."""
    if found is None:
        why = f"unknown jurisdiction {code!r}; GET /v1/jurisdictions lists them"
        return refusal(404, "unknown_jurisdiction", [("jurisdiction", why)])
    if found.retired_at is not None:
        why = f"jurisdiction {code!r} was retired"
        return refusal(404, "retired_jurisdiction", [("jurisdiction", why)])
    return None


@dataclass(frozen=True)
class HttpState:
    """What the routes use, built by the composition root."""

    unit_of_work: UnitOfWorkFactory
    cache: RoutingCache
    #: GEO_ROUTER_DEFAULT_JURISDICTION: taken where a client names none (clients older than
    #: several jurisdictions per deployment, such as web's maps, knew only one).
    default_jurisdiction: str


def install(app: FastAPI, state: HttpState) -> None:
    """Give the routes of :data:`router` what they use, and document the deployment's default
    jurisdiction (the operations' parameter documents the setting's default)."""
    app.state.geo_router_http = state
    documented = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_default_jurisdiction(documented(), state.default_jurisdiction)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _state(request: Request) -> HttpState:
    state: HttpState = request.app.state.geo_router_http
    return state


def _unit_of_work(request: Request) -> UnitOfWorkFactory:
    return _state(request).unit_of_work


def _cache(request: Request) -> RoutingCache:
    return _state(request).cache


def _jurisdiction_doc(default: str) -> str:
    return (
        "The jurisdiction's code, e.g. koeln (GET /v1/jurisdictions); "
        f"without it, {default!r}, for clients from before several jurisdictions"
    )


#: The setting's default: what the document says unless :func:`install` was told otherwise.
_DEFAULT_JURISDICTION: str = GeoRouterSettings.model_fields["default_jurisdiction"].default


def _requested_jurisdiction(
    request: Request,
    jurisdiction: str = Query(
        _DEFAULT_JURISDICTION, description=_jurisdiction_doc(_DEFAULT_JURISDICTION)
    ),
) -> str:
    """The jurisdiction the client named, else the deployment's default."""
    if "jurisdiction" in request.query_params:
        return jurisdiction
    return _state(request).default_jurisdiction


def document_default_jurisdiction(openapi: dict[str, Any], default: str) -> None:
    """The defaulted ``jurisdiction`` parameters of ``openapi`` say ``default``."""
    for operation in (op for path in openapi.get("paths", {}).values() for op in path.values()):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "jurisdiction" and "default" in parameter["schema"]:
                parameter["schema"]["default"] = default
                parameter["description"] = _jurisdiction_doc(default)
                parameter["schema"]["description"] = _jurisdiction_doc(default)


Units = Annotated[UnitOfWorkFactory, Depends(_unit_of_work)]
Cache = Annotated[RoutingCache, Depends(_cache)]
Jurisdiction = Annotated[str, Depends(_requested_jurisdiction)]


def _area_level(level: str | None = None) -> str | None:
    """A dependency only so that the document lists ``level`` after ``jurisdiction``, as
    before (a route's own parameters come before those of its dependencies)."""
    return level


AreaLevel = Annotated[str | None, Depends(_area_level)]

router = APIRouter(prefix="/v1", tags=["routing"])


@router.get("/jurisdictions", response_model=list[JurisdictionOut])
async def list_jurisdictions(unit_of_work: Units) -> Any:
    """Every jurisdiction loaded, retired ones included (marked), sorted by code."""
    async with unit_of_work() as uow:
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


@router.get(
    "/route",
    response_model=RouteOut,
    responses={
        404: {"model": NoOfficeOut, "description": "No office for this place and category"},
        422: {"model": RefusalOut, "description": "A parameter is not valid"},
    },
)
async def explain_route(
    cache: Cache,
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


@router.get(
    "/areas",
    response_model=FeatureCollectionOut,
    response_class=GeoJSONResponse,
    responses={404: json_answer("RefusalOut", "No such jurisdiction, or a retired one")},
)
async def list_areas(unit_of_work: Units, jurisdiction: Jurisdiction, level: AreaLevel) -> Any:
    """The current areas (all levels, or one) as a GeoJSON FeatureCollection."""
    async with unit_of_work() as uow:
        refused = _not_served(jurisdiction, await uow.geography.jurisdiction(jurisdiction))
        if refused is not None:
            return refused
        features = await uow.geography.areas_geojson(jurisdiction, level)
    return JSONResponse(
        {"type": "FeatureCollection", "features": features}, media_type="application/geo+json"
    )


@router.get(
    "/areas/{level}/{code}",
    response_model=FeatureOut,
    response_class=GeoJSONResponse,
    responses={404: json_answer("RefusalOut", "No such area")},
)
async def get_area(level: str, code: str, unit_of_work: Units, jurisdiction: Jurisdiction) -> Any:
    """One current area as a GeoJSON Feature."""
    async with unit_of_work() as uow:
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


@router.get(
    "/rules",
    response_model=list[RuleListed],
    responses={404: json_answer("RefusalOut", "No such jurisdiction, or a retired one")},
)
async def list_rules(unit_of_work: Units, jurisdiction: Jurisdiction) -> Any:
    """The jurisdiction's responsibility rules in force, each with its explanation."""
    async with unit_of_work() as uow:
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


@router.get(
    "/offices",
    response_model=list[OfficeOut],
    responses={404: json_answer("RefusalOut", "No such jurisdiction, or a retired one")},
)
async def list_offices(unit_of_work: Units, jurisdiction: Jurisdiction) -> Any:
    """The jurisdiction's offices (codes are unique within a jurisdiction only)."""
    async with unit_of_work() as uow:
        refused = _not_served(jurisdiction, await uow.geography.jurisdiction(jurisdiction))
        if refused is not None:
            return refused
        return await uow.geography.offices(jurisdiction)
