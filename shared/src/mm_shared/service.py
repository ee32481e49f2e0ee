"""The frame every service runs in: a FastAPI app whose lifespan connects the FastStream broker
in the background, runs the service's background loops, and closes everything on shutdown.

FastStream 0.7 deprecates its FastAPI plugin; the two apps run side by side in one process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import date
from html import escape
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from faststream.kafka import KafkaBroker
from pydantic import AfterValidator, BaseModel
from sqlalchemy import exc as db_errors
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mm_shared.api_docs import RefusalDoc, document_frame_refusals, json_refusal
from mm_shared.db import ping
from mm_shared.kafka import LogFollower, keep_broker_connected
from mm_shared.memory import release_free_memory
from mm_shared.observability import instrument
from mm_shared.text import forbidden_character, forbidden_in_query, why_forbidden

BackgroundLoop = Callable[[], Coroutine[Any, Any, None]]
Step = Callable[[], Awaitable[None]]
#: What was wrong: the field (None for the request as a whole) and why.
Problems = list[tuple[str | None, str]]
#: A refusal in the error shape of the API that was called: (request, status, code, problems).
Refusal = Callable[[Request, int, str, Problems], Response]
log = logging.getLogger(__name__)


def _allowed_characters(text: str) -> str:
    if character := forbidden_character(text):
        raise ValueError(why_forbidden(character))
    return text


#: Text from clients: only characters XML 1.0 allows (:mod:`mm_shared.text`). PostgreSQL stores
#: no NUL, and one stored control character had made Open311's XML unparseable for every client.
Text = Annotated[str, AfterValidator(_allowed_characters)]


def _within(day: date, first: date, last: date) -> date:
    if not first <= day <= last:
        raise ValueError(f"a day from {first} to {last}")
    return day


#: A day asked for in a query: at midnight in the city's time zone, 0001-01-01 is before the
#: first day PostgreSQL's driver takes in UTC, and the day after 9999-12-31 does not exist (each
#: had been a 500).
Day = Annotated[
    date, AfterValidator(lambda day: _within(day, date(1900, 1, 1), date(9999, 12, 30)))
]

#: A row id in a path (PostgreSQL BIGINT): a larger number is refused with a 422 by validation;
#: passed on, the database driver raised for it, and the client got a 500.
RowId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1)]


def problem(status: int, *errors: tuple[str, str | None, str]) -> JSONResponse:
    """The platform's JSON error shape: ``{"errors": [{"code", "field", "message"}]}``."""
    return JSONResponse(
        {"errors": [{"code": c, "field": f, "message": m} for c, f, m in errors]},
        status_code=status,
    )


def html_page(
    body: str, *, title: str = "Mängelmelder", lang: str = "de", status_code: int = 200
) -> HTMLResponse:
    """A page for people (reporters open links from their mails): ``body`` is trusted HTML,
    the title is escaped here."""
    return HTMLResponse(
        f'<!doctype html><html lang="{lang}"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{escape(title)}</title><body>{body}</body></html>",
        status_code=status_code,
    )


def errors_list(_: Request, status: int, code: str, problems: Problems) -> Response:
    """The default :data:`Refusal`: :func:`problem`, every problem under one code."""
    return problem(status, *[(code, field, why) for field, why in problems])


#: SQLSTATEs of a server that cannot take the statement now, whatever it is: connection
#: exceptions (08), operator intervention (57P: shutting down, "not yet accepting connections"
#: while it starts or recovers), too many connections.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


def unavailable_backend(error: Exception) -> str | None:
    """What is away, if ``error`` says a backing service is: the database (a refused or lost
    connection, an exhausted pool, a server starting or shutting down; not a statement it
    refused) or storage (the disk)."""
    if isinstance(error, db_errors.DBAPIError):
        sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
        lost = (
            error.connection_invalidated
            or isinstance(error, db_errors.OperationalError | db_errors.InterfaceError)
            or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        )
        return "the database" if lost else None
    if isinstance(error, ConnectionError | TimeoutError | socket.gaierror | db_errors.TimeoutError):
        return "the database"
    return "storage" if isinstance(error, OSError) else None


class _BodyTooLarge(Exception):
    pass


class _RequestHygiene:
    """Refused before any route sees them, in every service (pure ASGI: a few comparisons per
    request): a character XML 1.0 forbids in the path or query (:mod:`mm_shared.text`; NUL
    among them, which PostgreSQL stores none of), and a body over ``limit`` bytes, by its Content-Length or, sent in chunks, as
    soon as it has grown past it (before it fills the memory)."""

    def __init__(self, app: ASGIApp, refusal: Refusal, limit: int) -> None:
        self.app = app
        self.refusal = refusal
        self.limit = limit

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, code: str, why: str
    ) -> None:
        await self.refusal(Request(scope), status, code, [(None, why)])(scope, receive, send)

    async def _refuse_size(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = f"{self.limit / 2**20:.0f} MB" if self.limit >= 2**20 else f"{self.limit} bytes"
        why = f"the request body may have at most {size}"
        await self._refuse(scope, receive, send, 413, "body_too_large", why)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        character = forbidden_character(scope["path"]) or forbidden_in_query(scope["query_string"])
        if character is not None:
            why = f"the address {why_forbidden(character)}: no field accepts it"
            await self._refuse(scope, receive, send, 400, "invalid_character", why)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse_size(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _BodyTooLarge
            return message

        async def noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, noting_start)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse_size(scope, receive, send)


def _answer_refusals_in_shape(app: FastAPI, refusal: Refusal) -> None:
    """FastAPI's own refusals (a malformed path, query or body, an unknown route) and a
    database away, in the error shape of the API that was called: clients parse one shape."""

    async def invalid_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems: Problems = [
            (".".join(str(part) for part in e["loc"][1:]) or None, e["msg"]) for e in error.errors()
        ]
        return refusal(request, 422, "invalid_field", problems)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_")  # "not_found"
        response = refusal(request, error.status_code, code, [(None, str(error.detail))])
        response.headers.update(error.headers or {})
        return response

    async def unavailable(request: Request, error: Exception) -> Response:
        """While PostgreSQL (or the disk) is away, nothing can be accepted durably: a 503 with
        Retry-After tells clients to come back, where a 500 would say we broke."""
        backend = unavailable_backend(error)
        if backend is None:
            raise error
        log.warning("%s unavailable: %r", backend, error)
        response = refusal(
            request, 503, "unavailable", [(None, f"{backend} is unavailable for a moment")]
        )
        response.headers["Retry-After"] = "5"
        return response

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for error_class in (OSError, db_errors.DBAPIError, db_errors.TimeoutError):
        app.add_exception_handler(error_class, unavailable)


#: How long stopping the consumers may take: one stopped while it joins its group waits for the
#: broker's answer, and a service that cannot stop gets killed anyway (nothing is lost by that).
STOP_BROKER_WITHIN_S = 15.0


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the background tasks and wait for them. Python 3.11's ``asyncio.wait_for`` can
    swallow a cancellation that arrives as its inner wait ends, and a loop around it then goes
    on: such a task is cancelled again, a few times, then left behind with a warning."""
    for task in tasks:
        task.cancel()
    pending: set[asyncio.Task[Any]] = set(tasks)
    for _ in range(5):
        _, pending = await asyncio.wait(pending, timeout=2.0)
        if not pending:
            return
        for task in pending:
            task.cancel()
    log.warning("background tasks that would not stop: %s", [t.get_coro() for t in pending])


def create_service_app(
    *,
    service: str,
    title: str,
    description: str,
    broker: KafkaBroker,
    engine: AsyncEngine,
    routers: Sequence[APIRouter],
    startup: Sequence[Step] = (),
    background: Sequence[BackgroundLoop] = (),
    on_shutdown: Sequence[Step] = (),
    refusal: Refusal = errors_list,
    refusal_doc: RefusalDoc = json_refusal("ErrorsOut"),
    refusal_models: Sequence[type[BaseModel]] = (),
    max_body_bytes: int = 1024 * 1024,
) -> FastAPI:
    """``refusal`` answers the frame's refusals; ``refusal_doc`` documents them (in the shape
    of ``refusal_models``, or the platform's ``{"errors"}``) on every operation."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # HTTP serves even while the broker is unreachable (reports are still accepted into the
        # outbox); the broker connects in the background as soon as it is there.
        for step in startup:
            await step()
        # Everything built so far lives as long as the process: keep it out of the garbage
        # collector's scans, which otherwise show up as latency spikes under load.
        release_free_memory()  # the start-up's temporary objects: collected and handed back
        gc.freeze()
        # Requests allocate many short-lived objects: collect the young generation less often
        # than every 700 allocations (the effect on tail latency: docs/architecture.md).
        gc.set_threshold(50_000, 20, 10)
        tasks = [
            asyncio.create_task(keep_broker_connected(broker)),
            asyncio.create_task(LogFollower(broker, service).run()),
        ]
        tasks += [asyncio.create_task(loop()) for loop in background]
        try:
            yield
        finally:
            await _cancel_all(tasks)
            # Consumers first, so that nothing new is committed while the outbox drains.
            try:
                await asyncio.wait_for(broker.stop(), STOP_BROKER_WITHIN_S)
            except TimeoutError:
                log.warning("the broker connection did not stop in time; leaving it")
            for close in on_shutdown:
                await close()
            await engine.dispose()

    async def broker_reachable() -> None:
        if not await broker.ping(2.0):
            raise ConnectionError("Kafka broker not reachable")

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        # Prometheus is the metrics path here; FastAPI's OpenTelemetry hooks otherwise probe
        # for a provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.broker = broker
    app.add_middleware(_RequestHygiene, refusal=refusal, limit=max_body_bytes)

    _answer_refusals_in_shape(app, refusal)
    for router in routers:
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_frame_refusals(FastAPI.openapi(app), refusal_doc, refusal_models)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    def consumers() -> dict[str, str]:
        members = [s for s in broker.subscribers if getattr(s, "group_id", None)]
        clients = [getattr(s, "consumer", None) for s in members]
        joined = all(c is not None and c.assignment() for c in clients)
        return {"consumers": "assigned" if joined else "joining"}

    instrument(
        app,
        service,
        {"database": lambda: ping(engine), "broker": broker_reachable},
        details=consumers,
    )
    return app
