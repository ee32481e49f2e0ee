"""The frame every service runs in: its answers when the database is away, or when a request
carries what no database stores. No lifespan: nothing here needs the broker or PostgreSQL."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, Request
from faststream.kafka import KafkaBroker
from sqlalchemy import exc as db_errors
from sqlalchemy.ext.asyncio import create_async_engine

from mm_shared.db import exits_on_database_errors
from mm_shared.service import create_service_app


class ServerError(Exception):
    """As the asyncpg dialect hands on the server's error: with its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


FAILURES: dict[str, Exception] = {
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "lost": db_errors.InterfaceError("SELECT 1", None, Exception("connection is closed")),
    "starting": db_errors.OperationalError("SELECT 1", None, Exception("starting up")),
    # PostgreSQL restarting: "not yet accepting connections", "terminating connection due to
    # administrator command" (cannot_connect_now, admin_shutdown), too many connections.
    "recovering": db_errors.DBAPIError("SELECT 1", None, ServerError("57P03")),
    "shut down": db_errors.DBAPIError("SELECT 1", None, ServerError("57P01")),
    "crowded": db_errors.DBAPIError("SELECT 1", None, ServerError("53300")),
    "statement": db_errors.DBAPIError("SELECT 1", None, ServerError("22P02")),
    "disk": OSError(28, "No space left on device"),
}


@pytest.fixture
def client() -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/fail/{how}")
    async def fail(how: str) -> None:
        raise FAILURES[how]

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app = create_service_app(
        service="test",
        title="test",
        description="test",
        broker=KafkaBroker("127.0.0.1:1"),
        engine=create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"),
        routers=[router],
        max_body_bytes=1000,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("how", "what"),
    [
        ("refused", "database"),
        ("lost", "database"),
        ("starting", "database"),
        ("recovering", "database"),
        ("shut down", "database"),
        ("crowded", "database"),
        ("disk", "storage"),
    ],
)
async def test_an_unreachable_backend_is_a_503_to_retry(
    client: httpx.AsyncClient, how: str, what: str
) -> None:
    response = await client.get(f"/fail/{how}")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    [error] = response.json()["errors"]
    assert error["code"] == "unavailable"
    assert what in error["message"]


async def test_a_statement_the_database_refused_stays_a_500(client: httpx.AsyncClient) -> None:
    assert (await client.get("/fail/statement")).status_code == 500


async def test_a_nul_in_the_address_is_refused_before_any_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/fail/refused?x=%00")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "invalid_character"


def test_a_cli_command_ends_with_one_line_when_the_database_is_away() -> None:
    @exits_on_database_errors
    def migrate() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")

    with pytest.raises(SystemExit) as ended:
        migrate()
    assert str(ended.value.code) == (
        "database error: ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)"
    )


async def test_a_body_over_the_limit_is_refused_however_it_is_sent(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/echo", content=b"x" * 1000)).json() == {"bytes": 1000}
    declared = await client.post("/echo", content=b"x" * 1001)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(11):
            yield b"x" * 100

    streamed = await client.post("/echo", content=chunks())
    assert streamed.status_code == 413
    assert streamed.json()["errors"][0]["code"] == "body_too_large"
