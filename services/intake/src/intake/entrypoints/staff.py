"""The offices' API under ``/api/v1/staff/``: bearer tokens, each staff member sees and works
only their own offices' tickets (an admin sees all). Someone else's ticket is a 404, exactly
like a ticket that does not exist.

(No ``from __future__ import annotations`` here: FastAPI must see the ``Staff`` dependency
alias, defined inside :func:`router`, as an object, not as a string.)"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from intake import handlers
from intake.adapters.boundaries import OfficeDirectory
from intake.adapters.db import unit_of_work
from intake.adapters.oidc import JwtAuthenticator
from intake.adapters.staff import StaffMember
from intake.domain import InvalidReport, Report, TransitionNotAllowed
from intake.entrypoints.api import photo_links
from intake.settings import IntakeSettings
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import ReportStatus
from mm_shared.outbox import Outbox
from mm_shared.service import Text, problem


class Unauthorized(Exception):
    pass


class NoteIn(BaseModel):
    public_note: Text | None = Field(default=None, max_length=4000)
    internal_note: Text | None = Field(default=None, max_length=4000)


class TransitionIn(BaseModel):
    status: ReportStatus
    public_note: Text | None = Field(default=None, max_length=4000)
    internal_note: Text | None = Field(default=None, max_length=4000)
    #: With ``assigned``: the office to hand the ticket to.
    office_code: Text | None = None
    #: With ``duplicate``: the report this one is merged into.
    duplicate_of: UUID | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def ticket(report: Report, settings: IntakeSettings, *, detail: bool = False) -> dict[str, Any]:
    category = CATEGORIES_BY_CODE.get(report.service_code)
    summary: dict[str, Any] = {
        "id": str(report.id),
        "status": report.status.value,
        "service_code": report.service_code,
        "service_name": category.name_de if category else None,
        "office": report.office.model_dump() if report.office else None,
        "areas": [a.model_dump() for a in report.areas],
        "lat": report.lat,
        "long": report.long,
        "address": report.address,
        "description": report.description,
        "requested_at": _iso(report.requested_at),
        "updated_at": _iso(report.updated_at),
        "duplicate_of": str(report.duplicate_of) if report.duplicate_of else None,
    }
    if detail:
        summary["attributes"] = report.attributes
        summary["photos"] = [
            {**photo_links(settings.public_base_url, p), "width": p.width, "height": p.height}
            for p in report.photos
        ]
        summary["history"] = [
            {
                "status": c.status.value,
                "previous_status": c.previous_status.value if c.previous_status else None,
                "at": _iso(c.changed_at),
                "by": c.changed_by,
                "public_note": c.public_note,
                "internal_note": c.internal_note,
            }
            for c in report.history
        ]
    return summary


def router(
    outbox: Outbox,
    directory: OfficeDirectory,
    settings: IntakeSettings,
    oidc: JwtAuthenticator | None = None,
) -> APIRouter:
    async def current_staff(authorization: str | None = Header(default=None)) -> StaffMember:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized
        if oidc is not None and oidc.looks_like_jwt(token):
            member = await oidc.authenticate(token)
        else:
            member = await handlers.authenticate(outbox, token)
        if member is None:
            raise Unauthorized
        return member

    Staff = Annotated[StaffMember, Depends(current_staff)]  # noqa: N806 - a type alias
    api = APIRouter(prefix="/api/v1/staff", tags=["office staff"])

    @api.get("/tickets")
    async def list_tickets(
        member: Staff,
        status: str | None = Query(
            default=None, description="comma list, e.g. assigned,in_progress"
        ),
        service_code: str | None = Query(default=None, description="comma list"),
        area: str | None = Query(default=None, description="area code or name, e.g. 00 or Zentrum"),
        older_than_days: float | None = Query(default=None, ge=0, le=36_500),
        office: str | None = Query(default=None, description="one of my offices"),
        sort: Literal[
            "requested_at", "-requested_at", "updated_at", "-updated_at"
        ] = "-requested_at",
        page: int = Query(default=1, ge=1, le=1_000_000),
        page_size: int = Query(default=50, ge=1, le=200),
    ) -> JSONResponse:
        """My offices' tickets, filtered, sorted and paginated."""
        try:
            statuses = [ReportStatus(s) for s in (status or "").split(",") if s]
        except ValueError:
            return problem(
                400, ("invalid_status", "status", f"statuses are {', '.join(ReportStatus)}")
            )
        offices: frozenset[str] | None = None if member.is_admin else member.offices
        if office:
            if not member.may_handle(office):
                return problem(403, ("not_your_office", "office", f"you do not work for {office}"))
            offices = frozenset({office})
        older_than = (
            datetime.now(UTC) - timedelta(days=older_than_days) if older_than_days else None
        )
        async with unit_of_work(outbox) as uow:
            found, total = await uow.reports.for_offices(
                offices,
                statuses=statuses,
                service_codes=[c for c in (service_code or "").split(",") if c],
                area=area,
                older_than=older_than,
                sort=sort,
                offset=(page - 1) * page_size,
                limit=page_size,
            )
        return JSONResponse(
            {
                "items": [ticket(r, settings) for r in found],
                "page": page,
                "page_size": page_size,
                "total": total,
            }
        )

    @api.post("/tickets/{ticket_id}/notes")
    async def note(ticket_id: UUID, body: NoteIn, member: Staff) -> JSONResponse:
        """A note without a change of status: ``internal_note`` for colleagues, ``public_note``
        for the reporter, who is told as of a change."""
        try:
            report = await handlers.note_ticket(
                outbox,
                member,
                ticket_id,
                public_note=body.public_note,
                internal_note=body.internal_note,
            )
        except handlers.TicketNotFound:
            return problem(404, ("not_found", "ticket_id", f"no ticket {ticket_id} for you"))
        except InvalidReport as invalid:
            return problem(422, *[("invalid_note", None, p) for p in invalid.problems])
        return JSONResponse(ticket(report, settings, detail=True))

    @api.get("/offices")
    async def list_offices(_: Staff) -> JSONResponse:
        """The offices a ticket can be handed to (``assigned`` with their ``office_code``)."""
        offices = directory.offices(settings.jurisdiction)
        if offices is None:
            return problem(
                503, ("unavailable", None, "the office directory has not arrived yet: try again")
            )
        return JSONResponse([{"code": c, "name": n} for c, n in sorted(offices.items())])

    @api.get("/tickets/{ticket_id}")
    async def get_ticket(ticket_id: UUID, member: Staff) -> JSONResponse:
        """A ticket with photos and its full history, internal notes included."""
        try:
            report = await handlers.staff_ticket(outbox, member, ticket_id)
        except handlers.TicketNotFound:
            return problem(404, ("not_found", "ticket_id", f"no ticket {ticket_id} for you"))
        return JSONResponse(ticket(report, settings, detail=True))

    @api.post("/tickets/{ticket_id}/transitions")
    async def transition(ticket_id: UUID, body: TransitionIn, member: Staff) -> JSONResponse:
        """Move a ticket on: ``in_progress``, ``resolved``, ``rejected`` (with a public_note
        saying why), ``duplicate`` (with duplicate_of), back to ``in_progress`` (reopen), or
        ``assigned`` with an office_code to hand it to another office."""
        try:
            report = await handlers.change_ticket(
                outbox,
                member,
                ticket_id,
                body.status,
                public_note=body.public_note,
                internal_note=body.internal_note,
                office_code=body.office_code,
                duplicate_of=body.duplicate_of,
                offices=directory.offices(settings.jurisdiction),
            )
        except handlers.TicketNotFound:
            return problem(404, ("not_found", "ticket_id", f"no ticket {ticket_id} for you"))
        except TransitionNotAllowed as refused:
            return problem(409, ("transition_not_allowed", "status", str(refused)))
        except InvalidReport as invalid:
            return problem(422, *[("invalid_transition", None, p) for p in invalid.problems])
        if report is None:
            return JSONResponse(
                {"id": str(ticket_id), "reassignment_requested": body.office_code}, status_code=202
            )
        async with unit_of_work(outbox) as uow:
            fresh = await uow.reports.get(report.id)
        assert fresh is not None
        return JSONResponse(ticket(fresh, settings, detail=True))

    return api
