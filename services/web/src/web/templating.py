"""Pages from Jinja2 templates (autoescaped), with what every page needs: its language and
translator, the CSRF token, versioned static URLs and the settings the maps read."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Match

from web import csrf
from web.cities import city_of
from web.i18n import LANGUAGES, Translator, language

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
#: The one inline script of every page, in <head> before the first paint (GOV.UK's
#: ``js-enabled``): it marks the page as scripted, so the CSS reserves what the scripts will
#: show (maps, their buttons) and hides what they will hide, from the start: no layout shift
#: when they run (deferred). When one of the page's scripts fails to load, it takes the mark
#: back: the page is then as it is without JavaScript, not half enhanced. Allowed by its hash in
#: the Content-Security-Policy (``SCRIPT_HASH``), not by 'unsafe-inline'.
EARLY_SCRIPT = (
    "(function (root) { root.classList.add('js');"
    " addEventListener('error', function (event) {"
    " if (event.target instanceof HTMLScriptElement) root.classList.remove('js'); }, true);"
    " })(document.documentElement);"
)
_DIGEST = base64.b64encode(hashlib.sha256(EARLY_SCRIPT.encode()).digest()).decode()
SCRIPT_HASH = f"'sha256-{_DIGEST}'"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["early_script"] = EARLY_SCRIPT
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True


@cache
def static_url(path: str) -> str:
    """``/static/<path>?v=<hash of its content>``: served with a year's cache, so a changed file
    must change its address."""
    digest = hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:12]
    return f"/static/{path}?v={digest}"


def switchable_address(request: Request) -> str:
    """Where the language switch, a link, leads back to (encoded): this page for a GET; for
    the answer to a POST, the nearest address above the POST's that a GET serves
    (``/staff/sign-in`` → ``/staff/``, ``/reports/<id>/follow`` → ``/reports/<id>``), not a
    405."""
    path = request.url.path
    if request.method in ("GET", "HEAD"):
        # The query as it came, already encoded.
        return quote(path) + (f"?{request.url.query}" if request.url.query else "")
    routes = request.app.router.routes
    while path:
        for candidate in (path, path + "/") if not path.endswith("/") else (path,):
            probe = {**request.scope, "path": candidate, "method": "GET"}
            if any(route.matches(probe)[0] is Match.FULL for route in routes):
                return quote(candidate)
        path = path.rsplit("/", 1)[0]
    return "/"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    lang = language(request)
    here = switchable_address(request)
    settings = request.app.state.settings
    city = city_of(request)
    page = {
        "request": request,
        "lang": lang,
        "other_lang": next(code for code in LANGUAGES if code != lang),
        "t": Translator(lang, city=city.short_name, city_name=city.name),
        #: Links within a city's pages stay under its prefix: ``{{ base }}/reports``.
        "city": city,
        "base": city.base,
        "city_name": request.app.state.cities.name_of,
        "other_cities": request.app.state.cities.elsewhere(request),
        "csrf_token": csrf.token(request),
        "static_url": static_url,
        "here": here,
        "tile_url": settings.tile_url,
        "tile_attribution": settings.tile_attribution,
        **(context or {}),
    }
    return templates.TemplateResponse(
        request, template, page, status_code=status_code, headers=headers
    )
