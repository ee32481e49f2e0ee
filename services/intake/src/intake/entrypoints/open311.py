"""Open311 GeoReport v2 under ``/open311/v2/``: what city apps and civic tools speak."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from intake import handlers
from intake.adapters.db import SubmissionWriter
from intake.domain import Contact, InvalidReport, Report, find_problems
from intake.settings import IntakeSettings
from mm_shared.categories import CATEGORIES, CATEGORIES_BY_CODE
from mm_shared.outbox import Outbox


def errors(status: int, *descriptions: str) -> JSONResponse:
    """Open311 errors: always a list of ``{code, description}``, one per problem."""
    return JSONResponse(
        [{"code": status, "description": d} for d in descriptions], status_code=status
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _public_status_note(report: Report) -> str | None:
    notes = [c.public_note for c in report.history if c.public_note]
    if report.status.is_closed:
        return f"{report.status.value}: {notes[-1]}" if notes else report.status.value
    return notes[-1] if notes else None


def report_to_open311(report: Report) -> dict[str, Any]:
    category = CATEGORIES_BY_CODE.get(report.service_code)
    return {
        "service_request_id": str(report.id),
        "status": "closed" if report.status.is_closed else "open",
        "status_notes": _public_status_note(report),
        "service_name": category.name_de if category else None,
        "service_code": report.service_code,
        "description": report.description,
        "agency_responsible": report.office.name if report.office else None,
        "service_notice": None,
        "requested_datetime": _iso(report.requested_at),
        "updated_datetime": _iso(report.updated_at),
        "expected_datetime": None,
        "address": None,
        "zipcode": None,
        "lat": report.lat,
        "long": report.long,
        "media_url": None,
    }


def _float_field(form: dict[str, str], name: str, problems: list[str]) -> float | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name} must be a number in WGS84 degrees, got {raw!r}")
        return None
    return value


def router(outbox: Outbox, writer: SubmissionWriter, settings: IntakeSettings) -> APIRouter:
    api = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"])

    @api.get("/services.json")
    async def list_services() -> list[dict[str, Any]]:
        """The service catalogue (categories a report can be filed under)."""
        return [
            {
                "service_code": c.code,
                "service_name": c.name_de,
                "description": c.description_de,
                "metadata": False,
                "type": "realtime",
                "keywords": c.name_en,
                "group": c.group,
            }
            for c in CATEGORIES
        ]

    @api.post("/requests.json", status_code=201)
    async def create_request(request: Request) -> JSONResponse:
        """Submit a report (form-encoded, as the GeoReport v2 spec prescribes)."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if form.get("api_key", "") not in settings.api_keys:
            return errors(403, "api_key is missing or not valid")
        problems: list[str] = []
        lat = _float_field(form, "lat", problems)
        long = _float_field(form, "long", problems)
        service_code = form.get("service_code", "").strip()
        email = form.get("email", "").strip()
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
        if email and ("@" not in email or len(email) > 254):
            problems.append("email is not a valid e-mail address")
        if problems:
            # A coordinate did not parse: still report every other problem in the same answer.
            problems += find_problems(
                service_code, lat, long, form.get("description"), check_location=False
            )
            return errors(400, *problems)
        try:
            report = await handlers.submit_report(
                writer,
                jurisdiction=settings.jurisdiction,
                service_code=service_code,
                lat=lat,
                long=long,
                description=form.get("description"),
                contact=contact,
            )
        except InvalidReport as invalid:
            return errors(400, *invalid.problems)
        return JSONResponse(
            [{"service_request_id": str(report.id), "service_notice": None, "account_id": None}],
            status_code=201,
        )

    @api.get("/requests/{service_request_id}.json")
    async def get_request(service_request_id: str) -> JSONResponse:
        """One report's public status."""
        try:
            report_id = UUID(service_request_id)
        except ValueError:
            return errors(404, f"no service request {service_request_id!r}")
        report = await handlers.get_report(outbox, report_id)
        if report is None:
            return errors(404, f"no service request {service_request_id!r}")
        return JSONResponse([report_to_open311(report)])

    return api
