"""The notifier's public links."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import handlers


def router(engine: AsyncEngine) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["reporters"])

    @api.get("/unsubscribe/{token}", response_class=HTMLResponse)
    async def unsubscribe(token: str) -> HTMLResponse:
        """The link in every mail: no more mails about that report."""
        if not await handlers.unsubscribe(engine, token):
            return HTMLResponse("<p>Unbekannter Link / unknown link.</p>", status_code=404)
        return HTMLResponse(
            "<p>Sie erhalten zu dieser Meldung keine E-Mails mehr.</p>"
            "<p>You will get no more e-mails about this report.</p>"
        )

    return api
