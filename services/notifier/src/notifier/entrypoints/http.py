"""The notifier's public links (unsubscribe, preferences) and the operators' view of parked
notifications."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Form, Header, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from mm_shared.service import Problems, errors_list, html_page
from notifier import handlers
from notifier.domain import Preference
from notifier.settings import NotifierSettings

CHOICES = {
    Preference.EVERY_CHANGE: "bei jeder Änderung / on every change",
    Preference.ONLY_CLOSED: "nur wenn erledigt / only when closed",
    Preference.NONE: "keine E-Mails / no e-mails",
}


UNKNOWN_LINK = "<p>Unbekannter Link / unknown link.</p>"


def page(body: str, status_code: int = 200) -> HTMLResponse:
    return html_page(body, status_code=status_code)


#: Pages a reporter opens from a mail: refusals there are pages too, not JSON.
REPORTER_PAGES = ("/v1/unsubscribe/", "/v1/preferences/")


def refused(request: Request, status: int, code: str, problems: Problems) -> Response:
    if request.url.path.startswith(REPORTER_PAGES):
        if status == 503:
            text = (
                "Gerade nicht erreichbar, bitte später noch einmal / unavailable, try again later"
            )
        else:
            text = "Diese Anfrage ist ungültig / this request is not valid"
        return page(f"<p>{text}.</p>", status_code=status)
    return errors_list(request, status, code, problems)


def router(engine: AsyncEngine, settings: NotifierSettings) -> APIRouter:
    api = APIRouter(prefix="/v1")

    # The forms post back to their own address: no token is ever written into the page.

    @api.get("/unsubscribe/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def confirm_unsubscribe(token: str) -> HTMLResponse:
        """The link in every mail asks first: mail scanners open links, and must not
        unsubscribe anybody by doing so."""
        if await handlers.preference_of(engine, token) is None:
            return page(UNKNOWN_LINK, status_code=404)
        return page(
            '<form method="post"><p>Keine E-Mails mehr zu dieser Meldung? / '
            "No more e-mails about this report?</p>"
            "<button>Abmelden / Unsubscribe</button></form>"
        )

    @api.post("/unsubscribe/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def unsubscribe(token: str) -> HTMLResponse:
        """No more mails about that report; also the one-click unsubscribe of RFC 8058 that
        mail clients send from the List-Unsubscribe header."""
        if not await handlers.set_preference(engine, token, Preference.NONE):
            return page(UNKNOWN_LINK, status_code=404)
        return page(
            "<p>Sie erhalten zu dieser Meldung keine E-Mails mehr.</p>"
            "<p>You will get no more e-mails about this report.</p>"
        )

    @api.get("/preferences/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def preferences_form(token: str) -> HTMLResponse:
        current = await handlers.preference_of(engine, token)
        if current is None:
            return page(UNKNOWN_LINK, status_code=404)
        buttons = "".join(
            f'<button name="preference" value="{p.value}">{label}</button>'
            f"{' ✓' if p is current else ''}<br>"
            for p, label in CHOICES.items()
        )
        return page(
            '<form method="post">'
            f"<p>E-Mails zu dieser Meldung / e-mails about this report:</p>{buttons}</form>"
        )

    @api.post("/preferences/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def set_preferences(token: str, preference: Preference = Form()) -> HTMLResponse:
        """Every change, only when closed, or none."""
        if not await handlers.set_preference(engine, token, preference):
            return page(UNKNOWN_LINK, status_code=404)
        return page(f"<p>Gespeichert / saved: {CHOICES[preference]}</p>")

    def operator(authorization: str | None) -> None:
        expected = f"Bearer {settings.ops_token}"
        if not settings.ops_token or not hmac.compare_digest(authorization or "", expected):
            raise HTTPException(401, "a valid operator token (NOTIFIER_OPS_TOKEN) is required")

    @api.get("/notifications/parked", tags=["operations"])
    async def list_parked(authorization: str | None = Header(default=None)) -> list[dict[str, Any]]:
        """Notifications that kept failing and wait for an operator."""
        operator(authorization)
        return await handlers.parked(engine)

    @api.post("/notifications/{notification_id}/retry", tags=["operations"], status_code=202)
    async def retry(
        notification_id: int, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        operator(authorization)
        if not await handlers.retry(engine, notification_id):
            raise HTTPException(404, f"notification {notification_id} is not parked")
        return {"retrying": notification_id}

    return api
