"""Session-wide test infrastructure: a real broker (Tansu on a free port), a fresh PostgreSQL
database with PostGIS and every service's migrations, a recording SMTP server, and the three
services running in-process with their consumers (started once: joining a group takes ~5 s)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from devstack.processes import (
    ROOT,
    ServiceProcess,
    free_port,
    service_env,
    spawn,
    start_broker,
)

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

    from devstack.testing import EventTap, RecordingSmtp

# The services, the broker client and the database tools are imported where a fixture needs
# them, not here: the fast tier (`make test-unit`) loads this file too and must not pay for them.

TEST_DATABASE = os.environ.get("MM_TEST_DATABASE", "mangelmelder_test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under a ``tests/unit/`` folder form the fast tier (``make test-unit``)."""
    for item in items:
        if "/tests/unit/" in item.path.as_posix():
            item.add_marker(pytest.mark.unit)


ONLY_UNIT_TESTS = pytest.StashKey[bool]()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[ONLY_UNIT_TESTS] = bool(session.items) and all(
        item.get_closest_marker("unit") for item in session.items
    )


class NetworkUsedInUnitTest(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _no_network_in_unit_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """The fast tier runs against fakes: a unit test that opens a connection (PostgreSQL, the
    broker, SMTP) fails instead of quietly becoming an integration test. Only in a session of
    unit tests alone (``make test-unit``, which ``make test`` runs first): where a stack runs in
    the same event loop, its own tasks connect while a unit test awaits."""
    if not request.config.stash.get(ONLY_UNIT_TESTS, False):
        yield
        return
    import socket

    def refuse(self: socket.socket, address: Any) -> None:
        raise NetworkUsedInUnitTest(f"a unit test connected to {address!r}")

    original = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect = refuse  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = original  # type: ignore[method-assign]


API_KEY = "test-key"
REPORTER_TOKEN_SECRET = "test-reporter-token-secret-of-32-characters-at-least"


@contextlib.asynccontextmanager
async def timed_lifespan(name: str, app: FastAPI, shutdown_timeout_s: float) -> AsyncIterator[None]:
    """The app's lifespan; how long its shutdown took goes to var/test-log/shutdown.log, so that
    a shutdown that runs out of time names its service."""
    from asgi_lifespan import LifespanManager

    async with LifespanManager(app, shutdown_timeout=shutdown_timeout_s):
        yield
        started = time.monotonic()
        log = ROOT / "var" / "test-log" / "shutdown.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"{name}: shutting down\n")
    with log.open("a") as out:
        out.write(f"{name}: shut down in {time.monotonic() - started:.1f} s\n")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    from mm_shared.kafka import ensure_topics, wait_for_broker

    port = free_port()
    broker = start_broker(port, log_dir=ROOT / "var" / "test-log")
    bootstrap = f"127.0.0.1:{port}"

    async def prepare() -> None:
        await wait_for_broker(bootstrap)
        await ensure_topics(bootstrap)

    asyncio.run(prepare())
    yield bootstrap
    broker.terminate()
    broker.wait(10)


@pytest.fixture(scope="session")
def database_url() -> str:
    from devstack.databases import fresh_database
    from geo_router.cli import load_jurisdiction

    url = asyncio.run(fresh_database(TEST_DATABASE))
    asyncio.run(load_jurisdiction(url, ROOT / "data" / "leipzig" / "jurisdiction.yaml"))
    asyncio.run(load_jurisdiction(url, ROOT / "data" / "koeln" / "jurisdiction.yaml"))
    return url


@pytest.fixture(scope="session")
def smtp() -> Iterator[RecordingSmtp]:
    from devstack.testing import RecordingSmtp

    server = RecordingSmtp(free_port())
    server.start()
    yield server
    server.stop()


@dataclass
class WebhookReceiver:
    url: str
    received: list[tuple[dict[str, str], bytes]]


@pytest.fixture(scope="session")
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """A real HTTP endpoint standing in for the city app's push backend."""
    received: list[tuple[dict[str, str], bytes]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with serving(app) as base_url:
        yield WebhookReceiver(f"{base_url}/push", received)


#: The fake geocoder's gazetteer: Open311 address_string → (lat, long).
GAZETTEER = {
    "markt 1, leipzig": (51.3406, 12.3747),
    "marienplatz 1, münchen": (48.1374, 11.5755),
}


@pytest.fixture(scope="session")
async def geocoder() -> AsyncIterator[str]:
    """A Nominatim-compatible search endpoint that knows the addresses in GAZETTEER."""

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        query = parse_qs(scope["query_string"].decode()).get("q", [""])[0].lower()
        found = GAZETTEER.get(query)
        body = json.dumps([{"lat": str(found[0]), "lon": str(found[1])}] if found else [])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    async with serving(app) as base_url:
        yield base_url


@dataclass
class OidcProvider:
    """A stand-in for the city's identity provider: publishes its key set, signs tokens."""

    issuer: str
    jwks_url: str
    private_key: Any

    def token(self, subject: str, *, key: Any = None, **claims: Any) -> dict[str, str]:
        import jwt

        now = int(time.time())
        payload = {"iss": self.issuer, "aud": "maengelmelder", "sub": subject, "iat": now}
        payload |= {"exp": now + 300, **claims}
        signed = jwt.encode(payload, key or self.private_key, "RS256", headers={"kid": "k1"})
        return {"Authorization": f"Bearer {signed}"}


@pytest.fixture(scope="session")
async def oidc() -> AsyncIterator[OidcProvider]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async with serving(app) as base_url:
        yield OidcProvider(f"{base_url}/realms/leipzig", f"{base_url}/jwks", key)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Stack:
    apps: dict[str, FastAPI]
    intake: httpx.AsyncClient
    geo_router: httpx.AsyncClient
    notifier: httpx.AsyncClient
    tap: EventTap
    kafka: str
    database_url: str
    smtp: RecordingSmtp
    webhooks: WebhookReceiver

    async def boundary_known(self) -> None:
        """Wait until intake holds the city's outline (it arrives from geo-router by event)."""
        from devstack.testing import eventually

        async def refuses_munich() -> bool:
            response = await self.intake.post(
                "/api/v1/reports", json={"service_code": "001", "lat": 48.137, "long": 11.575}
            )
            return response.status_code == 422

        await eventually(refuses_munich)


WEBHOOK_SECRET = "test-webhook-secret"
WEB_STYLESHEET = "http://web.test/static/site.css"
CITY_APP_ORIGIN = "https://app.leipzig.example"


def service_settings(
    kafka: str,
    database_url: str,
    smtp_port: int,
    webhook_url: str | None = None,
    geocoder_url: str | None = None,
    oidc: OidcProvider | None = None,
) -> dict[str, object]:
    from geo_router.settings import GeoRouterSettings
    from intake.settings import IntakeSettings
    from notifier.settings import NotifierSettings

    return {
        "intake": IntakeSettings(
            kafka_bootstrap_servers=kafka,
            database_url=database_url,
            api_keys=[API_KEY],
            reporter_token_secret=REPORTER_TOKEN_SECRET,
            # The suite sends many reports from one address and one e-mail address: limits
            # it never reaches (test_rate_limits proves the refusal with its own).
            rate_limit_per_address=100_000,
            rate_limit_per_email=100_000,
            cors_origins=[CITY_APP_ORIGIN],
            photo_dir=str(ROOT / "var" / "test-photos"),
            geocoder_url=geocoder_url,
            oidc_issuer=oidc.issuer if oidc else None,
            oidc_jwks_url=oidc.jwks_url if oidc else None,
        ),
        "geo_router": GeoRouterSettings(kafka_bootstrap_servers=kafka, database_url=database_url),
        "notifier": NotifierSettings(
            kafka_bootstrap_servers=kafka,
            database_url=database_url,
            smtp_port=smtp_port,
            webhook_url=webhook_url,
            webhook_secret=WEBHOOK_SECRET,
            ops_token="test-ops",
            stylesheet_url=WEB_STYLESHEET,
            max_attempts=3,
        ),
    }


@pytest.fixture(scope="session")
async def stack(
    kafka_bootstrap: str,
    database_url: str,
    smtp: RecordingSmtp,
    webhook_receiver: WebhookReceiver,
    geocoder: str,
    oidc: OidcProvider,
) -> AsyncIterator[Stack]:
    import httpx

    from devstack.testing import EventTap
    from geo_router.bootstrap import create_app as create_geo_router
    from intake.bootstrap import create_app as create_intake
    from mm_shared.events import Topic
    from notifier.bootstrap import create_app as create_notifier

    settings = service_settings(
        kafka_bootstrap, database_url, smtp.port, webhook_receiver.url, geocoder, oidc
    )
    apps = {
        "intake": create_intake(settings["intake"]),  # type: ignore[arg-type]
        "geo_router": create_geo_router(settings["geo_router"]),  # type: ignore[arg-type]
        "notifier": create_notifier(settings["notifier"]),  # type: ignore[arg-type]
    }
    tap = EventTap(kafka_bootstrap)
    # A consumer stopped while it joins its group waits for the broker's answer to the join
    # (about 5 s here): a short run (one module) ends in that window.
    stop_s = 30
    async with (
        timed_lifespan("intake", apps["intake"], stop_s),
        timed_lifespan("geo_router", apps["geo_router"], stop_s),
        timed_lifespan("notifier", apps["notifier"], stop_s),
        tap.running([t.value for t in Topic]),
    ):
        clients = {
            name: httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
            )
            for name, app in apps.items()
        }
        yield Stack(
            apps=apps,
            **clients,
            tap=tap,
            kafka=kafka_bootstrap,
            database_url=database_url,
            smtp=smtp,
            webhooks=webhook_receiver,
        )
        for client in clients.values():
            await client.aclose()


@dataclass
class RunningStack:
    """The three services as their own processes (as ``make up`` runs them), on free ports with
    their own broker, database and mail server, and a Prometheus that scrapes them every second
    and evaluates the alert rules with every SLO window divided by ``SLO_SCALE``."""

    services: dict[str, ServiceProcess]
    prometheus: str


#: 1 h of an objective's window is 1 min here: the test watches a whole burn within a minute.
SLO_SCALE = 60


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    from devstack import monitoring
    from devstack.databases import fresh_database
    from geo_router.cli import load_jurisdiction
    from mm_shared.kafka import ensure_topics, wait_for_broker

    home = tmp_path_factory.mktemp("running-stack")
    log_dir = ROOT / "var" / "test-log"
    broker_port, smtp_port, prometheus_port = free_port(), free_port(), free_port()
    broker = start_broker(broker_port, log_dir=log_dir)
    kafka = f"127.0.0.1:{broker_port}"

    async def prepare() -> str:
        await wait_for_broker(kafka)
        await ensure_topics(kafka)
        url = await fresh_database(f"{TEST_DATABASE}_processes")
        await load_jurisdiction(url, ROOT / "data" / "leipzig" / "jurisdiction.yaml")
        return url

    database_url = asyncio.run(prepare())
    ports = {name: free_port() for name in ("intake", "geo-router", "notifier")}
    env = service_env(ports, database_url, kafka, smtp_port)
    env["INTAKE_PHOTO_DIR"] = str(home / "photos")
    # Tests submit many reports from one address.
    env["INTAKE_RATE_LIMIT_PER_ADDRESS"] = "1000000"
    smtp = spawn(
        f"smtp-{smtp_port}",
        [sys.executable, "-m", "devstack.mailserver", f"127.0.0.1:{smtp_port}", str(home / "mail")],
        log_dir=log_dir,
    )
    services = {name: ServiceProcess(name, port, env, log_dir) for name, port in ports.items()}
    rules = home / "slo-scaled.yml"
    rules.write_text(monitoring.dump(monitoring.slo_rules(scale=SLO_SCALE)))
    prometheus = None
    try:
        for service in services.values():
            service.start()
        for service in services.values():
            service.wait_healthy()
        prometheus = monitoring.start_prometheus(
            prometheus_port,
            {name: f"127.0.0.1:{port}" for name, port in ports.items()},
            home / "prometheus",
            rule_files=[monitoring.CAUSE_RULES, rules],
            interval="1s",
            log_dir=log_dir,
        )
        yield RunningStack(services, f"http://127.0.0.1:{prometheus_port}")
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(10)
        for service in services.values():
            service.stop()
        for process in (smtp, broker):
            process.terminate()
            process.wait(10)
