"""Web's composition root: the app, its clients of the services, templates, static files,
CSRF, metrics and health, and each part's pages (citizen, staff)."""

from __future__ import annotations

import gc
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mm_shared.observability import HealthCheck, configure_logging, instrument
from web import csrf
from web.adapters.services import Service, Services, ServiceUnavailable
from web.citizen import routes as citizen
from web.i18n import COOKIE as LANG_COOKIE
from web.i18n import LANGUAGES
from web.settings import WebSettings
from web.staff import routes as staff
from web.staff.oidc import OidcClient
from web.templating import SCRIPT_HASH, STATIC, render

SERVICE = "web"
log = logging.getLogger(__name__)


class CachedStatic(StaticFiles):
    """Static files; versioned addresses (``?v=``, see ``static_url``) are cached for a year."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if b"v=" in scope.get("query_string", b"") and response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


class SecurityHeaders:
    """Pure ASGI: every answer forbids framing and loading anything from elsewhere (no CDN, no
    third-party script), except map tiles from the configured tile server."""

    def __init__(self, app: ASGIApp, tile_url: str | None) -> None:
        self.app = app
        tiles = ""
        if tile_url:
            origin = httpx.URL(tile_url.replace("{s}", "a").split("{")[0])
            host = origin.host.replace("a.", "*.", 1) if "{s}" in tile_url else origin.host
            tiles = f" {origin.scheme}://{host}"
        self.headers = [
            (
                b"content-security-policy",
                (
                    f"default-src 'self'; script-src 'self' {SCRIPT_HASH}; "
                    "style-src 'self' 'unsafe-inline'; "
                    f"img-src 'self' data: blob:{tiles}; connect-src 'self'; "
                    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
                ).encode(),
            ),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(self.headers)
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    settings: WebSettings | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    settings = settings or WebSettings()
    configure_logging(settings.log_level)
    # A line per upstream call would cost more than the call; /metrics counts requests.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not settings.secret_key.get_secret_value():
        log.warning("WEB_SECRET_KEY is unset: a random one signs this instance's forms")
        settings = settings.model_copy(update={"secret_key": SecretStr(secrets.token_urlsafe(32))})
    services = Services(settings, transport)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.warm_up()
        # What lives as long as the process (modules, templates, the areas just cached) leaves
        # the collector's scans; each full collection scanned it all, in the middle of a
        # request, and showed in the report page's tail latency.
        gc.collect()
        gc.freeze()
        yield
        await services.close()

    app = FastAPI(
        title="Mängelmelder web",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.services = services

    app.add_middleware(csrf.CsrfCookie, secure=settings.cookie_secure)
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(SecurityHeaders, tile_url=settings.tile_url)
    app.mount("/static", CachedStatic(directory=STATIC), name="static")

    @app.get("/language/{lang}", include_in_schema=False)
    async def switch_language(lang: str, next: str = "/") -> Response:
        """The visible language switch: a link (works without JavaScript), kept in a cookie."""
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        if lang in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE,
                lang,
                max_age=365 * 86400,
                samesite="lax",
                secure=settings.cookie_secure,
            )
        return response

    app.include_router(citizen.router(services, settings))
    oidc = (
        OidcClient(settings, transport)
        if settings.oidc_issuer and settings.oidc_client_id
        else None
    )
    app.include_router(staff.router(services, oidc))

    @app.exception_handler(staff.SignInRequired)
    async def sign_in_required(_: Request, error: Exception) -> Response:
        assert isinstance(error, staff.SignInRequired)
        query = urlencode({"next": error.next_path} | ({"expired": "1"} if error.expired else {}))
        return RedirectResponse(f"/staff/?{query}", status_code=303)

    @app.exception_handler(staff.NotFound)
    async def staff_not_found(request: Request, _: Exception) -> Response:
        return render(request, "error.html", {"status": 404}, status_code=404)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        status = error.status_code if error.status_code in (404, 405, 413) else 400
        return render(request, "error.html", {"status": status}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, _: Exception) -> Response:
        return render(request, "error.html", {"status": 400}, status_code=400)

    @app.exception_handler(csrf.CsrfRefused)
    async def csrf_refused(request: Request, _: Exception) -> Response:
        return render(request, "error.html", {"status": 403}, status_code=403)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, error: Exception) -> Response:
        assert isinstance(error, ServiceUnavailable)
        headers = {"Retry-After": str(error.retry_after_s)}
        return render(request, "error.html", {"status": 503}, status_code=503, headers=headers)

    services_shown: tuple[Service, ...] = ("intake", "geo_router", "notifier")
    checks: dict[str, HealthCheck] = {name: _reachable(services, name) for name in services_shown}
    instrument(app, SERVICE, checks)
    return app


def _reachable(services: Services, service: Service) -> HealthCheck:
    """Web is ready when the services it shows are (it has nothing of its own to check)."""

    async def check() -> None:
        answer = await services.call(service, "GET", "/healthz")
        if not answer.ok:
            raise RuntimeError(f"{service} answers {answer.status}")

    return check
