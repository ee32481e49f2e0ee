"""The notifier's public links (unsubscribe, preferences) and the operators' view of parked
notifications."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Form, Header, HTTPException
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import handlers
from notifier.domain import Preference
from notifier.settings import NotifierSettings

CHOICES = {
    Preference.EVERY_CHANGE: "bei jeder Änderung / on every change",
    Preference.ONLY_CLOSED: "nur wenn erledigt / only when closed",
    Preference.NONE: "keine E-Mails / no e-mails",
}


def router(engine: AsyncEngine, settings: NotifierSettings) -> APIRouter:
    api = APIRouter(prefix="/v1")

    @api.get("/unsubscribe/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def unsubscribe(token: str) -> HTMLResponse:
        """The link in every mail: no more mails about that report."""
        if not await handlers.set_preference(engine, token, Preference.NONE):
            return HTMLResponse("<p>Unbekannter Link / unknown link.</p>", status_code=404)
        return HTMLResponse(
            "<p>Sie erhalten zu dieser Meldung keine E-Mails mehr.</p>"
            "<p>You will get no more e-mails about this report.</p>"
        )

    @api.get("/preferences/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def preferences_form(token: str) -> HTMLResponse:
        buttons = "".join(
            f'<button name="preference" value="{p.value}">{label}</button><br>'
            for p, label in CHOICES.items()
        )
        return HTMLResponse(
            f'<form method="post" action="/v1/preferences/{token}">'
            f"<p>E-Mails zu dieser Meldung / e-mails about this report:</p>{buttons}</form>"
        )

    @api.post("/preferences/{token}", response_class=HTMLResponse, tags=["reporters"])
    async def set_preferences(token: str, preference: Preference = Form()) -> HTMLResponse:
        """Every change, only when closed, or none."""
        if not await handlers.set_preference(engine, token, preference):
            return HTMLResponse("<p>Unbekannter Link / unknown link.</p>", status_code=404)
        return HTMLResponse(f"<p>Gespeichert / saved: {CHOICES[preference]}</p>")

    def operator(authorization: str | None) -> None:
        expected = f"Bearer {settings.ops_token}"
        if not settings.ops_token or not hmac.compare_digest(authorization or "", expected):
            raise HTTPException(status_code=401, detail={"code": "unauthorized"})

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
            raise HTTPException(status_code=404, detail={"code": "not_parked"})
        return {"retrying": notification_id}

    return api
