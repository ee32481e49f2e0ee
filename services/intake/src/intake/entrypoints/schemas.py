"""Intake's answers and the bodies it reads by hand, as models for its OpenAPI document: the
city app's developers build against that document, and the conformance tests
(tests/test_api_conformance.py) hold every answer to it. The routes build their JSON
themselves; these models describe it (a field added to an answer is added here too)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mm_shared.api_docs import ErrorsOut, describe, json_refusal, refusals
from mm_shared.events import MatchedArea, OfficeRef

#: Where an answer may carry fields a newer intake adds (e.g. a report's jurisdiction).
OPEN = ConfigDict(extra="allow")


class Names(BaseModel):
    de: str
    en: str


class PhotoLinks(BaseModel):
    url: str = Field(description="the display size")
    original_url: str
    thumbnail_url: str


class PublicChange(BaseModel):
    status: str
    at: str | None
    note: str | None


class PublicReportOut(BaseModel):
    """A report's public status: no personal data, no internal notes."""

    model_config = OPEN
    id: str
    tracking_url: str
    service_code: str
    service_name: Names | None
    status: str
    office: OfficeRef | None
    agency_responsible: str | None = Field(description="the office's name, as Open311 calls it")
    areas: list[MatchedArea]
    lat: float
    long: float
    address: str | None
    description: str | None
    requested_at: str | None
    updated_at: str | None
    expected_at: str | None
    photos: list[PhotoLinks]
    history: list[PublicChange]


class ReportCreatedOut(BaseModel):
    model_config = OPEN
    id: str
    tracking_url: str
    status: str
    photos: list[PhotoLinks]
    reporter_token: str = Field(description="the reporter's handle for not-fixed and erasure")


class DuplicateOut(BaseModel):
    model_config = OPEN
    id: str
    tracking_url: str
    service_code: str
    status: str
    lat: float
    long: float
    distance_m: float
    follow_url: str


class PossibleDuplicatesOut(ErrorsOut):
    """409: open reports of the same category are very close by."""

    duplicates: list[DuplicateOut]


class FollowingOut(BaseModel):
    following: str


class PointGeometry(BaseModel):
    type: str = "Point"
    coordinates: list[float] = Field(description="[long, lat]")


class ReportFeature(BaseModel):
    type: str = "Feature"
    id: str
    geometry: PointGeometry
    properties: dict[str, Any] = Field(description="a public report without lat, long, history")


class GeoJSONResponse(JSONResponse):
    """Documents an answer as application/geo+json (the route sets that type itself)."""

    media_type = "application/geo+json"


class ReportFeatureCollection(BaseModel):
    type: str = "FeatureCollection"
    features: list[ReportFeature]


# --- the staff API ---


class OfficeNamed(BaseModel):
    code: str
    name: str | None


class MeOut(BaseModel):
    model_config = OPEN
    name: str
    offices: list[OfficeNamed]
    admin: bool


class TicketOut(BaseModel):
    model_config = OPEN
    id: str
    status: str
    service_code: str
    service_name: str | None
    office: OfficeRef | None
    areas: list[MatchedArea]
    lat: float
    long: float
    address: str | None
    description: str | None
    requested_at: str | None
    updated_at: str | None
    duplicate_of: str | None
    expected_at: str | None
    overdue: bool


class TicketPhoto(PhotoLinks):
    width: int
    height: int


class TicketChange(BaseModel):
    status: str
    previous_status: str | None
    at: str | None
    by: str | None
    public_note: str | None
    internal_note: str | None


class TicketDetailOut(TicketOut):
    attributes: dict[str, list[str]]
    photos: list[TicketPhoto]
    history: list[TicketChange]


class NearbyTicketOut(TicketOut):
    distance_m: float


class TicketPageOut(BaseModel):
    items: list[TicketOut]
    page: int
    page_size: int
    total: int
    counts: dict[str, int] = Field(description="per status, under the filter but the status")


class ReassignmentOut(BaseModel):
    id: str
    reassignment_requested: str | None


class CategoryCount(BaseModel):
    service_code: str
    service_name: str
    count: int


class AreaCount(BaseModel):
    level: str
    code: str
    name: str
    count: int


class MonthCount(BaseModel):
    month: str
    count: int


class StatisticsOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    offices: list[str] | None
    start: str | None = Field(alias="from")
    end: str | None = Field(alias="to")
    per_category: list[CategoryCount]
    per_area: list[AreaCount]
    per_month: list[MonthCount]
    median_hours_to_assignment: float | None
    median_hours_to_closing: float | None
    closed: int
    closed_within_service_level: int
    share_closed_within_service_level: float | None


class CannedResponseOut(BaseModel):
    id: int
    office_code: str
    title: str
    body: str
    updated_by: str
    updated_at: str | None


class OfficeOut(BaseModel):
    code: str
    name: str


# --- Open311 GeoReport v2 ---


class JurisdictionOut(BaseModel):
    code: str
    name: str
    bbox: list[float] = Field(description="[min_lon, min_lat, max_lon, max_lat], WGS84")
    precedence: int
    disabled_service_codes: list[str]


class JurisdictionsOut(BaseModel):
    jurisdictions: list[JurisdictionOut]


class CategoryOut(BaseModel):
    service_code: str
    name: Names
    description: Names
    group: str


class Open311Error(BaseModel):
    code: int = Field(description="the HTTP status")
    description: str


class Open311Endpoint(BaseModel):
    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class DiscoveryOut(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[Open311Endpoint]


class ServiceOut(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str


class AttributeValue(BaseModel):
    key: str
    name: str


class ServiceAttribute(BaseModel):
    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[AttributeValue] | None = None


class ServiceDefinitionOut(BaseModel):
    service_code: str
    attributes: list[ServiceAttribute]


class ServiceRequestOut(BaseModel):
    service_request_id: str
    status: str = Field(description="open or closed")
    status_notes: str | None
    service_name: str | None
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str | None
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None


class RequestCreatedOut(BaseModel):
    service_request_id: str
    service_notice: str | None
    account_id: str | None


class TokenOut(BaseModel):
    service_request_id: str
    token: str


class Open311RequestForm(BaseModel):
    """GeoReport v2's POST, form-encoded. Attributes as ``attribute[code]`` fields (a
    multi-valued one repeated, or as ``attribute[code][]``)."""

    model_config = ConfigDict(extra="allow")
    api_key: str
    service_code: str
    lat: float | None = None
    long: float | None = None
    address_string: str | None = Field(default=None, description="located if lat/long are absent")
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    description: str | None = None
    media_url: str | None = None
    locale: str | None = None


# --- helpers for the routes' decorators ---

_XML = {"text/xml": {"schema": {"type": "string", "description": "the same content, as XML"}}}


def _ref(model: type[BaseModel], many: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"type": "array", "items": ref} if many else ref


def open311(
    model: type[BaseModel], *refusal_statuses: int, many: bool = False, status: int = 200
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of an Open311 route: its answer as JSON (``model``, or a list of them)
    and XML, and its refusals as Open311's list of errors, in JSON and XML."""
    answers: dict[int | str, dict[str, Any]] = {
        status: {
            "model": list[model] if many else model,  # type: ignore[valid-type]
            "description": describe(status),
            "content": {"application/json": {}, **_XML},
        }
    }
    for refused in refusal_statuses:
        answers[refused] = {
            "model": list[Open311Error],
            "description": describe(refused),
            "content": {"application/json": {}, **_XML},
        }
    return answers


def open311_refusal(status: int) -> dict[str, Any]:
    """A refusal of the service frame under /open311 (see intake.bootstrap.refused)."""
    return {
        "description": describe(status),
        "content": {
            "application/json": {"schema": _ref(Open311Error, many=True)},
            **_XML,
        },
    }


def refusal_doc(path: str, status: int) -> dict[str, Any] | None:
    """How intake.bootstrap.refused answers the service frame's refusals, for the document:
    under /open311 as Open311's errors (a 422 there is a 400), elsewhere as ``{"errors"}``."""
    if path.startswith("/open311/"):
        return None if status == 422 else open311_refusal(status)
    return json_refusal("ErrorsOut")(path, status)


def inline(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema for a requestBody of ``openapi_extra`` (flat models only)."""
    schema = model.model_json_schema()
    assert "$defs" not in schema, f"{model.__name__} nests models: give it as a component"
    return schema


def report_body(json_model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of POST /api/v1/reports, whose body is read by hand: JSON, or a form
    with the same fields, attributes as ``attribute[code]`` and up to 5 files in ``photos``."""
    as_json = inline(json_model)
    form_properties = {k: v for k, v in as_json["properties"].items() if k != "attributes"}
    form_properties["photos"] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "maxItems": 5,
        "description": "JPEG, PNG, WebP or HEIC photos, at most 10 MB each",
    }
    as_form = {
        "type": "object",
        "title": f"{json_model.__name__} (form)",
        "properties": form_properties,
        "required": as_json.get("required", []),
        "additionalProperties": {"type": "string", "description": "attribute[code] fields"},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": as_json},
                "multipart/form-data": {"schema": as_form},
            },
        }
    }


def not_fixed_body(json_model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of POST .../not-fixed: JSON, or multipart with one photo."""
    as_json = inline(json_model)
    as_form = {
        **as_json,
        "properties": {
            **as_json["properties"],
            "photos": {"type": "string", "format": "binary", "description": "one photo"},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": as_json},
                "multipart/form-data": {"schema": as_form},
            },
        }
    }


def open311_request_body() -> dict[str, Any]:
    """``openapi_extra`` of Open311's POST requests.{fmt}."""
    form = inline(Open311RequestForm)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": form},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def csv_answer(description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": description,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    }


__all__ = ["ErrorsOut", "refusals"]
