"""The citizens' pages (see :mod:`web.citizen`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from web.templating import render


def router() -> APIRouter:
    pages = APIRouter()

    @pages.get("/", response_class=HTMLResponse)
    async def report_form(request: Request) -> HTMLResponse:
        return render(request, "citizen/form.html")

    return pages
