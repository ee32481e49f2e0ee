"""Logging, Prometheus metrics and health endpoints, the same way in every service."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "mm_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "mm_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

HealthCheck = Callable[[], Awaitable[None]]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiokafka logs every coordinator hiccup at ERROR; the services report their own state.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _route_template(app: Any, scope: Scope) -> str:
    # Label by route template, never by raw path: ids in paths would explode the cardinality.
    # The router records the route it chose in the scope; included routers nest, so fall back
    # to matching only when it did not.
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    for candidate in app.router.routes:
        match, _ = candidate.matches(scope)
        if match == Match.FULL and hasattr(candidate, "path"):
            return str(candidate.path)
    return "unmatched"


class _MetricsMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware, which costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp, service: str, fastapi_app: FastAPI) -> None:
        self.app = app
        self.service = service
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = _route_template(self.fastapi_app, scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, route).observe(time.perf_counter() - started)


class HealthOut(BaseModel):
    service: str
    status: Literal["ok", "degraded"]
    #: Each dependency: "ok" or "failing: <error>".
    checks: dict[str, str]
    #: Details that do not decide health, e.g. "consumers": "assigned" or "joining".
    model_config = ConfigDict(extra="allow")


def instrument(
    app: FastAPI,
    service: str,
    health_checks: Mapping[str, HealthCheck],
    details: Callable[[], dict[str, str]] | None = None,
) -> None:
    """Add request metrics, ``GET /metrics`` and ``GET /healthz`` to a service's app.
    ``details`` adds information that does not decide health (e.g. consumers still joining)."""
    app.add_middleware(_MetricsMiddleware, service=service, fastapi_app=app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/healthz",
        tags=["operations"],
        response_model=HealthOut,
        responses={503: {"model": HealthOut, "description": "A dependency is failing"}},
    )
    async def healthz() -> JSONResponse:
        """Readiness of the service and each of its dependencies."""
        checks: dict[str, str] = {}
        for name, check in health_checks.items():
            try:
                await check()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"failing: {type(exc).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {
                "service": service,
                "status": "ok" if healthy else "degraded",
                "checks": checks,
                **(details() if details else {}),
            },
            status_code=200 if healthy else 503,
        )
