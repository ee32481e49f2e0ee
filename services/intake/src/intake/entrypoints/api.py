"""The city app's own API under ``/api/v1/``: multipart submissions with photos, public status,
the map's GeoJSON, duplicate hints and "me too". Errors are JSON:
``{"errors": [{"code": "...", "field": "...", "message": "..."}]}``."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel, EmailStr, Field, ValidationError
from starlette.datastructures import FormData, UploadFile

from intake import handlers
from intake.adapters.console import open_data_export, stream_rows
from intake.adapters.photos import MAX_BYTES, PhotoRejected, PhotoStore, process_photo
from intake.domain import Contact, InvalidReport, Photo, ReopenRefused, check_coordinates
from intake.entrypoints import pages, representations, schemas
from intake.entrypoints.dependencies import (
    BoundariesDep,
    LimitsDep,
    OutboxDep,
    PhotoStoreDep,
    SettingsDep,
    TimezoneDep,
    TokensDep,
    UnitsOfWorkDep,
    components_of,
)
from intake.entrypoints.formats import REPORT_COLUMNS, csv_response, report_columns
from intake.entrypoints.representations import iso
from intake.ports import ReportSearch
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import ReportStatus
from mm_shared.service import Day, Text, problem

MAX_PHOTOS = 5
OPEN_DATA_COLUMNS = [
    *REPORT_COLUMNS,
    "agency_responsible",
    "requested_at",
    "updated_at",
    "expected_at",
]
#: A report without photos (JSON or URL-encoded) is a few kB; photos come as multipart.
MAX_BODY_WITHOUT_FILES = 256 * 1024
PHOTOS = Counter("mm_photos_total", "Photos processed, by outcome", ["outcome"])


class ReportIn(BaseModel):
    """A submission as JSON (photos need multipart/form-data with the same field names)."""

    service_code: Text
    lat: float
    long: float
    description: Text = Field(default="", max_length=4000)
    email: EmailStr | None = None
    first_name: Text | None = Field(default=None, max_length=200)
    last_name: Text | None = Field(default=None, max_length=200)
    locale: Literal["de", "en"] = "de"
    address: Text | None = Field(default=None, max_length=500)
    attributes: dict[Text, list[Text]] = Field(default_factory=dict)
    #: The jurisdiction the report is for (as Open311's ``jurisdiction_id``); without it, the
    #: one that covers the place.
    jurisdiction: Text | None = Field(default=None, max_length=100)


class NotFixedIn(BaseModel):
    """The reporter says a resolved report is not fixed (multipart: one photo in ``photos``)."""

    reporter_token: Text = Field(min_length=1, max_length=200)
    note: Text | None = Field(default=None, max_length=4000)


class ErasureIn(BaseModel):
    """The reporter's token, which proves the contact is theirs."""

    reporter_token: Text = Field(min_length=1, max_length=200)


class FollowerIn(BaseModel):
    email: EmailStr
    first_name: Text | None = Field(default=None, max_length=200)
    locale: Literal["de", "en"] = "de"


class TooLarge(Exception):
    """A body without files over :data:`MAX_BODY_WITHOUT_FILES`, or a form with too many fields."""


async def read_body_without_files(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_WITHOUT_FILES:
            raise TooLarge(
                f"a report without photos may have at most {MAX_BODY_WITHOUT_FILES // 1024} kB"
            )
    return bytes(body)


async def read_form(request: Request, max_files: int = 0, max_fields: int = 1000) -> FormData:
    """The form of a POST. URL-encoded bodies are read as UTF-8 here: Starlette reads bytes that
    are not %-escaped as Latin-1, so a client sending "Haustür" unescaped got "HaustÃ¼r"."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return await request.form(max_files=max_files, max_fields=max_fields)
    text = (await read_body_without_files(request)).decode("utf-8", errors="replace")
    try:
        fields: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields)
        )
    except ValueError as exc:
        raise TooLarge(f"a form may have at most {max_fields} fields") from exc
    return FormData(fields)


#: What reading a client's body may raise: each is the client's mistake (see unreadable_body).
UNREADABLE = (ValidationError, TooLarge, json.JSONDecodeError, UnicodeDecodeError, RecursionError)


def unreadable_body(error: Exception) -> JSONResponse:
    """The refusal for a body that could not be read into the expected fields."""
    if isinstance(error, ValidationError):
        return problem(
            422,
            *[
                ("invalid_field", ".".join(map(str, e["loc"])) or None, e["msg"])
                for e in error.errors()
            ],
        )
    if isinstance(error, TooLarge):
        return problem(413, ("body_too_large", None, str(error)))
    return problem(400, ("invalid_json", None, "the body is not valid JSON, or nests too deeply"))


def rate_limited(retry_after_s: int) -> JSONResponse:
    refused = problem(
        429,
        (
            "rate_limited",
            None,
            f"too many submissions from here or for this e-mail address: "
            f"try again in {retry_after_s} seconds",
        ),
    )
    refused.headers["Retry-After"] = str(retry_after_s)
    return refused


def unknown_jurisdiction(unknown: handlers.UnknownJurisdiction, field: str) -> JSONResponse:
    return problem(404, ("unknown_jurisdiction", field, str(unknown)))


def no_report(report_id: UUID) -> JSONResponse:
    return problem(404, ("not_found", "report_id", f"no report {report_id}"))


def not_the_reporters_token() -> JSONResponse:
    return problem(403, ("invalid_token", "reporter_token", "this is not the reporter's token"))


def duplicates_refusal(nearby: list[handlers.NearbyReport], public_base_url: str) -> JSONResponse:
    """409: the submission looks like one of ``nearby`` (schemas.PossibleDuplicatesOut)."""
    return JSONResponse(
        {
            "errors": [
                {
                    "code": "possible_duplicates",
                    "field": None,
                    "message": "open reports of this kind are very close by: send "
                    "X-Acknowledge-Duplicate: true if yours is a new one, or "
                    "follow one of them",
                }
            ],
            "duplicates": [
                representations.possible_duplicate(n.report, n.distance_m, public_base_url)
                for n in nearby
            ],
        },
        status_code=409,
    )


async def read_submission(request: Request) -> tuple[ReportIn, list[UploadFile]]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await read_body_without_files(request)
        return ReportIn.model_validate(json.loads(body or b"null")), []
    form = await read_form(request, max_files=MAX_PHOTOS + 1, max_fields=100)
    uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile)]
    fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    attributes: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if key.startswith("attribute[") and isinstance(value, str):
            attributes.setdefault(key[len("attribute[") :].split("]")[0], []).append(value)
    fields["attributes"] = attributes
    return ReportIn.model_validate(fields), uploads


async def read_not_fixed(request: Request) -> tuple[NotFixedIn, list[UploadFile]]:
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await read_body_without_files(request)
        return NotFixedIn.model_validate(json.loads(body or b"null")), []
    form = await read_form(request, max_files=2, max_fields=10)
    uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile)]
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return NotFixedIn.model_validate(fields), uploads


async def process_uploads(
    store: PhotoStore, uploads: list[UploadFile], at_most: int = MAX_PHOTOS
) -> tuple[list[Photo], JSONResponse | None]:
    if len(uploads) > at_most:
        PHOTOS.labels("too_many").inc(len(uploads))
        return [], problem(422, ("too_many_photos", "photos", f"at most {at_most} photos"))
    processed, failures = [], []
    for i, upload in enumerate(uploads):
        data = await upload.read(MAX_BYTES + 1)
        try:
            # Decoding is CPU work: off the event loop, so other requests keep flowing.
            photo = await asyncio.to_thread(process_photo, data)
        except PhotoRejected as rejected:
            PHOTOS.labels(rejected.reason).inc()
            name = upload.filename or f"photo {i + 1}"
            failures.append((f"photo_{rejected.reason}", f"photos[{i}]", f"{name}: {rejected}"))
            continue
        await store.put(photo)
        PHOTOS.labels("accepted").inc()
        processed.append(Photo(photo.digest, photo.content_type, photo.width, photo.height))
    if failures:
        status = 413 if all(code == "photo_too_large" for code, _, _ in failures) else 422
        return [], problem(status, *failures)
    return processed, None


router = APIRouter(prefix="/api/v1", tags=["city app"])


@router.post(
    "/reports",
    status_code=201,
    response_model=schemas.ReportCreatedOut,
    responses={
        200: {
            "model": schemas.ReportCreatedOut,
            "description": "A retry with an Idempotency-Key already used: the report "
            "created the first time (header Idempotent-Replayed: true)",
        },
        409: {
            "model": schemas.PossibleDuplicatesOut,
            "description": "Open reports of this category very close by",
        },
        **schemas.refusals(
            400,
            404,
            413,
            422,
            429,
            s400="The body is not valid JSON, or nests too deeply",
            s404="The jurisdiction named is not served here",
            s413="A photo over 10 MB, or a body without photos over 256 kB",
            s429="Too many submissions from this address or for this e-mail address",
        ),
    },
    openapi_extra=schemas.report_body(ReportIn),
)
async def submit(
    request: Request,
    idempotency_key: str | None = Header(default=None, max_length=200),
    x_acknowledge_duplicate: bool = Header(default=False),
) -> Response:
    """Submit a report (JSON, or multipart/form-data with up to 5 files named ``photos``).

    Open reports of the same category within ~50 m come back as ``409 possible_duplicates``
    unless ``X-Acknowledge-Duplicate: true`` says this one is new; to join an existing
    report instead, POST to ``/api/v1/reports/{id}/followers``. A retry with the same
    ``Idempotency-Key`` returns the report created the first time.
    """
    # The parts read at once rather than as dependencies: each one FastAPI resolves costs
    # more CPU than the attribute read it stands for, on the busiest route.
    parts = components_of(request)
    uows, boundaries, settings = parts.uows, parts.boundaries, parts.settings
    tokens, limits = parts.tokens, parts.limits
    if wait := limits.admit_address(request):
        return rate_limited(wait)
    try:
        data, uploads = await read_submission(request)
    except UNREADABLE as unreadable:
        return unreadable_body(unreadable)
    # Before anything computes with them: an infinite latitude had crashed the duplicate
    # lookup's distance (a 500 instead of a 422).
    if location_problems := check_coordinates(data.lat, data.long):
        return problem(422, *[("invalid_report", "lat,long", p) for p in location_problems])
    if wait := limits.admit_email(str(data.email) if data.email else None):
        return rate_limited(wait)
    try:
        handlers.check_named(boundaries, data.jurisdiction or None)
    except handlers.UnknownJurisdiction as unknown:
        return unknown_jurisdiction(unknown, "jurisdiction")
    if nearby := await handlers.possible_duplicates(
        uows,
        service_code=data.service_code,
        lat=data.lat,
        long=data.long,
        radius_m=settings.duplicate_radius_m,
        acknowledged=x_acknowledge_duplicate,
        idempotency_key=idempotency_key or None,
    ):
        return duplicates_refusal(nearby, settings.public_base_url)
    photos, refusal = await process_uploads(parts.photos, uploads)
    if refusal is not None:
        return refusal
    submission = handlers.Submission(
        jurisdiction=data.jurisdiction or None,
        default_jurisdiction=settings.jurisdiction,
        service_code=data.service_code,
        lat=data.lat,
        long=data.long,
        description=data.description,
        contact=Contact(str(data.email), data.first_name, data.last_name, None, data.locale)
        if data.email
        else None,
        address=data.address,
        attributes=data.attributes,
        photos=tuple(photos),
        service_levels=settings.service_level_days,
    )
    try:
        report, created = await handlers.accept_submission(
            parts.writer, uows, boundaries, tokens, submission, idempotency_key or None
        )
    except handlers.UnknownJurisdiction as unknown:
        return unknown_jurisdiction(unknown, "jurisdiction")
    except handlers.OutsideJurisdiction as outside:
        return problem(422, *[("outside_jurisdiction", "lat,long", p) for p in outside.problems])
    except handlers.ServiceDisabled as disabled:
        return problem(422, *[("service_disabled", "service_code", p) for p in disabled.problems])
    except InvalidReport as invalid:
        return problem(422, *[("invalid_report", None, p) for p in invalid.problems])
    except handlers.IdempotencyConflict as conflict:
        return problem(422, ("idempotency_key_reused", "Idempotency-Key", str(conflict)))
    tracking_url = representations.tracking_url(settings.public_base_url, report.id)
    return JSONResponse(
        representations.created_report(
            report, settings.public_base_url, reporter_token=tokens.issue(report.id)
        ),
        status_code=201 if created else 200,
        headers={"Location": tracking_url} | ({} if created else {"Idempotent-Replayed": "true"}),
    )


@router.get(
    "/reports/{report_id}",
    response_model=schemas.PublicReportOut,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        404: {
            "model": schemas.ErrorsOut,
            "description": "No such report (a page for Accept: text/html)",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
    },
)
async def get_report(
    report_id: UUID, request: Request, uows: UnitsOfWorkDep, settings: SettingsDep, tz: TimezoneDep
) -> Response:
    """Public status of a report with its history and public notes (no personal data). A
    browser (Accept: text/html) gets it as a page, in English for an English
    Accept-Language: this is the link in the reporters' mails."""
    report = await handlers.get_report(uows, report_id)
    if pages.wants_page(request):
        lang = pages.language(request)
        if report is None:
            return pages.unknown_report_page(lang)
        photos = [representations.photo_links(settings.public_base_url, p) for p in report.photos]
        return pages.report_page(report, photos, lang, tz)
    if report is None:
        return no_report(report_id)
    return JSONResponse(representations.public_report(report, settings.public_base_url))


@router.post(
    "/reports/{report_id}/followers",
    status_code=202,
    response_model=schemas.FollowingOut,
    responses=schemas.refusals(404, 429),
)
async def follow(
    report_id: UUID, follower: FollowerIn, request: Request, uows: UnitsOfWorkDep, limits: LimitsDep
) -> Response:
    """ "Me too": be told about every change of an existing report instead of filing a new one."""
    if wait := limits.admit_address(request) or limits.admit_email(str(follower.email)):
        return rate_limited(wait)
    contact = Contact(str(follower.email), follower.first_name, None, None, follower.locale)
    if not await handlers.follow(uows, report_id, contact):
        return no_report(report_id)
    return JSONResponse({"following": str(report_id)}, status_code=202)


@router.post(
    "/reports/{report_id}/contact/erase",
    status_code=204,
    responses=schemas.refusals(403, 422, s403="Not the reporter's token"),
)
async def erase_contact(
    report_id: UUID, erasure: ErasureIn, uows: UnitsOfWorkDep, tokens: TokensDep
) -> Response:
    """The reporter's right to erasure (GDPR Art. 17), proven by their token: intake erases
    the copy of their contact it keeps for re-announcing (``INTAKE_CONTACT_KEPT_DAYS``);
    the notifier's ``/api/v1/reports/{id}/contact/erase`` erases the rest. 204 also when
    none was kept (any more)."""
    try:
        await handlers.erase_kept_contact(uows, tokens, report_id, erasure.reporter_token)
    except handlers.InvalidReporterToken:
        return not_the_reporters_token()
    return Response(status_code=204)


@router.post(
    "/reports/{report_id}/not-fixed",
    response_model=schemas.PublicReportOut,
    responses=schemas.refusals(
        400,
        403,
        404,
        409,
        413,
        422,
        s400="The body is not valid JSON, or nests too deeply",
        s403="Not the reporter's token",
        s409="The report is not resolved, or was resolved too long ago",
    ),
    openapi_extra=schemas.not_fixed_body(NotFixedIn),
)
async def not_fixed(
    report_id: UUID,
    request: Request,
    uows: UnitsOfWorkDep,
    store: PhotoStoreDep,
    settings: SettingsDep,
    tokens: TokensDep,
) -> Response:
    """The reporter says a resolved report is not fixed (JSON ``{"reporter_token", "note"}``
    or multipart with one optional photo in ``photos``): within
    ``INTAKE_REOPEN_WITHIN_DAYS`` of its resolution it goes back to its office as
    ``assigned``, the note public, and the office is told."""
    try:
        data, uploads = await read_not_fixed(request)
    except UNREADABLE as unreadable:
        return unreadable_body(unreadable)
    within = timedelta(days=settings.reopen_within_days)
    try:
        await handlers.check_reopenable(uows, tokens, report_id, data.reporter_token, within)
        photos, refusal = await process_uploads(store, uploads, at_most=1)
        if refusal is not None:
            return refusal
        report = await handlers.reopen_by_reporter(
            uows,
            tokens,
            report_id,
            data.reporter_token,
            note=data.note,
            photo=photos[0] if photos else None,
            within=within,
        )
    except handlers.InvalidReporterToken:
        return not_the_reporters_token()
    except handlers.ReportNotFound:
        return no_report(report_id)
    except ReopenRefused as refused:
        return problem(409, (refused.code, "status", str(refused)))
    except InvalidReport as invalid:
        return problem(422, *[("invalid_field", "note", p) for p in invalid.problems])
    return JSONResponse(representations.public_report(report, settings.public_base_url))


class InvalidBox(ValueError):
    """A bbox parameter that is not four ordered, finite numbers spanning at most 1°."""


def parse_bbox(bbox: str) -> tuple[float, float, float, float]:
    try:
        min_long, min_lat, max_long, max_lat = (float(v) for v in bbox.split(","))
    except ValueError:
        raise InvalidBox("bbox is min_long,min_lat,max_long,max_lat") from None
    if not all(map(math.isfinite, (min_long, min_lat, max_long, max_lat))):
        # float() reads "nan" and "inf"; NaN compares false with everything.
        raise InvalidBox("bbox must be four finite numbers")
    if not (
        min_long <= max_long
        and min_lat <= max_lat
        and max_long - min_long <= 1
        and max_lat - min_lat <= 1
    ):
        raise InvalidBox("bbox must be ordered and at most 1° wide")
    return min_long, min_lat, max_long, max_lat


#: The statuses of the map's ``status`` filter.
STATUSES_SHOWN = {
    "open": [s for s in ReportStatus if not s.is_closed],
    "closed": [s for s in ReportStatus if s.is_closed],
    "all": [],
}


@router.get(
    "/reports",
    response_model=schemas.ReportFeatureCollection,
    response_class=schemas.GeoJSONResponse,
    responses=schemas.refusals(
        400, 404, s400="A bbox or service_code that is not valid", s404="No such jurisdiction"
    ),
)
async def reports_in_box(
    uows: UnitsOfWorkDep,
    boundaries: BoundariesDep,
    settings: SettingsDep,
    bbox: str | None = Query(
        default=None,
        description="min_long,min_lat,max_long,max_lat (WGS84); optional with area",
    ),
    area: str | None = Query(
        default=None, max_length=200, description="an area's code or name, any level"
    ),
    service_code: str | None = Query(
        default=None, max_length=1000, description="categories, comma-separated"
    ),
    status: Literal["open", "closed", "all"] = "open",
    jurisdiction: str | None = Query(default=None, max_length=100),
    limit: int = Query(default=1000, ge=1, le=1000),
) -> Response:
    """Public reports in a bounding box and/or an area as GeoJSON, newest first, for the
    map and the list (1,000 at most)."""
    box: tuple[float, float, float, float] | None = None
    if bbox is not None:
        try:
            box = parse_bbox(bbox)
        except InvalidBox as invalid:
            return problem(400, ("invalid_bbox", "bbox", str(invalid)))
    elif not area:
        return problem(400, ("invalid_bbox", "bbox", "give a bbox, an area, or both"))
    try:
        handlers.check_named(boundaries, jurisdiction or None)
    except handlers.UnknownJurisdiction as unknown_place:
        return unknown_jurisdiction(unknown_place, "jurisdiction")
    codes = [c.strip() for c in (service_code or "").split(",") if c.strip()]
    if unknown := [c for c in codes if c not in CATEGORIES_BY_CODE]:
        return problem(
            400,
            *[
                ("invalid_service_code", "service_code", f"unknown service_code {c!r}")
                for c in unknown
            ],
        )
    found = await handlers.find_reports(
        uows,
        ReportSearch(
            bbox=box,
            area=area,
            service_codes=codes,
            statuses=STATUSES_SHOWN[status],
            jurisdiction=jurisdiction or None,
            limit=limit,
        ),
    )
    return JSONResponse(
        {
            "type": "FeatureCollection",
            "features": [
                representations.report_feature(r, settings.public_base_url) for r in found
            ],
        },
        media_type="application/geo+json",
    )


@router.get(
    "/open-data/reports.csv",
    response_class=Response,
    responses=schemas.csv_answer("Every report, CSV (UTF-8 with BOM)"),
)
async def open_data(
    outbox: OutboxDep,
    tz: TimezoneDep,
    since: Day | None = Query(default=None, description="reports from this day on"),
) -> Response:
    """Every report as open data (CSV, streamed): category, status, office, Stadtbezirk and
    Ortsteil, place and dates. Nothing of the reporter, no notes, and no free text (a
    description may name people or number plates)."""

    def row(r: Any) -> list[object]:
        return [
            *report_columns(r),
            r.office_name or "",
            iso(r.requested_at),
            iso(r.updated_at),
            iso(r.expected_at),
        ]

    start = datetime.combine(since, time(), tz) if since else None
    return csv_response(
        "maengelmelder-open-data.csv",
        OPEN_DATA_COLUMNS,
        stream_rows(outbox.engine, open_data_export(start)),
        row,
    )


@router.get("/jurisdictions", response_model=schemas.JurisdictionsOut)
async def jurisdictions(boundaries: BoundariesDep) -> JSONResponse:
    """The jurisdictions this deployment serves (by code): name, bounding box
    ``[min_lon, min_lat, max_lon, max_lat]`` and the categories switched off there."""
    return JSONResponse(
        {
            "jurisdictions": [
                {
                    "code": j.code,
                    "name": j.name,
                    "bbox": list(j.bbox),
                    "precedence": j.precedence,
                    "disabled_service_codes": sorted(j.disabled_service_codes),
                }
                for j in boundaries.all()
            ]
        }
    )


@router.get(
    "/services",
    response_model=list[schemas.CategoryOut],
    responses=schemas.refusals(404, s404="No such jurisdiction"),
)
async def services(
    boundaries: BoundariesDep, jurisdiction: str | None = Query(default=None, max_length=100)
) -> Response:
    """The categories a report can be filed under: the shared catalogue, without those
    ``jurisdiction`` switched off."""
    try:
        handlers.check_named(boundaries, jurisdiction or None)
    except handlers.UnknownJurisdiction as unknown:
        return unknown_jurisdiction(unknown, "jurisdiction")
    return JSONResponse(
        [
            {
                "service_code": c.code,
                "name": {"de": c.name_de, "en": c.name_en},
                "description": {"de": c.description_de, "en": c.description_en},
                "group": c.group,
            }
            for c in handlers.offered_categories(boundaries, jurisdiction or None)
        ]
    )


@router.get(
    "/photos/{digest}/{variant}",
    response_class=Response,
    responses={
        200: {
            "description": "The photo",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        **schemas.refusals(404),
    },
)
async def photo(
    digest: str, variant: Literal["original", "display", "thumbnail"], store: PhotoStoreDep
) -> Response:
    """A stored photo (metadata stripped). Content-addressed, so cacheable forever; the
    original stands in for a display size or thumbnail not made yet, briefly cacheable."""
    found = await store.serve(digest, variant)
    if found is None:
        return problem(404, ("not_found", "digest", "no such photo"))
    return Response(
        found.content,
        media_type=found.content_type,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable"
            if found.final
            else "public, max-age=60"
        },
    )
