"""The public POSTs are rate limited per client address and per e-mail address, and say so
in each API's error shape with Retry-After. An intake app of its own with small limits (the
session's stack has limits the suite never reaches); the requests that pass the limits are
refused right after for an unknown category, so that no report is written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from conftest import API_KEY, service_settings
from intake.adapters.rate_limits import SlidingWindow
from intake.bootstrap import create_app


@pytest.fixture
async def limited(
    kafka_bootstrap: str, database_url: str
) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    settings = service_settings(kafka_bootstrap, database_url, smtp_port=1)["intake"]
    app: FastAPI = create_app(
        settings.model_copy(  # type: ignore[attr-defined]
            update={
                "rate_limit_per_address": 3,
                "rate_limit_per_email": 2,
                "rate_limit_window_s": 600.0,
                "trusted_proxies": ["10.0.0.0/8"],
            }
        )
    )
    clients: list[httpx.AsyncClient] = []

    def client_at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://intake"))
        return clients[-1]

    yield client_at
    for client in clients:
        await client.aclose()


def report(email: str | None = None) -> dict[str, object]:
    # An unknown category: refused (422) after the limits, before anything is stored.
    body: dict[str, object] = {"service_code": "no-such-code", "lat": 51.34, "long": 12.37}
    return body | ({"email": email} if email else {})


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["errors"][0]["code"] == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 600


async def test_per_client_address(limited: Callable[[str], httpx.AsyncClient]) -> None:
    client = limited("192.0.2.1")
    for _ in range(3):
        assert (await client.post("/api/v1/reports", json=report())).status_code == 422
    assert_refused(await client.post("/api/v1/reports", json=report()))
    # The followers' POST counts against the same address, in the same shape.
    assert_refused(
        await client.post(f"/api/v1/reports/{uuid4()}/followers", json={"email": "f@example.org"})
    )
    other = limited("192.0.2.2")
    assert (await other.post("/api/v1/reports", json=report())).status_code == 422


async def test_per_email_address(limited: Callable[[str], httpx.AsyncClient]) -> None:
    for n, email in enumerate(["same@example.org", "Same@Example.org"]):
        response = await limited(f"192.0.2.{10 + n}").post("/api/v1/reports", json=report(email))
        assert response.status_code == 422
    assert_refused(
        await limited("192.0.2.12").post("/api/v1/reports", json=report("SAME@example.org"))
    )
    fresh = await limited("192.0.2.13").post("/api/v1/reports", json=report("new@example.org"))
    assert fresh.status_code == 422


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    limited: Callable[[str], httpx.AsyncClient],
) -> None:
    proxy = limited("10.1.2.3")

    def via(client_address: str) -> dict[str, str]:
        # A client may put anything first; our proxy appends the address it saw.
        return {"X-Forwarded-For": f"198.51.100.99, {client_address}"}

    for _ in range(3):
        response = await proxy.post("/api/v1/reports", json=report(), headers=via("203.0.113.7"))
        assert response.status_code == 422
    assert_refused(await proxy.post("/api/v1/reports", json=report(), headers=via("203.0.113.7")))
    # Another citizen behind the same proxy is not held up by the first.
    response = await proxy.post("/api/v1/reports", json=report(), headers=via("203.0.113.8"))
    assert response.status_code == 422

    direct = limited("192.0.2.20")  # not a proxy of ours: its header is ignored
    for n in range(3):
        response = await direct.post(
            "/api/v1/reports", json=report(), headers=via(f"203.0.113.{30 + n}")
        )
        assert response.status_code == 422
    assert_refused(await direct.post("/api/v1/reports", json=report(), headers=via("203.0.113.40")))


async def test_open311_refuses_in_its_own_shape(
    limited: Callable[[str], httpx.AsyncClient],
) -> None:
    client = limited("192.0.2.30")
    form = {"api_key": API_KEY, "service_code": "no-such-code", "lat": "51.34", "long": "12.37"}
    for _ in range(3):
        # An unknown service_code is GeoReport v2's 404: nothing is written.
        assert (await client.post("/open311/v2/requests.json", data=form)).status_code == 404
    refused = await client.post("/open311/v2/requests.xml", data=form)
    assert refused.status_code == 429
    assert "<code>429</code>" in refused.text
    assert int(refused.headers["Retry-After"]) > 0


def test_a_sliding_window_admits_again_as_old_admissions_expire() -> None:
    now = [1000.0]
    window = SlidingWindow(2, 60.0, clock=lambda: now[0])
    window.admit("a")
    now[0] += 30
    window.admit("a")
    assert window.wait_s("a") == pytest.approx(30.0)
    assert window.wait_s("b") == 0
    now[0] += 30.001
    assert window.wait_s("a") == 0
