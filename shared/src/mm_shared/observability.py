"""Logging, Prometheus metrics and health endpoints, the same way in every service."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.routing import Match

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


def _route_template(request: Request) -> str:
    # Label by route template, never by raw path: ids in paths would explode the cardinality.
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"


def instrument(app: FastAPI, service: str, health_checks: Mapping[str, HealthCheck]) -> None:
    """Add request metrics, ``GET /metrics`` and ``GET /healthz`` to a service's app."""

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route_template(request)
            HTTP_REQUESTS.labels(service, request.method, route, str(status)).inc()
            HTTP_LATENCY.labels(service, request.method, route).observe(
                time.perf_counter() - started
            )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["operations"])
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
            {"service": service, "status": "ok" if healthy else "degraded", "checks": checks},
            status_code=200 if healthy else 503,
        )
