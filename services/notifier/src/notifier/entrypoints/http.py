"""The notifier's public links (unsubscribe, preferences, area alerts' confirmation), its API
for the web front (area alert subscriptions, erasing a reporter's contact data) and the
operators' view of parked notifications."""

from __future__ import annotations

import hmac
import logging
from typing import Any, Literal
from uuid import UUID

import aiosmtplib
from fastapi import APIRouter, Form, Header, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncEngine

from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.service import Problems, Refusal, Text, errors_list, problem
from notifier import handlers
from notifier.adapters.senders import TEMPLATES
from notifier.domain import Preference
from notifier.handlers import MailSender
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

    @model_validator(mode="after")
    def _one_place(self) -> AlertIn:
        if (self.area is None) == (self.point is None):
            raise ValueError("give exactly one of area and point")
        if self.service_code is not None and self.service_code not in CATEGORIES_BY_CODE:
            raise ValueError(f"unknown service_code {self.service_code!r}")
        return self


class ErasureIn(BaseModel):
    reporter_token: Text = Field(min_length=1, max_length=200)


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


def router(engine: AsyncEngine, settings: NotifierSettings, sender: MailSender) -> APIRouter:
    api = APIRouter()

    def unknown_link() -> HTMLResponse:
        return page(settings, UNKNOWN_LINK, status_code=404)

    def ask(question: str, button: str) -> HTMLResponse:
        # The form posts back to its own address: no token is ever written into the page.
        return page(settings, template="ask", question=question, button=button)

    @api.get("/v1/unsubscribe/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def confirm_unsubscribe(token: str) -> HTMLResponse:
        """The link in every mail asks first: mail scanners open links, and must not
        unsubscribe anybody by doing so."""
        if await handlers.preference_of(engine, token) is None:
            return unknown_link()
        return ask(
            "Keine E-Mails mehr zu dieser Meldung? / No more e-mails about this report?",
            "Abmelden / Unsubscribe",
        )

    @api.post("/v1/unsubscribe/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def unsubscribe(token: str) -> HTMLResponse:
        """No more mails about that report; also the one-click unsubscribe of RFC 8058 that
        mail clients send from the List-Unsubscribe header."""
        if not await handlers.set_preference(engine, token, Preference.NONE):
            return unknown_link()
        return page(
            settings,
            "Sie erhalten zu dieser Meldung keine E-Mails mehr.",
            "You will get no more e-mails about this report.",
        )

    @api.get("/v1/preferences/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def preferences_form(token: str) -> HTMLResponse:
        current = await handlers.preference_of(engine, token)
        if current is None:
            return unknown_link()
        return page(
            settings,
            template="preferences",
            choices=[(p.value, label) for p, label in CHOICES.items()],
            current=current.value,
        )

    @api.post("/v1/preferences/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def set_preferences(token: str, preference: Preference = Form()) -> HTMLResponse:
        """Every change, only when closed, or none."""
        if not await handlers.set_preference(engine, token, preference):
            return unknown_link()
        return page(settings, f"Gespeichert / saved: {CHOICES[preference]}")

    @api.post("/api/v1/reports/{report_id}/contact/erase", status_code=204, tags=["reporters"])
    async def erase_contact(report_id: UUID, erasure: ErasureIn) -> Response:
        """The reporter's right to erasure (GDPR Art. 17), proven by their token: their
        address and name and every notification to them are erased; the report stays, without
        them. 404 when this report has no reporter's contact data (any more)."""
        try:
            erased = await handlers.erase_reporter_contact(
                engine, report_id, erasure.reporter_token
            )
        except handlers.WrongReporterToken:
            return problem(
                403, ("invalid_token", "reporter_token", "this is not the reporter's token")
            )
        if not erased:
            return problem(
                404, ("not_found", "report_id", "no contact data of this report's reporter")
            )
        return Response(status_code=204)

    @api.post("/api/v1/alerts", status_code=202, tags=["area alerts"])
    async def subscribe(alert: AlertIn) -> Response:
        """Subscribe to e-mails about new reports in an area (``{"code"}`` as geo-router's
        /v1/areas lists it) or within ``radius_m`` of a point, of one category or all. Double
        opt-in: nothing is sent until the link in the mail is confirmed."""
        if alert.point is not None and alert.point.radius_m > settings.alert_max_radius_m:
            return problem(
                422,
                (
                    "invalid_field",
                    "point.radius_m",
                    f"radius_m may be at most {settings.alert_max_radius_m:.0f}",
                ),
            )
        request = handlers.AlertRequest(
            email=str(alert.email),
            locale=alert.locale,
            service_code=alert.service_code,
            area_code=alert.area.code if alert.area else None,
            point=(alert.point.lat, alert.point.long, alert.point.radius_m)
            if alert.point
            else None,
        )
        try:
            await handlers.subscribe_to_alerts(engine, sender, settings, request)
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

    @api.get("/alerts/confirm/{token}", response_class=HTMLResponse, tags=["area alerts"])
    async def ask_to_confirm(token: str) -> HTMLResponse:
        """Asks: mail scanners open links, and must not subscribe anybody by doing so."""
        if await handlers.alert_subscription(engine, confirm_token=token) is None:
            return unknown_link()
        return ask(
            "E-Mails über neue Meldungen erhalten? / Get e-mails about new reports?",
            "Bestätigen / Confirm",
        )

    @api.post("/alerts/confirm/{token}", response_class=HTMLResponse, tags=["area alerts"])
    async def confirm(token: str) -> HTMLResponse:
        if not await handlers.confirm_alerts(engine, token):
            return unknown_link()
        return page(
            settings,
            "Bestätigt: Sie erhalten E-Mails über neue Meldungen.",
            "Confirmed: you will get e-mails about new reports.",
        )

    @api.get("/alerts/unsubscribe/{token}", response_class=HTMLResponse, tags=["area alerts"])
    async def ask_to_unsubscribe(token: str) -> HTMLResponse:
        if await handlers.alert_subscription(engine, unsubscribe_token=token) is None:
            return unknown_link()
        return ask(
            "Keine E-Mails mehr über neue Meldungen? / No more e-mails about new reports?",
            "Abmelden / Unsubscribe",
        )

    @api.post("/alerts/unsubscribe/{token}", response_class=HTMLResponse, tags=["area alerts"])
    async def unsubscribe_alerts(token: str) -> HTMLResponse:
        """Deletes the subscription; also RFC 8058's one-click from List-Unsubscribe."""
        if not await handlers.unsubscribe_alerts(engine, token):
            return unknown_link()
        return page(
            settings,
            "Abgemeldet: keine E-Mails mehr über neue Meldungen.",
            "Unsubscribed: no more e-mails about new reports.",
        )

    def operator(authorization: str | None) -> None:
        ops_token = settings.ops_token.get_secret_value()
        expected = f"Bearer {ops_token}"
        if not ops_token or not hmac.compare_digest(authorization or "", expected):
            raise HTTPException(401, "a valid operator token (NOTIFIER_OPS_TOKEN) is required")

    @api.get("/v1/notifications/parked", tags=["operations"])
    async def list_parked(authorization: str | None = Header(default=None)) -> list[dict[str, Any]]:
        """Notifications that kept failing and wait for an operator."""
        operator(authorization)
        return await handlers.parked(engine)

    @api.post("/v1/notifications/{notification_id}/retry", tags=["operations"], status_code=202)
    async def retry(
        notification_id: int, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        operator(authorization)
        if not await handlers.retry(engine, notification_id):
            raise HTTPException(404, f"notification {notification_id} is not parked")
        return {"retrying": notification_id}

    return api
