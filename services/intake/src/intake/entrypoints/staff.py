"""The offices' API under ``/api/v1/staff/``: bearer tokens, each staff member sees and works
only their own offices' tickets (an admin sees all). Someone else's ticket is a 404, exactly
like a ticket that does not exist."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from intake import handlers
from intake.adapters.console import TitleTaken, queue_export, stream_rows
from intake.adapters.staff import TokenExpired
from intake.domain import (
    CannedResponse,
    InvalidReport,
    StaffMember,
    TransitionNotAllowed,
    distance_m,
)
from intake.entrypoints import representations, schemas
from intake.entrypoints.dependencies import (
    BoundariesDep,
    DirectoryDep,
    OidcDep,
    OutboxDep,
    SettingsDep,
    TimezoneDep,
    UnitsOfWorkDep,
)
from intake.entrypoints.formats import REPORT_COLUMNS, csv_response, report_columns
from intake.entrypoints.representations import iso
from intake.ports import TicketFilter, UnitOfWorkFactory
from intake.settings import IntakeSettings
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import ReportStatus, utcnow
from mm_shared.service import Day, RowId, Text, problem


class Unauthorized(Exception):
    """No valid staff credential; the message says what the member can do about it."""

    def __init__(self, why: str = "a valid staff bearer token is required") -> None:
        super().__init__(why)


class Refused(Exception):
    """A request refused with ``response`` (raised from dependencies)."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


class CannedResponseIn(BaseModel):
    office_code: Text = Field(max_length=100)
    #: Where the office is; by default the member's own jurisdiction.
    jurisdiction: Text | None = Field(default=None, max_length=100)
    title: Text = Field(max_length=200)
    body: Text = Field(max_length=4000)


SortKey = Literal[
    "requested_at",
    "-requested_at",
    "updated_at",
    "-updated_at",
    "expected_at",
    "-expected_at",
    "status",
    "-status",
    "service_code",
    "-service_code",
]


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


async def current_staff(
    uows: UnitsOfWorkDep, oidc: OidcDep, authorization: str | None = Header(default=None)
) -> StaffMember:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized
    if oidc is not None and oidc.looks_like_jwt(token):
        member = await oidc.authenticate(token)
    else:
        try:
            member = await handlers.authenticate(uows, token)
        except TokenExpired as expired:
            raise Unauthorized(
                f"this staff token {expired}: ask for a new one (intake staff-token)"
            ) from None
    if member is None:
        raise Unauthorized
    return member


#: The staff member a request is from (401 without a valid credential).
Staff = Annotated[StaffMember, Depends(current_staff)]


def scope(member: StaffMember, jurisdiction: str | None) -> str | None:
    """The jurisdiction a request is about: the member's own (asking for another is a 403),
    or, for a deployment-wide admin, the one asked for (None: all)."""
    if member.jurisdiction is None:
        return jurisdiction or None
    if jurisdiction and jurisdiction != member.jurisdiction:
        raise Refused(
            problem(
                403,
                (
                    "not_your_jurisdiction",
                    "jurisdiction",
                    f"you work for {member.jurisdiction}, not {jurisdiction}",
                ),
            )
        )
    return member.jurisdiction


async def queue_filter(
    member: Staff,
    settings: SettingsDep,
    status: str | None = Query(default=None, description="comma list, e.g. assigned,in_progress"),
    service_code: str | None = Query(default=None, description="comma list"),
    area: str | None = Query(
        default=None, max_length=200, description="area code or name, e.g. 00 or Zentrum"
    ),
    older_than_days: float | None = Query(default=None, ge=0, le=36_500),
    newer_than_days: float | None = Query(default=None, ge=0, le=36_500),
    overdue: bool | None = Query(
        default=None, description="true: open and past the category's service level"
    ),
    q: str | None = Query(
        default=None, max_length=200, description="start of an id, or words in the text"
    ),
    office: str | None = Query(default=None, description="one of my offices"),
    jurisdiction: str | None = Query(
        default=None, max_length=100, description="a deployment-wide admin: one jurisdiction"
    ),
) -> TicketFilter:
    """The queue's filter, shared by the list, its CSV export and the console's map."""
    try:
        statuses = [ReportStatus(s) for s in (status or "").split(",") if s]
    except ValueError:
        raise Refused(
            problem(400, ("invalid_status", "status", f"statuses are {', '.join(ReportStatus)}"))
        ) from None
    within = scope(member, jurisdiction)
    offices = member.seen_offices
    if office:
        if not member.may_handle(within or settings.jurisdiction, office):
            raise Refused(
                problem(403, ("not_your_office", "office", f"you do not work for {office}"))
            )
        offices = frozenset({office})
    if q is not None and "\x00" in q:
        raise Refused(problem(422, ("invalid_field", "q", "q contains a NUL character")))
    now = utcnow()
    return TicketFilter(
        offices,
        statuses=statuses,
        service_codes=[c for c in (service_code or "").split(",") if c],
        area=area or None,
        older_than=now - timedelta(days=older_than_days) if older_than_days else None,
        newer_than=now - timedelta(days=newer_than_days) if newer_than_days else None,
        overdue=overdue,
        q=q,
        now=now,
        jurisdiction=within,
    )


Filter = Annotated[TicketFilter, Depends(queue_filter)]


def no_ticket(ticket_id: UUID) -> JSONResponse:
    return problem(404, ("not_found", "ticket_id", f"no ticket {ticket_id} for you"))


def no_canned_response(response_id: int | None) -> JSONResponse:
    return problem(404, ("not_found", "response_id", f"no canned response {response_id}"))


router = APIRouter(prefix="/api/v1/staff", tags=["office staff"])


@router.get("/me", response_model=schemas.MeOut, responses=schemas.refusals(401))
async def me(member: Staff, directory: DirectoryDep, settings: SettingsDep) -> JSONResponse:
    """Who the token belongs to: the sign-in check of the console."""
    names = directory.offices(member.jurisdiction or settings.jurisdiction) or {}
    return JSONResponse(
        {
            "name": member.name,
            "jurisdiction": member.jurisdiction,
            "offices": [{"code": c, "name": names.get(c)} for c in sorted(member.offices)],
            "admin": member.is_admin,
        }
    )


@router.get(
    "/tickets",
    response_model=schemas.TicketPageOut,
    responses=schemas.refusals(400, 401, 403, s400="An unknown status"),
)
async def list_tickets(
    found: Filter,
    uows: UnitsOfWorkDep,
    settings: SettingsDep,
    sort: SortKey = "-requested_at",
    page: int = Query(default=1, ge=1, le=1_000_000),
    page_size: int = Query(default=50, ge=1, le=1000),
) -> JSONResponse:
    """My offices' tickets, filtered, sorted and paginated; ``counts`` per status under the
    same filter apart from the status."""
    tickets, counts = await handlers.queue(
        uows, found, sort=sort, offset=(page - 1) * page_size, limit=page_size
    )
    by_status = {s.value: counts.get(s.value, 0) for s in ReportStatus}
    chosen = [s.value for s in found.statuses] or list(by_status)
    return JSONResponse(
        {
            "items": [
                representations.ticket(r, settings.public_base_url, now=found.now) for r in tickets
            ],
            "page": page,
            "page_size": page_size,
            "total": sum(by_status[s] for s in chosen),
            "counts": by_status,
        }
    )


QUEUE_COLUMNS = [
    *REPORT_COLUMNS,
    "office_code",
    "office_name",
    "address",
    "description",
    "requested_at",
    "updated_at",
    "expected_at",
    "overdue",
    "duplicate_of",
]


def _late(row: Any, now: datetime) -> bool:
    return (
        not ReportStatus(row.status).is_closed
        and row.expected_at is not None
        and row.expected_at < now
    )


@router.get(
    "/tickets.csv",
    response_class=Response,
    responses={
        **schemas.csv_answer("The filtered queue, CSV (UTF-8 with BOM)"),
        **schemas.refusals(400, 401, 403, s400="An unknown status"),
    },
)
async def export_tickets(
    found: Filter, outbox: OutboxDep, directory: DirectoryDep, sort: SortKey = "-requested_at"
) -> Response:
    """The filtered queue as CSV (UTF-8 with BOM, for spreadsheets), streamed."""

    def row(r: Any) -> list[object]:
        names = directory.offices(r.jurisdiction) or {}
        return [
            *report_columns(r),
            r.office_code or "",
            names.get(r.office_code, "") if r.office_code else "",
            r.address or "",
            r.description,
            iso(r.requested_at),
            iso(r.updated_at),
            iso(r.expected_at),
            "ja" if _late(r, found.now) else "nein",
            r.duplicate_of or "",
        ]

    return csv_response(
        "tickets.csv",
        QUEUE_COLUMNS,
        stream_rows(outbox.engine, queue_export(found, sort)),
        row,
    )


@router.get(
    "/tickets/{ticket_id}/nearby",
    response_model=list[schemas.NearbyTicketOut],
    responses=schemas.refusals(401, 404),
)
async def nearby(
    ticket_id: UUID,
    member: Staff,
    uows: UnitsOfWorkDep,
    settings: SettingsDep,
    radius_m: float = Query(default=150, gt=0, le=2000),
) -> JSONResponse:
    """Open reports of the same category near the ticket, nearest first: candidates to
    mark it a duplicate of."""
    try:
        this, found = await handlers.nearby_candidates(uows, member, ticket_id, radius_m)
    except handlers.TicketNotFound:
        return no_ticket(ticket_id)
    return JSONResponse(
        [
            representations.nearby_ticket(
                r, distance_m(this.lat, this.long, r.lat, r.long), settings.public_base_url
            )
            for r in found
        ]
    )


@router.get(
    "/statistics",
    response_model=schemas.StatisticsOut,
    responses=schemas.refusals(401, 403),
)
async def statistics(
    member: Staff,
    uows: UnitsOfWorkDep,
    settings: SettingsDep,
    tz: TimezoneDep,
    office: str | None = Query(default=None, description="one of my offices"),
    jurisdiction: str | None = Query(
        default=None, max_length=100, description="a deployment-wide admin: one jurisdiction"
    ),
    start: Day | None = Query(default=None, alias="from", description="first day"),
    end: Day | None = Query(default=None, alias="to", description="last day"),
) -> JSONResponse:
    """Reports per category, area and month; median hours to assignment and to closing;
    the share closed within the service level. My offices' (an admin: all)."""
    within = scope(member, jurisdiction)
    offices = member.seen_offices
    if office:
        if not member.may_handle(within or settings.jurisdiction, office):
            return problem(403, ("not_your_office", "office", f"you do not work for {office}"))
        offices = frozenset({office})
    if start and end and end < start:
        return problem(422, ("invalid_range", "to", "to must not be before from"))

    def midnight(day: date | None) -> datetime | None:
        return datetime.combine(day, time(), tz) if day else None

    found = await handlers.office_statistics(
        uows,
        within,
        offices,
        start=midnight(start),
        end=midnight(end + timedelta(days=1) if end else None),
        timezone=settings.timezone,
    )
    return JSONResponse(
        {
            "jurisdiction": within,
            "offices": sorted(offices) if offices is not None else None,
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
            "per_category": [
                {
                    "service_code": code,
                    "service_name": CATEGORIES_BY_CODE[code].name_de
                    if code in CATEGORIES_BY_CODE
                    else code,
                    "count": n,
                }
                for code, n in found.per_category
            ],
            "per_area": [
                {"level": level, "code": code, "name": name, "count": n}
                for level, code, name, n in found.per_area
            ],
            "per_month": [{"month": m, "count": n} for m, n in found.per_month],
            "median_hours_to_assignment": found.median_hours_to_assignment,
            "median_hours_to_closing": found.median_hours_to_closing,
            "closed": found.closed,
            "closed_within_service_level": found.closed_within_service_level,
            "share_closed_within_service_level": round(
                found.closed_within_service_level / found.closed, 4
            )
            if found.closed
            else None,
        }
    )


def _canned(c: CannedResponse) -> dict[str, Any]:
    return {
        "id": c.id,
        "jurisdiction": c.jurisdiction,
        "office_code": c.office_code,
        "title": c.title,
        "body": c.body,
        "updated_by": c.updated_by,
        "updated_at": iso(c.updated_at),
    }


@router.get(
    "/canned-responses",
    response_model=list[schemas.CannedResponseOut],
    responses=schemas.refusals(401),
)
async def list_canned(member: Staff, uows: UnitsOfWorkDep) -> JSONResponse:
    """My offices' canned responses ("Textbausteine")."""
    return JSONResponse([_canned(c) for c in await handlers.canned_responses(uows, member)])


async def _keep_canned(
    uows: UnitOfWorkFactory,
    settings: IntakeSettings,
    member: StaffMember,
    body: CannedResponseIn,
    response_id: int | None,
) -> JSONResponse:
    try:
        kept = await handlers.keep_canned_response(
            uows,
            member,
            jurisdiction=body.jurisdiction or member.jurisdiction or settings.jurisdiction,
            office_code=body.office_code,
            title=body.title,
            body=body.body,
            response_id=response_id,
        )
    except handlers.NotYourOffice:
        return problem(
            403, ("not_your_office", "office_code", f"you do not work for {body.office_code}")
        )
    except handlers.TicketNotFound:
        return no_canned_response(response_id)
    except TitleTaken:
        return problem(
            409, ("title_taken", "title", f"{body.office_code} already has {body.title!r}")
        )
    except InvalidReport as invalid:
        return problem(422, *[("invalid_canned_response", None, p) for p in invalid.problems])
    return JSONResponse(_canned(kept), status_code=201 if response_id is None else 200)


@router.post(
    "/canned-responses",
    status_code=201,
    response_model=schemas.CannedResponseOut,
    responses=schemas.refusals(401, 403, 409, s409="The office has a response of that title"),
)
async def add_canned(
    body: CannedResponseIn, member: Staff, uows: UnitsOfWorkDep, settings: SettingsDep
) -> JSONResponse:
    return await _keep_canned(uows, settings, member, body, None)


@router.put(
    "/canned-responses/{response_id}",
    response_model=schemas.CannedResponseOut,
    responses=schemas.refusals(401, 403, 404, 409, s409="The office has a response of that title"),
)
async def change_canned(
    response_id: RowId,
    body: CannedResponseIn,
    member: Staff,
    uows: UnitsOfWorkDep,
    settings: SettingsDep,
) -> JSONResponse:
    return await _keep_canned(uows, settings, member, body, response_id)


@router.delete(
    "/canned-responses/{response_id}",
    status_code=204,
    response_class=Response,
    responses=schemas.refusals(401, 404),
)
async def drop_canned(response_id: RowId, member: Staff, uows: UnitsOfWorkDep) -> Response:
    try:
        await handlers.drop_canned_response(uows, member, response_id)
    except handlers.TicketNotFound:
        return no_canned_response(response_id)
    return Response(status_code=204)


@router.post(
    "/tickets/{ticket_id}/notes",
    response_model=schemas.TicketDetailOut,
    responses=schemas.refusals(401, 404),
)
async def note(
    ticket_id: UUID, body: NoteIn, member: Staff, uows: UnitsOfWorkDep, settings: SettingsDep
) -> JSONResponse:
    """A note without a change of status: ``internal_note`` for colleagues, ``public_note``
    for the reporter, who is told as of a change."""
    try:
        report = await handlers.note_ticket(
            uows,
            member,
            ticket_id,
            public_note=body.public_note,
            internal_note=body.internal_note,
        )
    except handlers.TicketNotFound:
        return no_ticket(ticket_id)
    except InvalidReport as invalid:
        return problem(422, *[("invalid_note", None, p) for p in invalid.problems])
    return JSONResponse(representations.ticket(report, settings.public_base_url, detail=True))


@router.get(
    "/offices",
    response_model=list[schemas.OfficeOut],
    responses=schemas.refusals(
        401,
        403,
        404,
        503,
        s403="Another jurisdiction than the member's",
        s404="A jurisdiction the deployment does not serve",
        s503="The office directory has not arrived yet from geo-router",
    ),
)
async def list_offices(
    member: Staff,
    directory: DirectoryDep,
    boundaries: BoundariesDep,
    settings: SettingsDep,
    jurisdiction: str | None = Query(
        default=None, max_length=100, description="a deployment-wide admin: one jurisdiction"
    ),
) -> JSONResponse:
    """The offices a ticket of the member's jurisdiction can be handed to (``assigned``
    with their ``office_code``)."""
    try:
        handlers.check_named(boundaries, jurisdiction or None)
    except handlers.UnknownJurisdiction as unknown:
        return problem(404, ("unknown_jurisdiction", "jurisdiction", str(unknown)))
    offices = directory.offices(
        scope(member, jurisdiction) or member.jurisdiction or settings.jurisdiction
    )
    if offices is None:
        return problem(
            503, ("unavailable", None, "the office directory has not arrived yet: try again")
        )
    return JSONResponse([{"code": c, "name": n} for c, n in sorted(offices.items())])


@router.get(
    "/tickets/{ticket_id}",
    response_model=schemas.TicketDetailOut,
    responses=schemas.refusals(401, 404),
)
async def get_ticket(
    ticket_id: UUID, member: Staff, uows: UnitsOfWorkDep, settings: SettingsDep
) -> JSONResponse:
    """A ticket with photos and its full history, internal notes included."""
    try:
        report = await handlers.staff_ticket(uows, member, ticket_id)
    except handlers.TicketNotFound:
        return no_ticket(ticket_id)
    return JSONResponse(representations.ticket(report, settings.public_base_url, detail=True))


@router.post(
    "/tickets/{ticket_id}/transitions",
    response_model=schemas.TicketDetailOut,
    responses={
        202: {
            "model": schemas.ReassignmentOut,
            "description": "A hand-over to another office, requested from geo-router",
        },
        **schemas.refusals(401, 404, 409, s409="The transition is not allowed"),
    },
)
async def transition(
    ticket_id: UUID,
    body: TransitionIn,
    member: Staff,
    uows: UnitsOfWorkDep,
    directory: DirectoryDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Move a ticket on: ``in_progress``, ``resolved``, ``rejected`` (with a public_note
    saying why), ``duplicate`` (with duplicate_of), back to ``in_progress`` (reopen), or
    ``assigned`` with an office_code to hand it to another office."""
    try:
        report = await handlers.move_ticket(
            uows,
            member,
            ticket_id,
            body.status,
            public_note=body.public_note,
            internal_note=body.internal_note,
            office_code=body.office_code,
            duplicate_of=body.duplicate_of,
            offices=directory.offices,
        )
    except handlers.TicketNotFound:
        return no_ticket(ticket_id)
    except TransitionNotAllowed as refused:
        return problem(409, ("transition_not_allowed", "status", str(refused)))
    except InvalidReport as invalid:
        field = invalid.field if isinstance(invalid, handlers.InvalidField) else None
        return problem(422, *[("invalid_transition", field, p) for p in invalid.problems])
    if report is None:
        return JSONResponse(
            {"id": str(ticket_id), "reassignment_requested": body.office_code}, status_code=202
        )
    return JSONResponse(representations.ticket(report, settings.public_base_url, detail=True))
