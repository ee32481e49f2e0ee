"""A report as each of intake's APIs shows it: the city app's public one, the offices' ticket
and Open311's service request. The parts they share (the category's name, the office, the
place, the times, the photo links) are built once here, so a field added to a report is added
to every representation in one place. The models documenting them are in ``schemas``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from intake.domain import Photo, Report
from mm_shared.categories import CATEGORIES_BY_CODE, Category
from mm_shared.events import utcnow

#: The times of a report every representation shows, by their name without a suffix (the
#: native and staff APIs add ``_at``, Open311 ``_datetime``).
TIMES = ("requested", "updated", "expected")


def iso(value: datetime | None) -> str | None:
    """A time as the native and staff APIs write it (ISO 8601, to the second, in UTC)."""
    return value.isoformat(timespec="seconds") if value else None


def tracking_url(public_base_url: str, report_id: UUID) -> str:
    """A report's public address: its JSON for apps, its page for browsers."""
    return f"{public_base_url}/api/v1/reports/{report_id}"


def photo_links(public_base_url: str, photo: Photo) -> dict[str, str]:
    """Where a stored photo is served (see ``GET /api/v1/photos/{digest}/{variant}``)."""
    base = f"{public_base_url}/api/v1/photos/{photo.digest}"
    return {
        "url": f"{base}/display",
        "original_url": f"{base}/original",
        "thumbnail_url": f"{base}/thumbnail",
    }


def _category(report: Report) -> Category | None:
    return CATEGORIES_BY_CODE.get(report.service_code)


def _times(
    report: Report, suffix: str, written: Callable[[datetime | None], str | None] = iso
) -> dict[str, str | None]:
    return {f"{name}{suffix}": written(getattr(report, f"{name}_at")) for name in TIMES}


def _report(report: Report) -> dict[str, Any]:
    """What the native and the staff representation share."""
    return {
        "id": str(report.id),
        "jurisdiction": report.jurisdiction,
        "service_code": report.service_code,
        "status": report.status.value,
        "office": report.office.model_dump() if report.office else None,
        "areas": [a.model_dump() for a in report.areas],
        "lat": report.lat,
        "long": report.long,
        "address": report.address,
        "description": report.description,
        **_times(report, "_at"),
    }


# --- the city app's API (schemas.PublicReportOut and the answers derived from it) ---


def public_report(report: Report, public_base_url: str) -> dict[str, Any]:
    """A report's public status: no personal data, no internal notes."""
    category = _category(report)
    return {
        **_report(report),
        "tracking_url": tracking_url(public_base_url, report.id),
        "service_name": {"de": category.name_de, "en": category.name_en} if category else None,
        # As Open311 names it, for clients that know that name.
        "agency_responsible": report.office.name if report.office else None,
        "photos": [photo_links(public_base_url, p) for p in report.photos],
        "history": [
            {"status": c.status.value, "at": iso(c.changed_at), "note": c.public_note}
            for c in report.history
        ],
    }


def created_report(report: Report, public_base_url: str, reporter_token: str) -> dict[str, Any]:
    """The answer to a submission (schemas.ReportCreatedOut)."""
    return {
        "id": str(report.id),
        "tracking_url": tracking_url(public_base_url, report.id),
        "status": report.status.value,
        "photos": [photo_links(public_base_url, p) for p in report.photos],
        # The reporter's own handle (for "not fixed" and erasing their contact data).
        "reporter_token": reporter_token,
    }


def possible_duplicate(report: Report, distance_m: float, public_base_url: str) -> dict[str, Any]:
    """An open report close to a submission (schemas.DuplicateOut)."""
    found = public_report(report, public_base_url)
    del found["history"]
    return {
        **found,
        "distance_m": round(distance_m, 1),
        "follow_url": f"{found['tracking_url']}/followers",
    }


def report_feature(report: Report, public_base_url: str) -> dict[str, Any]:
    """A report on the map, as a GeoJSON feature (schemas.ReportFeature)."""
    properties = public_report(report, public_base_url)
    for placed_by_geometry in ("lat", "long", "history"):
        del properties[placed_by_geometry]
    return {
        "type": "Feature",
        "id": str(report.id),
        "geometry": {"type": "Point", "coordinates": [report.long, report.lat]},
        "properties": properties,
    }


# --- the offices' API (schemas.TicketOut, TicketDetailOut, NearbyTicketOut) ---


def ticket(
    report: Report, public_base_url: str, *, detail: bool = False, now: datetime | None = None
) -> dict[str, Any]:
    """A ticket in the queue; with ``detail`` also its attributes, photos and full history,
    internal notes included."""
    category = _category(report)
    summary: dict[str, Any] = {
        **_report(report),
        "service_name": category.name_de if category else None,
        "duplicate_of": str(report.duplicate_of) if report.duplicate_of else None,
        "overdue": report.is_overdue(now or utcnow()),
    }
    if detail:
        summary["attributes"] = report.attributes
        summary["photos"] = [
            {**photo_links(public_base_url, p), "width": p.width, "height": p.height}
            for p in report.photos
        ]
        summary["history"] = [
            {
                "status": c.status.value,
                "previous_status": c.previous_status.value if c.previous_status else None,
                "at": iso(c.changed_at),
                "by": c.changed_by,
                "public_note": c.public_note,
                "internal_note": c.internal_note,
            }
            for c in report.history
        ]
    return summary


def nearby_ticket(report: Report, distance_m: float, public_base_url: str) -> dict[str, Any]:
    return {**ticket(report, public_base_url), "distance_m": round(distance_m, 1)}


# --- Open311 GeoReport v2 (schemas.ServiceRequestOut) ---


def status_notes(report: Report) -> str | None:
    """Open311 knows only open and closed: the notes say which kind of closed, and why."""
    notes = [c.public_note for c in report.history if c.public_note]
    if report.status.is_closed:
        return f"{report.status.value}: {notes[-1]}" if notes else report.status.value
    return notes[-1] if notes else None


def service_request(report: Report, public_base_url: str, tz: ZoneInfo) -> dict[str, Any]:
    """A report as GeoReport v2's service request, times in the city's time zone. Its fields
    keep the specification's order (the XML answer lists them so)."""
    category = _category(report)

    def local(value: datetime | None) -> str | None:
        return value.astimezone(tz).isoformat(timespec="seconds") if value else None

    media = (
        photo_links(public_base_url, report.photos[0])["url"] if report.photos else report.media_url
    )
    return {
        "service_request_id": str(report.id),
        "status": "closed" if report.status.is_closed else "open",
        "status_notes": status_notes(report),
        "service_name": category.name_de if category else None,
        "service_code": report.service_code,
        "description": report.description,
        "agency_responsible": report.office.name if report.office else None,
        "service_notice": None,
        **_times(report, "_datetime", local),
        "address": report.address,
        # GeoReport v2 lists it in every answer; no city address register is linked (yet).
        "address_id": None,
        "zipcode": None,
        "lat": report.lat,
        "long": report.long,
        "media_url": media,
    }
