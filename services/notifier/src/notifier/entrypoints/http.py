"""The notifier's public links (unsubscribe, preferences, area alerts' confirmation), its API
for the web front (area alert subscriptions, erasing a reporter's contact data) and the
operators' view of parked notifications."""

from __future__ import annotations

import hmac
import logging
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

import aiosmtplib
from fastapi import APIRouter, Depends, Form, Header, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from mm_shared.api_docs import FRAME_REASONS, json_refusal, refusals
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.service import Problems, Refusal, RowId, Text, errors_list, problem
from notifier import handlers
from notifier.domain import AlertRequest, Preference
from notifier.mails import TEMPLATES, Mails
from notifier.ports import MailSender, UnitOfWorkFactory
from notifier.settings import NotifierSettings

log = logging.getLogger(__name__)

CHOICES = {
    Preference.EVERY_CHANGE: "bei jeder Änderung / on every change",
    Preference.ONLY_CLOSED: "nur wenn erledigt / only when closed",
    Preference.NONE: "keine E-Mails / no e-mails",
}

UNKNOWN_LINK = "Unbekannter Link / unknown link."

#: Pages a person opens from a mail: refusals there are pages too, not JSON.
PERSON_PAGES = ("/v1/unsubscribe/", "/v1/preferences/", "/alerts/")

_pages = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)


class AreaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: An area code as geo-router's /v1/areas lists it (an Ortsteil or Stadtbezirk).
    code: Text = Field(min_length=1, max_length=100)


class PointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lat: float = Field(ge=-90, le=90)
    long: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0)


class AlertIn(BaseModel):
    """A subscription to new reports in an area or around a point, optionally of one
    category; exactly one of ``area`` and ``point``."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    locale: Literal["de", "en"] = "de"
    service_code: Text | None = Field(default=None, max_length=20)
    area: AreaIn | None = None
    point: PointIn | None = None
    #: Only this jurisdiction's reports (its code, as geo-router lists it; area codes are
    #: unique within one jurisdiction only). Unset: reports anywhere.
    jurisdiction: Text | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_place(self) -> AlertIn:
        if (self.area is None) == (self.point is None):
            raise ValueError("give exactly one of area and point")
        if self.service_code is not None and self.service_code not in CATEGORIES_BY_CODE:
            raise ValueError(f"unknown service_code {self.service_code!r}")
        return self


class ErasureIn(BaseModel):
    reporter_token: Text = Field(min_length=1, max_length=200)


class ConfirmationSentOut(BaseModel):
    status: Literal["confirmation_sent"]


class RetryingOut(BaseModel):
    retrying: int


#: A page for a person (the links in mails); refusals there are pages too.
PAGE: dict[str, Any] = {"content": {"text/html": {"schema": {"type": "string"}}}}
UNKNOWN_LINK_PAGE: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown link (a page)", **PAGE}
}


def refusal_doc(path: str, status: int) -> dict[str, Any]:
    """How :func:`refusal` answers the service frame's refusals, for the OpenAPI document."""
    if path.startswith(PERSON_PAGES):
        return {"description": FRAME_REASONS[status] + " (a page)", **PAGE}
    return json_refusal("ErrorsOut")(path, status)


def refusal(settings: NotifierSettings) -> Refusal:
    """Refusals in the notifier's JSON error shape, and as a page on the pages people open."""

    def refused(request: Request, status: int, code: str, problems: Problems) -> Response:
        if not request.url.path.startswith(PERSON_PAGES):
            return errors_list(request, status, code, problems)
        if status == 503:
            text = (
                "Gerade nicht erreichbar, bitte später noch einmal / unavailable, try again later."
            )
        else:
            text = "Diese Anfrage ist ungültig / this request is not valid."
        return page(settings, text, status_code=status)

    return refused


def page(
    settings: NotifierSettings,
    *messages: str,
    template: str = "page",
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = _pages.get_template(f"pages/{template}.html").render(
        stylesheet_url=settings.stylesheet_url, messages=messages, **context
    )
    return HTMLResponse(html, status_code=status_code)


router = APIRouter()


@dataclass(frozen=True)
class NotifierApi:
    """What the routes work with; ``bootstrap`` puts it on ``app.state.notifier``."""

    unit_of_work: UnitOfWorkFactory
    settings: NotifierSettings
    #: The alert subscriptions' confirmation mails are sent while the subscriber waits.
    confirmation_sender: MailSender
    mails: Mails


def _notifier_api(request: Request) -> NotifierApi:
    api: NotifierApi = request.app.state.notifier
    return api


Api = Annotated[NotifierApi, Depends(_notifier_api)]


def unknown_link(settings: NotifierSettings) -> HTMLResponse:
    return page(settings, UNKNOWN_LINK, status_code=404)


def ask(settings: NotifierSettings, question: str, button: str) -> HTMLResponse:
    # The form posts back to its own address: no token is ever written into the page.
    return page(settings, template="ask", question=question, button=button)


@router.get(
    "/v1/unsubscribe/{token}",
    response_class=HTMLResponse,
    responses=UNKNOWN_LINK_PAGE,
    tags=["reporters"],
)
async def confirm_unsubscribe(api: Api, token: str) -> HTMLResponse:
    """The link in every mail asks first: mail scanners open links, and must not
    unsubscribe anybody by doing so."""
    if await handlers.preference_of(api.unit_of_work, token) is None:
        return unknown_link(api.settings)
    return ask(
        api.settings,
        "Keine E-Mails mehr zu dieser Meldung? / No more e-mails about this report?",
        "Abmelden / Unsubscribe",
    )


@router.post(
    "/v1/unsubscribe/{token}",
    response_class=HTMLResponse,
    responses=UNKNOWN_LINK_PAGE,
    tags=["reporters"],
)
async def unsubscribe(api: Api, token: str) -> HTMLResponse:
    """No more mails about that report; also the one-click unsubscribe of RFC 8058 that
    mail clients send from the List-Unsubscribe header."""
    if not await handlers.set_preference(api.unit_of_work, token, Preference.NONE):
        return unknown_link(api.settings)
    return page(
        api.settings,
        "Sie erhalten zu dieser Meldung keine E-Mails mehr.",
        "You will get no more e-mails about this report.",
    )


@router.get(
    "/v1/preferences/{token}",
    response_class=HTMLResponse,
    responses=UNKNOWN_LINK_PAGE,
    tags=["reporters"],
)
async def preferences_form(api: Api, token: str) -> HTMLResponse:
    current = await handlers.preference_of(api.unit_of_work, token)
    if current is None:
        return unknown_link(api.settings)
    return page(
        api.settings,
        template="preferences",
        choices=[(p.value, label) for p, label in CHOICES.items()],
        current=current.value,
    )


@router.post(
    "/v1/preferences/{token}",
    response_class=HTMLResponse,
    responses=UNKNOWN_LINK_PAGE,
    tags=["reporters"],
)
async def set_preferences(api: Api, token: str, preference: Preference = Form()) -> HTMLResponse:
    """Every change, only when closed, or none."""
    if not await handlers.set_preference(api.unit_of_work, token, preference):
        return unknown_link(api.settings)
    return page(api.settings, f"Gespeichert / saved: {CHOICES[preference]}")


@router.post(
    "/api/v1/reports/{report_id}/contact/erase",
    status_code=204,
    response_class=Response,
    responses=refusals(403, 404, s403="Not the reporter's token"),
    tags=["reporters"],
)
async def erase_contact(api: Api, report_id: UUID, erasure: ErasureIn) -> Response:
    """The reporter's right to erasure (GDPR Art. 17), proven by their token: their
    address and name and every notification to them are erased; the report stays, without
    them. 404 when this report has no reporter's contact data (any more)."""
    try:
        erased = await handlers.erase_reporter_contact(
            api.unit_of_work, report_id, erasure.reporter_token
        )
    except handlers.WrongReporterToken:
        return problem(403, ("invalid_token", "reporter_token", "this is not the reporter's token"))
    if not erased:
        return problem(404, ("not_found", "report_id", "no contact data of this report's reporter"))
    return Response(status_code=204)


@router.post(
    "/api/v1/alerts",
    status_code=202,
    response_model=ConfirmationSentOut,
    responses=refusals(
        429,
        503,
        s429="The address has several unconfirmed subscriptions",
        s503="The confirmation mail cannot be sent right now",
    ),
    tags=["area alerts"],
)
async def subscribe(api: Api, alert: AlertIn) -> Response:
    """Subscribe to e-mails about new reports in an area (``{"code"}`` as geo-router's
    /v1/areas lists it) or within ``radius_m`` of a point, of one category or all. Double
    opt-in: nothing is sent until the link in the mail is confirmed."""
    if alert.point is not None and alert.point.radius_m > api.settings.alert_max_radius_m:
        return problem(
            422,
            (
                "invalid_field",
                "point.radius_m",
                f"radius_m may be at most {api.settings.alert_max_radius_m:.0f}",
            ),
        )
    request = AlertRequest(
        email=str(alert.email),
        locale=alert.locale,
        service_code=alert.service_code,
        area_code=alert.area.code if alert.area else None,
        point=(alert.point.lat, alert.point.long, alert.point.radius_m) if alert.point else None,
        jurisdiction=alert.jurisdiction,
    )
    try:
        await handlers.subscribe_to_alerts(
            api.unit_of_work, api.confirmation_sender, api.mails, request
        )
    except handlers.TooManyUnconfirmed:
        refused = problem(
            429,
            (
                "rate_limited",
                "email",
                "this address has several unconfirmed subscriptions: confirm one first",
            ),
        )
        refused.headers["Retry-After"] = "3600"
        return refused
    except (aiosmtplib.SMTPException, OSError):
        log.warning("alert confirmation mail not sent", exc_info=True)
        refused = problem(
            503, ("unavailable", None, "mail cannot be sent right now: try again later")
        )
        refused.headers["Retry-After"] = "60"
        return refused
    return JSONResponse({"status": "confirmation_sent"}, status_code=202)


@router.get(
    "/alerts/confirm/{token}",
    response_class=HTMLResponse,
    responses=UNKNOWN_LINK_PAGE,
    tags=["area alerts"],
)
async def ask_to_confirm(api: Api, token: str) -> HTMLResponse:
    """Asks: mail scanners open links, and must not subscribe anybody by doing so."""
    if await handlers.alert_subscription(api.unit_of_work, confirm_token=token) is None:
        return unknown_link(api.settings)
    return ask(
        api.settings,
        "E-Mails über neue Meldungen erhalten? / Get e-mails about new reports?",
        "Bestätigen / Confirm",
    )


@router.post(
    "/alerts/confirm/{token}",
    response_class=HTMLResponse,
    responses=UNKNOWN_LINK_PAGE,
    tags=["area alerts"],
)
async def confirm(api: Api, token: str) -> HTMLResponse:
    if not await handlers.confirm_alerts(api.unit_of_work, token):
        return unknown_link(api.settings)
    return page(
        api.settings,
        "Bestätigt: Sie erhalten E-Mails über neue Meldungen.",
        "Confirmed: you will get e-mails about new reports.",
    )


@router.get(
    "/alerts/unsubscribe/{token}",
    response_class=HTMLResponse,
    responses=UNKNOWN_LINK_PAGE,
    tags=["area alerts"],
)
async def ask_to_unsubscribe(api: Api, token: str) -> HTMLResponse:
    if await handlers.alert_subscription(api.unit_of_work, unsubscribe_token=token) is None:
        return unknown_link(api.settings)
    return ask(
        api.settings,
        "Keine E-Mails mehr über neue Meldungen? / No more e-mails about new reports?",
        "Abmelden / Unsubscribe",
    )


@router.post(
    "/alerts/unsubscribe/{token}",
    response_class=HTMLResponse,
    responses=UNKNOWN_LINK_PAGE,
    tags=["area alerts"],
)
async def unsubscribe_alerts(api: Api, token: str) -> HTMLResponse:
    """Deletes the subscription; also RFC 8058's one-click from List-Unsubscribe."""
    if not await handlers.unsubscribe_alerts(api.unit_of_work, token):
        return unknown_link(api.settings)
    return page(
        api.settings,
        "Abgemeldet: keine E-Mails mehr über neue Meldungen.",
        "Unsubscribed: no more e-mails about new reports.",
    )


def operator(settings: NotifierSettings, authorization: str | None) -> None:
    ops_token = settings.ops_token.get_secret_value()
    expected = f"Bearer {ops_token}"
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    sent = (authorization or "").encode()
    if not ops_token or not hmac.compare_digest(sent, expected.encode()):
        raise HTTPException(401, "a valid operator token (NOTIFIER_OPS_TOKEN) is required")


@router.get("/v1/notifications/parked", tags=["operations"], responses=refusals(401))
async def list_parked(
    api: Api, authorization: str | None = Header(default=None)
) -> list[dict[str, Any]]:
    """Notifications that kept failing and wait for an operator."""
    operator(api.settings, authorization)
    return [asdict(p) for p in await handlers.parked(api.unit_of_work)]


@router.post(
    "/v1/notifications/{notification_id}/retry",
    tags=["operations"],
    status_code=202,
    response_model=RetryingOut,
    responses=refusals(401, 404),
)
async def retry(
    api: Api, notification_id: RowId, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    operator(api.settings, authorization)
    if not await handlers.retry(api.unit_of_work, notification_id):
        raise HTTPException(404, f"notification {notification_id} is not parked")
    return {"retrying": notification_id}
