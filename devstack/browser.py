"""The browser tests' stack: intake, geo-router, notifier and web as real processes on free
ports, against their own broker and database and a recording SMTP server (see
``services/web/tests/conftest.py`` for the fixtures), and helpers for the tests.

Real processes, not the in-process ``stack`` of the root conftest: Playwright's sync API
cannot drive a browser inside pytest-asyncio's running session loop, and web must reach the
services over TCP anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from devstack.__main__ import service_env, web_env
from devstack.databases import fresh_database
from devstack.processes import ROOT, free_port, python_module, spawn, start_broker
from devstack.testing import RecordingSmtp
from geo_router.cli import load_jurisdiction
from mm_shared.kafka import ensure_topics, wait_for_broker

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

T = TypeVar("T")
LOGS = ROOT / "var" / "test-log"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
#: A phone: the viewport of the tests unless a test asks for another.
PHONE: ViewportSize = {"width": 375, "height": 740}
#: Web's form limit per e-mail address in the browser stack (the 429 test uses it up).
RATE_LIMIT_PER_EMAIL = 5
#: Leipzig's Markt, and a place well outside the city (Munich).
MARKT = (51.3397, 12.3731)
OUTSIDE = (48.137, 11.575)


def wait_until(probe: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy (the sync twin of ``eventually``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {value!r})")
        time.sleep(interval_s)


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    answer = httpx.get(url, headers=headers, timeout=10)
    return answer.status_code, answer.json() if answer.content else None


@dataclass
class BrowserStack:
    web: str
    intake: str
    geo_router: str
    notifier: str
    smtp: RecordingSmtp
    database_url: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def mails_to(self, address: str) -> list[EmailMessage]:
        return self.smtp.to(address)

    def report(self, report_id: str) -> dict[str, Any]:
        """The report as intake's public API tells it."""
        status, body = get_json(
            f"{self.intake}/api/v1/reports/{report_id}", {"Accept": "application/json"}
        )
        assert status == 200, body
        return dict(body)

    def submit(
        self,
        lat: float = MARKT[0],
        long: float = MARKT[1],
        service_code: str = "001",
        **fields: Any,
    ) -> str:
        """A report straight through intake's API (set-up for pages that show one); its id."""
        answer = httpx.post(
            f"{self.intake}/api/v1/reports",
            json={"service_code": service_code, "lat": lat, "long": long, **fields},
            headers={"X-Acknowledge-Duplicate": "true"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def has_endpoint(self, service: str, method: str, path: str) -> bool:
        """Whether a service's OpenAPI document lists ``method path`` (tests of endpoints that
        other branches add skip until they are there)."""
        url = {"intake": self.intake, "notifier": self.notifier}[service]
        paths = httpx.get(f"{url}/openapi.json", timeout=10).json().get("paths", {})
        return method.lower() in paths.get(path, {})

    def cli(self, service: str, *args: str) -> str:
        """Run a service's CLI (e.g. ``intake staff-token --office VTA-OST``) against this
        stack; returns what it printed."""
        done = subprocess.run(
            python_module(f"{service.replace('-', '_')}.cli", *args),
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout


def _healthy(url: str, consumers: bool) -> bool:
    try:
        status, health = get_json(f"{url}/healthz")
    except httpx.TransportError:
        return False
    if consumers:
        return status == 200 and health.get("consumers") == "assigned"
    return status == 200


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


#: WCAG 2.1 A and AA (BITV 2.0 / EN 301 549), and axe's best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now (rules, nodes, why)."""
    from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

    results = Axe().run(
        page,
        options={"runOnly": {"type": "tag", "values": AXE_TAGS}},
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in results.response["violations"]
    ]


@contextlib.contextmanager
def running_browser_stack(database: str) -> Iterator[BrowserStack]:
    """Broker, database, SMTP, the three services and web; everything stopped on the way out,
    also when starting fails half-way."""
    with contextlib.ExitStack() as cleanup:
        kafka_port = free_port()
        broker = start_broker(kafka_port, log_dir=LOGS)
        cleanup.callback(broker.wait, 10)
        cleanup.callback(broker.terminate)
        kafka = f"127.0.0.1:{kafka_port}"

        async def prepare() -> str:
            await wait_for_broker(kafka)
            await ensure_topics(kafka)
            url = await fresh_database(database)
            await load_jurisdiction(url, ROOT / "data" / "leipzig" / "jurisdiction.yaml")
            return url

        # In a thread of its own: Playwright's sync API may already run its loop in this one.
        with ThreadPoolExecutor(1) as thread:
            database_url = thread.submit(asyncio.run, prepare()).result()
        smtp = RecordingSmtp(free_port())
        smtp.start()
        cleanup.callback(smtp.stop)
        ports = {"intake": free_port(), "geo-router": free_port(), "notifier": free_port()}
        web_port = free_port()
        env = service_env(ports, database_url, kafka, smtp.port, web_port)
        env |= {
            "INTAKE_API_KEYS": '["test-key"]',
            "INTAKE_PHOTO_DIR": str(ROOT / "var" / "test-photos-browser"),
            "INTAKE_RESUBMIT_AFTER_S": "5",
            "INTAKE_REPORTER_TOKEN_SECRET": "browser-tests-reporter-token-secret-0123456789",
            # Every page's requests reach intake from one address: web's limits are under test
            # here (intake's have their own tests).
            "INTAKE_RATE_LIMIT_PER_ADDRESS": "0",
            "INTAKE_RATE_LIMIT_PER_EMAIL": "0",
            "NOTIFIER_MAX_ATTEMPTS": "3",
        }
        env |= web_env(ports, web_port) | {
            "WEB_RATE_LIMIT_PER_EMAIL": str(RATE_LIMIT_PER_EMAIL),
            "WEB_RATE_LIMIT_PER_ADDRESS": "10000",
            "WEB_SECRET_KEY": "browser-test-secret",
        }
        stack = BrowserStack(
            web=f"http://127.0.0.1:{web_port}",
            intake=f"http://127.0.0.1:{ports['intake']}",
            geo_router=f"http://127.0.0.1:{ports['geo-router']}",
            notifier=f"http://127.0.0.1:{ports['notifier']}",
            smtp=smtp,
            database_url=database_url,
            env=env,
        )
        names = {**{s: f"{s.replace('-', '_')}.cli" for s in ports}, "web": "web.cli"}
        for service, module in names.items():
            process = spawn(f"browser-{service}", python_module(module, "serve"), env, LOGS)
            stack.processes[service] = process
            cleanup.callback(_stop, process)
        for port in ports.values():
            wait_until(partial(_healthy, f"http://127.0.0.1:{port}", True), 90)
        wait_until(lambda: _healthy(stack.web, False), 60)
        yield stack
