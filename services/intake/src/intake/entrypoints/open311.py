"""Open311 GeoReport v2 under ``/open311/v2/``, in JSON and XML: what city apps, CRMs and civic
tools speak. Errors follow the spec: a list of ``{code, description}``, 403 for a missing or
wrong api_key, 404 for unknown ids and service codes, 400 for everything else."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from intake import handlers
from intake.adapters.boundaries import Boundaries
from intake.adapters.geocoder import GeocoderUnavailable
from intake.catalogue import definition
from intake.domain import Contact, InvalidReport, email_problems, find_problems
from intake.entrypoints import representations, schemas
from intake.entrypoints.api import MAX_PHOTOS, STATUSES_SHOWN, TooLarge, read_form
from intake.entrypoints.dependencies import (
    BoundariesDep,
    SettingsDep,
    TimezoneDep,
    UnitsOfWorkDep,
    components_of,
)
from intake.entrypoints.formats import Format, errors, render
from intake.ports import ReportSearch
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import ReportStatus

MAX_SPAN = timedelta(days=90)
ATTRIBUTE_FIELD = re.compile(r"^attribute\[([^\]]+)\](\[\])?$")

log = logging.getLogger(__name__)

PREFIX = "/open311/v2"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
#: The statuses Open311's ``status`` filter names.
STATUSES_NAMED = {name: STATUSES_SHOWN[name] for name in ("open", "closed")}


def _parse_float(form: dict[str, str], name: str, problems: list[str]) -> float | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        problems.append(f"{name} must be a number in WGS84 degrees, got {raw!r}")
        return None


def _parse_datetime(raw: str | None, name: str, problems: list[str]) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"{name} must be an ISO 8601 date-time, e.g. 2026-11-27T00:00:00Z")
        return None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))


def unknown_jurisdiction(boundaries: Boundaries, fmt: Format, code: str | None) -> Response | None:
    """GeoReport v2: an endpoint serving several jurisdictions answers an unknown
    ``jurisdiction_id`` with 404; None when it is served (or not given)."""
    try:
        handlers.check_named(boundaries, code or None)
    except handlers.UnknownJurisdiction as unknown:
        return errors(fmt, 404, str(unknown))
    return None


def service_requests(fmt: Format, requests: list[dict[str, object]]) -> Response:
    return render(fmt, requests, root="service_requests", item="request")


router = APIRouter(prefix=PREFIX, tags=["Open311 GeoReport v2"])


@router.get("/discovery.{fmt}", responses=schemas.open311(schemas.DiscoveryOut))
async def discovery(fmt: Format, boundaries: BoundariesDep, settings: SettingsDep) -> Response:
    """Where this GeoReport v2 endpoint is and what it speaks."""
    return render(
        fmt,
        {
            "changeset": "2026-11-27T00:00:00+01:00",
            "contact": settings.contact,
            "key_service": settings.key_service,
            "endpoints": [
                {
                    "specification": "http://wiki.open311.org/GeoReport_v2",
                    "url": f"{settings.public_base_url}{PREFIX}",
                    "changeset": "2026-11-27T00:00:00+01:00",
                    "type": settings.endpoint_type,
                    "formats": ["text/xml", "application/json"],
                }
            ],
            # This endpoint serves several jurisdictions: requests may name theirs in
            # jurisdiction_id (without it, the one covering the place is chosen).
            "jurisdictions": [
                {"jurisdiction_id": j.code, "name": j.name} for j in boundaries.all()
            ],
        },
        root="discovery",
        item="endpoint",
    )


@router.get("/services.{fmt}", responses=schemas.open311(schemas.ServiceOut, 404, many=True))
async def list_services(
    fmt: Format, boundaries: BoundariesDep, jurisdiction_id: str | None = None
) -> Response:
    """The categories a report can be filed under (German names; English in keywords);
    with ``jurisdiction_id``, without those that jurisdiction switched off."""
    if refusal := unknown_jurisdiction(boundaries, fmt, jurisdiction_id):
        return refusal
    return render(
        fmt,
        [
            {
                "service_code": c.code,
                "service_name": c.name_de,
                "description": f"{c.description_de} / {c.name_en}: {c.description_en}",
                "metadata": bool(definition(c.code) and definition(c.code).attributes),  # type: ignore[union-attr]
                "type": "realtime",
                "keywords": c.name_en,
                "group": c.group,
            }
            for c in handlers.offered_categories(boundaries, jurisdiction_id or None)
        ],
        root="services",
        item="service",
    )


@router.get(
    "/services/{service_code}.{fmt}",
    responses=schemas.open311(schemas.ServiceDefinitionOut, 404),
)
async def service_definition(
    service_code: str, fmt: Format, boundaries: BoundariesDep, jurisdiction_id: str | None = None
) -> Response:
    """The extra questions of one category (its attributes)."""
    if refusal := unknown_jurisdiction(boundaries, fmt, jurisdiction_id):
        return refusal
    found = definition(service_code)
    offered = {c.code for c in handlers.offered_categories(boundaries, jurisdiction_id)}
    if found is None or service_code not in offered:
        return errors(fmt, 404, f"no service with service_code {service_code!r}")
    return render(
        fmt,
        {
            "service_code": found.service_code,
            "attributes": [
                {
                    "variable": a.variable,
                    "code": a.code,
                    "datatype": a.datatype,
                    "required": a.required,
                    "datatype_description": a.datatype_description or None,
                    "order": a.order,
                    "description": a.description,
                    **(
                        {"values": [{"key": k, "name": n} for k, n in a.values]} if a.values else {}
                    ),
                }
                for a in found.attributes
            ],
        },
        root="service_definition",
        item="attribute",
    )


@router.post(
    "/requests.{fmt}",
    status_code=201,
    responses=schemas.open311(
        schemas.RequestCreatedOut, 400, 403, 404, 415, 429, 503, many=True, status=201
    )
    | {
        200: schemas.open311(schemas.RequestCreatedOut, many=True)[200]
        | {
            "description": "A retry with an Idempotency-Key already used: the request "
            "created the first time (header Idempotent-Replayed: true)"
        }
    },
    openapi_extra=schemas.open311_request_body(),
)
async def create_request(
    fmt: Format,
    request: Request,
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> Response:
    """Submit a report: form-encoded, as the spec prescribes. GeoReport v2 knows no retry
    safety; a client that sends an ``Idempotency-Key`` (as for POST /api/v1/reports) gets
    the request created the first time when it retries with the same key and form."""
    # The parts read at once rather than as dependencies: each one FastAPI resolves costs
    # more CPU than the attribute read it stands for, on the busiest route.
    parts = components_of(request)
    settings, boundaries, limits = parts.settings, parts.boundaries, parts.limits
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORM_TYPES:
        # Without this, a JSON body reads as an empty form and the client hears only that
        # its api_key is missing.
        return errors(
            fmt,
            415,
            "send the report as application/x-www-form-urlencoded or multipart/form-data "
            f"(got {content_type or 'no Content-Type'}); JSON goes to POST /api/v1/reports",
        )
    try:
        # Files are read only to be refused below, with a pointer to where they belong.
        raw = await read_form(request, max_files=MAX_PHOTOS)
    except TooLarge as refused:
        return errors(fmt, 400, str(refused))
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    if form.get("api_key", "") not in {key.get_secret_value() for key in settings.api_keys}:
        return errors(fmt, 403, "api_key is missing or not valid")
    if wait := limits.admit_address(request) or limits.admit_email(form.get("email")):
        limited = errors(
            fmt,
            429,
            f"too many requests from here or for this e-mail address: try again in {wait} seconds",
        )
        limited.headers["Retry-After"] = str(wait)
        return limited
    if files := sorted({key for key, value in raw.multi_items() if not isinstance(value, str)}):
        # GeoReport v2 takes a photo as media_url; a dropped file would be a silent loss.
        return errors(
            fmt,
            400,
            f"file uploads ({', '.join(files)}) are not taken here: send media_url, or "
            "use POST /api/v1/reports with files named photos",
        )
    jurisdiction_id = form.get("jurisdiction_id", "").strip() or None
    if refusal := unknown_jurisdiction(boundaries, fmt, jurisdiction_id):
        return refusal
    service_code = form.get("service_code", "").strip()
    if service_code and service_code not in CATEGORIES_BY_CODE:
        # GeoReport v2: "404 - service_code or service_request_id not found".
        return errors(
            fmt,
            404,
            f"no service with service_code {service_code!r}: services.{fmt} lists them",
        )
    attributes: dict[str, list[str]] = {}
    for key, value in raw.multi_items():
        match = ATTRIBUTE_FIELD.match(key)
        if match and isinstance(value, str):
            attributes.setdefault(match.group(1), []).append(value)
    problems: list[str] = []
    lat = _parse_float(form, "lat", problems)
    long = _parse_float(form, "long", problems)
    address = form.get("address_string", "").strip() or None
    if not problems:
        try:
            lat, long = await handlers.locate(parts.geocoder, lat, long, address)
        except handlers.AddressNotLocated as not_located:
            problems += not_located.problems
        except GeocoderUnavailable:
            log.warning("geocoder unavailable for %r", address, exc_info=True)
            return errors(
                fmt,
                503,
                "the address cannot be located right now: try again later or send lat and long",
            )
    email = form.get("email", "").strip()
    if email:
        problems += email_problems(email)
    if problems:
        problems += find_problems(
            service_code,
            lat,
            long,
            form.get("description"),
            check_location=False,
            attributes=attributes,
        )
        return errors(fmt, 400, *problems)
    contact = (
        Contact(
            email=email,
            first_name=form.get("first_name") or None,
            last_name=form.get("last_name") or None,
            phone=form.get("phone") or None,
            locale=form.get("locale", "de"),
        )
        if email
        else None
    )
    try:
        report, created = await handlers.accept_submission(
            parts.writer,
            parts.uows,
            boundaries,
            parts.tokens,
            handlers.Submission(
                jurisdiction=jurisdiction_id,
                default_jurisdiction=settings.jurisdiction,
                service_code=service_code,
                lat=lat,
                long=long,
                description=form.get("description"),
                contact=contact,
                address=address,
                media_url=form.get("media_url") or None,
                attributes=attributes,
                service_levels=settings.service_level_days,
            ),
            idempotency_key or None,
        )
    except handlers.UnknownJurisdiction as unknown:
        return errors(fmt, 404, str(unknown))
    except InvalidReport as invalid:
        return errors(fmt, 400, *invalid.problems)
    except handlers.IdempotencyConflict as conflict:
        return errors(fmt, 400, str(conflict))
    # The id alone: every service is realtime, and GeoReport v2 answers the id or a token
    # (for requests that get an id only later), not both.
    answer = render(
        fmt,
        [{"service_request_id": str(report.id), "service_notice": None, "account_id": None}],
        root="service_requests",
        item="request",
        status_code=201 if created else 200,
    )
    if not created:
        answer.headers["Idempotent-Replayed"] = "true"
    return answer


@router.get(
    "/requests.{fmt}", responses=schemas.open311(schemas.ServiceRequestOut, 400, 404, many=True)
)
async def list_requests(
    fmt: Format,
    uows: UnitsOfWorkDep,
    boundaries: BoundariesDep,
    settings: SettingsDep,
    tz: TimezoneDep,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
    jurisdiction_id: str | None = None,
) -> Response:
    """Reports by id (a comma list, overriding the other filters), category, time span
    (at most 90 days; the last 90 days by default) and status; newest first, 1,000 at most."""
    problems: list[str] = []
    ids: list[UUID] = []
    for raw_id in (service_request_id or "").split(","):
        if raw_id.strip():
            try:
                ids.append(UUID(raw_id.strip()))
            except ValueError:
                problems.append(f"service_request_id {raw_id.strip()!r} is not a valid id")
    start = _parse_datetime(start_date, "start_date", problems)
    end = _parse_datetime(end_date, "end_date", problems)
    statuses: list[ReportStatus] = []
    if status:
        for s in status.split(","):
            if s in STATUSES_NAMED:
                statuses += STATUSES_NAMED[s]
            else:
                problems.append(f"status must be open or closed, got {s!r}")
    if not ids:
        if start and end and end - start > MAX_SPAN:
            problems.append("start_date and end_date may be at most 90 days apart")
        if start and end and end < start:
            problems.append("end_date is before start_date")
        if start is None and end is None:
            end = datetime.now(tz)
            start = end - MAX_SPAN
        elif start is None and end is not None:
            start = end - MAX_SPAN
        elif end is None and start is not None:
            end = start + MAX_SPAN
    if refusal := unknown_jurisdiction(boundaries, fmt, jurisdiction_id):
        return refusal
    if problems:
        return errors(fmt, 400, *problems)
    found = await handlers.find_reports(
        uows,
        ReportSearch(
            ids=ids,
            service_codes=[c.strip() for c in (service_code or "").split(",") if c.strip()],
            start=start,
            end=end,
            statuses=statuses,
            jurisdiction=jurisdiction_id or None,
        ),
    )
    return service_requests(
        fmt,
        [representations.service_request(r, settings.public_base_url, tz) for r in found],
    )


@router.get(
    "/requests/{service_request_id}.{fmt}",
    responses=schemas.open311(schemas.ServiceRequestOut, 404, many=True),
)
async def get_request(
    service_request_id: str,
    fmt: Format,
    uows: UnitsOfWorkDep,
    boundaries: BoundariesDep,
    settings: SettingsDep,
    tz: TimezoneDep,
    jurisdiction_id: str | None = None,
) -> Response:
    """One report's public status."""
    if refusal := unknown_jurisdiction(boundaries, fmt, jurisdiction_id):
        return refusal
    try:
        report_id = UUID(service_request_id)
    except ValueError:
        return errors(fmt, 404, f"no service request {service_request_id!r}")
    report = await handlers.get_report(uows, report_id)
    if report is None or (jurisdiction_id and report.jurisdiction != jurisdiction_id):
        return errors(fmt, 404, f"no service request {service_request_id!r}")
    return service_requests(
        fmt, [representations.service_request(report, settings.public_base_url, tz)]
    )


@router.get("/tokens/{token}.{fmt}", responses=schemas.open311(schemas.TokenOut, 404, many=True))
async def get_token(token: str, fmt: Format, uows: UnitsOfWorkDep) -> Response:
    """The service_request_id behind a token."""
    report_id = await handlers.report_id_for_token(uows, token)
    if report_id is None:
        return errors(fmt, 404, f"no service request for token {token!r}")
    return service_requests(fmt, [{"service_request_id": str(report_id), "token": token}])
