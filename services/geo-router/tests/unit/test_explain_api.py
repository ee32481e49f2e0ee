"""The explain API's module-level routes with their dependencies on fakes (conftest.py): the
deployment's default jurisdiction comes from the application's state, in answers and in the
document alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from geo_router.entrypoints import http
from geo_router.ports import RoutingCache, UnitOfWorkFactory

#: A loop of each test's own: see test_routing_reports.py.
pytestmark = pytest.mark.asyncio(loop_scope="function")


@pytest_asyncio.fixture(loop_scope="function")
async def client(
    unit_of_work: UnitOfWorkFactory, cache: RoutingCache
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(http.router)
    http.install(app, http.HttpState(unit_of_work, cache, default_jurisdiction="umland"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://geo-router") as c:
        yield c


async def test_a_client_naming_no_jurisdiction_gets_the_deployments_default(
    client: httpx.AsyncClient,
) -> None:
    default = await client.get("/v1/offices")
    named = await client.get("/v1/offices", params={"jurisdiction": "leipzig"})
    assert default.status_code == named.status_code == 200
    assert [o["public_name"] for o in default.json()] == ["Kreisamt"]
    assert [o["code"] for o in named.json()] == ["ASG", "VTA"]

    rules = await client.get("/v1/rules")
    assert [r["office"]["name"] for r in rules.json()] == ["Kreisamt"]


@pytest.mark.parametrize(
    ("jurisdiction", "error"),
    [
        ("atlantis", "unknown_jurisdiction"),
        ("altstadt", "retired_jurisdiction"),
        ("", "unknown_jurisdiction"),
    ],
)
async def test_a_jurisdiction_not_served_is_a_404_in_geo_routers_shape(
    client: httpx.AsyncClient, jurisdiction: str, error: str
) -> None:
    answer = await client.get("/v1/rules", params={"jurisdiction": jurisdiction})
    assert answer.status_code == 404
    body: dict[str, Any] = answer.json()
    assert body["error"] == error
    assert body["problems"][0]["field"] == "jurisdiction"


async def test_the_route_is_explained_in_the_covering_or_the_named_jurisdiction(
    client: httpx.AsyncClient,
) -> None:
    place: dict[str, str | float] = {"lat": 51.38, "long": 12.37, "service_code": "001"}
    covering = await client.get("/v1/route", params=place)
    assert covering.status_code == 200
    assert covering.json()["jurisdiction"] == "leipzig"
    assert covering.json()["office"]["code"] == "ASG"
    assert covering.json()["rule"]["id"] == 2

    named = await client.get("/v1/route", params={**place, "jurisdiction": "umland"})
    assert named.json()["office"] == {"code": "VTA", "name": "Kreisamt"}

    outside = await client.get("/v1/route", params={**place, "lat": 48.14, "long": 11.58})
    assert outside.status_code == 404
    assert outside.json()["error"] == "outside_jurisdiction"
    assert "Leipzig, Umland" in outside.json()["detail"]

    no_office = await client.get("/v1/route", params={**place, "service_code": "002"})
    assert no_office.status_code == 404
    assert no_office.json()["error"] == "no_responsible_office"
    assert [a["code"] for a in no_office.json()["areas"]] == ["1", "10"]


async def test_the_document_names_the_deployments_default(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    parameters = {
        (path, p["name"]): p
        for path, ops in document["paths"].items()
        for p in ops["get"].get("parameters", [])
    }
    for path in ("/v1/areas", "/v1/areas/{level}/{code}", "/v1/rules", "/v1/offices"):
        jurisdiction = parameters[(path, "jurisdiction")]
        assert jurisdiction["schema"]["default"] == "umland"
        assert "without it, 'umland'" in jurisdiction["description"]
    # The explain API's own parameter has no default: the covering jurisdiction decides.
    assert "default" not in parameters[("/v1/route", "jurisdiction")]["schema"]
