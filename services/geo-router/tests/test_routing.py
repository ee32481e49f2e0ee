"""Geo-router over the real broker and PostGIS with Leipzig's real districts."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import Stack
from devstack.testing import eventually, publish, submitted
from mm_shared.events import Topic

DATA = Path(__file__).resolve().parents[3] / "data"


async def test_a_report_in_leipzig_is_routed_with_its_areas_and_rule(stack: Stack) -> None:
    event = submitted(51.30394, 12.36462)  # Connewitz, Stadtbezirk Süd
    await publish(stack.kafka, event)
    [routed] = await eventually(lambda: _records(stack, event.report_id, Topic.REPORT_ROUTED))
    body = routed.json()
    assert body["office"]["code"] == "VTA-SUED"
    assert [(a["level"], a["name"]) for a in body["areas"]] == [
        ("stadtbezirk", "Süd"),
        ("ortsteil", "Connewitz"),
    ]
    assert "Priorität 10" in body["rule"]
    assert body["correlation_id"] == str(event.correlation_id)


async def test_a_point_outside_the_city_fails_with_the_reason(stack: Stack) -> None:
    event = submitted(52.52, 13.405)  # Berlin
    await publish(stack.kafka, event)
    [failed] = await eventually(
        lambda: _records(stack, event.report_id, Topic.REPORT_ROUTING_FAILED)
    )
    assert failed.json()["reason"] == "outside_jurisdiction"


async def test_a_redelivered_report_is_routed_once(stack: Stack) -> None:
    event = submitted(51.3397, 12.3731, service_code="005")
    await publish(stack.kafka, event, event)
    await eventually(lambda: _records(stack, event.report_id, Topic.REPORT_ROUTED))
    # A second, later report proves the consumer went past both copies of the first.
    later = submitted(51.3397, 12.3731, service_code="005")
    await publish(stack.kafka, later)
    await eventually(lambda: _records(stack, later.report_id, Topic.REPORT_ROUTED))
    assert len(stack.tap.about(event.report_id, Topic.REPORT_ROUTED)) == 1


async def test_a_resubmission_re_announces_the_same_decision(stack: Stack) -> None:
    event = submitted(51.3397, 12.3731, service_code="006")
    await publish(stack.kafka, event)
    [first] = await eventually(lambda: _records(stack, event.report_id, Topic.REPORT_ROUTED))
    again = event.model_copy(update={"event_id": uuid4(), "resubmission": True})
    await publish(stack.kafka, again)

    async def twice():  # type: ignore[no-untyped-def]
        records = stack.tap.about(event.report_id, Topic.REPORT_ROUTED)
        return records if len(records) == 2 else None

    second = (await eventually(twice))[1]
    assert second.json() == first.json()


async def test_the_explain_api_names_areas_office_and_rule(stack: Stack) -> None:
    response = await stack.geo_router.get(
        "/v1/route", params={"lat": 51.3397, "long": 12.3731, "service_code": "007"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["office"] == {
        "code": "ASG-INNENSTADT",
        "name": "Amt für Stadtgrün und Gewässer – Innenstadt",
    }
    assert {"level": "ortsteil", "code": "00", "name": "Zentrum"} in body["areas"]
    assert "im Ortsteil Zentrum" in body["rule"]["explanation"]
    assert (body["rule"]["area_level"], body["rule"]["area_code"]) == ("ortsteil", "00")

    outside = await stack.geo_router.get(
        "/v1/route", params={"lat": 48.137, "long": 11.575, "service_code": "001"}
    )
    assert outside.status_code == 404
    assert outside.json()["error"] == "outside_jurisdiction"
    unknown = await stack.geo_router.get(
        "/v1/route", params={"lat": 51.3397, "long": 12.3731, "service_code": "999"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["problems"][0]["field"] == "service_code"

    offices = (await stack.geo_router.get("/v1/offices")).json()
    assert {"code": "SRL", "name": "Stadtreinigung Leipzig"}.items() <= offices[
        [o["code"] for o in offices].index("SRL")
    ].items()


async def _records(stack: Stack, report_id, topic):  # type: ignore[no-untyped-def]
    return stack.tap.about(report_id, topic)


async def test_a_vertex_shared_by_two_ortsteile_always_goes_to_the_same_one(
    stack: Stack,
) -> None:
    # A vertex of the boundary between Zentrum (00) and Zentrum-Ost (01), from the real data.
    params: dict[str, str | float] = {
        "lat": 51.34436056624219,
        "long": 12.379275261310742,
        "service_code": "005",
    }
    for _ in range(3):
        body = (await stack.geo_router.get("/v1/route", params=params)).json()
        assert {"level": "ortsteil", "code": "00", "name": "Zentrum"} in body["areas"]


async def test_the_in_memory_index_agrees_with_postgis(stack: Stack) -> None:
    import random

    from sqlalchemy.ext.asyncio import create_async_engine

    from geo_router.adapters.db import Geography
    from geo_router.adapters.index import load_index

    engine = create_async_engine(stack.database_url)
    try:
        index = await load_index(engine, "leipzig")
        assert index is not None
        rng = random.Random(7)
        points = [(rng.uniform(51.23, 51.45), rng.uniform(12.23, 12.55)) for _ in range(300)]
        from_index = index.areas_at_many([p[0] for p in points], [p[1] for p in points])
        async with engine.connect() as conn:
            geography = Geography(conn)
            for (lat, long), expected in zip(points, from_index, strict=True):
                in_postgis = await geography.areas_at("leipzig", lat, long)
                assert {(a.level, a.code) for a in in_postgis} == {
                    (a.level, a.code) for a in expected
                }, (lat, long)
        assert sum(1 for areas in from_index if areas) > 100  # the sample hits the city
    finally:
        await engine.dispose()


async def test_the_jurisdiction_boundary_is_published_for_intake(stack: Stack) -> None:
    async def boundary():  # type: ignore[no-untyped-def]
        return [
            r
            for r in stack.tap.records
            if r.topic == Topic.JURISDICTION_BOUNDARY and r.key == b"leipzig"
        ]

    record = (await eventually(boundary))[-1]
    from shapely.geometry import Point, shape

    outline = shape(record.json()["boundary"])
    assert outline.contains(Point(12.3731, 51.3397))
    assert not outline.contains(Point(13.405, 52.52))
    assert 280e6 < _area_m2(outline) < 320e6  # Leipzig: 297.8 km²


def _area_m2(geometry) -> float:  # type: ignore[no-untyped-def]
    from pyproj import Geod

    return abs(Geod(ellps="WGS84").geometry_area_perimeter(geometry)[0])


async def test_a_staff_reassignment_overrides_the_rules(stack: Stack) -> None:
    from mm_shared.events import ReportReassigned

    event = submitted(51.30394, 12.36462, service_code="001")
    await publish(stack.kafka, event)
    await eventually(lambda: _records(stack, event.report_id, Topic.REPORT_ROUTED))
    await publish(
        stack.kafka,
        ReportReassigned(
            report_id=event.report_id,
            jurisdiction="leipzig",
            office_code="SRL",
            reassigned_by="staff:anna",
            reason="Müll, kein Straßenschaden",
        ),
    )

    async def twice():  # type: ignore[no-untyped-def]
        records = stack.tap.about(event.report_id, Topic.REPORT_ROUTED)
        return records if len(records) == 2 else None

    override = (await eventually(twice))[1].json()
    assert override["office"]["code"] == "SRL"
    assert override["rule"] == "Manuelle Zuweisung durch staff:anna: Müll, kein Straßenschaden"
    # A later resubmission re-announces the override, not the rules' choice.
    again = event.model_copy(update={"event_id": uuid4(), "resubmission": True})
    await publish(stack.kafka, again)

    async def thrice():  # type: ignore[no-untyped-def]
        records = stack.tap.about(event.report_id, Topic.REPORT_ROUTED)
        return records if len(records) == 3 else None

    assert (await eventually(thrice))[2].json()["office"]["code"] == "SRL"


async def test_changed_rules_are_used_without_a_restart(stack: Stack, tmp_path: Path) -> None:
    from geo_router.cli import load_jurisdiction

    districts = DATA / "leipzig" / "stadtbezirke.geojson"

    def manifest(office: str) -> Path:
        path = tmp_path / f"{office}.yaml"
        path.write_text(
            "code: testcity\nname: Test City\n"
            f"levels: [{{code: bezirk, name: Bezirk, rank: 1, file: '{districts}', "
            "code_property: SBZ, name_property: Name}]\n"
            "offices:\n"
            "  - {code: OLD, name: Old office, email: old@test.example}\n"
            "  - {code: NEW, name: New office, email: new@test.example}\n"
            f"rules: [{{service_codes: ['001'], office: {office}}}]\n"
        )
        return path

    params: dict[str, str | float] = {
        "lat": 51.3397,
        "long": 12.3731,
        "service_code": "001",
        "jurisdiction": "testcity",
    }

    async def office() -> str | None:
        response = await stack.geo_router.get("/v1/route", params=params)
        return response.json()["office"]["code"] if response.status_code == 200 else None

    await load_jurisdiction(stack.database_url, manifest("OLD"))
    assert await eventually(lambda: _equals(office, "OLD"))
    await load_jurisdiction(stack.database_url, manifest("NEW"))
    assert await eventually(lambda: _equals(office, "NEW"))


async def _equals(probe: Callable[[], Awaitable[object]], expected: object) -> bool:
    return await probe() == expected


async def test_areas_rules_and_offices_are_published_for_people(stack: Stack) -> None:
    areas = await stack.geo_router.get("/v1/areas", params={"level": "stadtbezirk"})
    assert areas.headers["content-type"].startswith("application/geo+json")
    features = areas.json()["features"]
    assert len(features) == 10
    assert {f["properties"]["name"] for f in features} >= {"Mitte", "Süd", "Nordwest"}
    one = await stack.geo_router.get("/v1/areas/ortsteil/41")
    assert one.json()["properties"]["name"] == "Connewitz"
    assert one.json()["geometry"]["type"] == "MultiPolygon"
    assert (await stack.geo_router.get("/v1/areas/ortsteil/99")).status_code == 404
    rules = (await stack.geo_router.get("/v1/rules")).json()
    assert any(
        r["office"]["code"] == "ASG-INNENSTADT" and r["area_code"] == "00" and r["priority"] == 20
        for r in rules
    )
    assert all(r["explanation"].startswith(f"Regel {r['id']}:") for r in rules)
    mitte = next(r for r in rules if r["area_code"] == "0")
    assert "im Stadtbezirk Mitte →" in mitte["explanation"]


async def test_koeln_with_its_broken_marienburg_imports_and_routes(stack: Stack) -> None:
    from geo_router.cli import import_areas

    summary = await import_areas(
        stack.database_url,
        DATA / "koeln" / "stadtteile.geojson",
        jurisdiction="koeln",
        jurisdiction_name="Stadt Köln",
        level="stadtteil",
        level_name="Stadtteil",
        rank=1,
        code_property="STT_NR",
        name_property="STT_NAME",
    )
    assert "86 areas of koeln level stadtteil" in summary
    assert "repaired: 202 Marienburg: Ring Self-intersection" in summary
    # A new version of the areas alone keeps what the first import named.
    await import_areas(
        stack.database_url,
        DATA / "koeln" / "stadtteile.geojson",
        jurisdiction="koeln",
        jurisdiction_name=None,
        level="stadtteil",
        level_name=None,
        rank=None,
        code_property="STT_NR",
        name_property="STT_NAME",
    )
    engine = create_async_engine(stack.database_url)
    async with engine.connect() as conn:
        names = (
            await conn.execute(
                sa.text(
                    "SELECT j.name, l.name, l.rank FROM geo_router.jurisdictions j "
                    "JOIN geo_router.area_levels l ON l.jurisdiction = j.code WHERE j.code = 'koeln'"
                )
            )
        ).one()
    await engine.dispose()
    assert tuple(names) == ("Stadt Köln", "Stadtteil", 1)
    params: dict[str, str | float] = {
        "lat": 50.89639,
        "long": 6.97585,
        "service_code": "001",
        "jurisdiction": "koeln",
    }

    async def routed_to_marienburg() -> list[dict[str, Any]]:
        body = (await stack.geo_router.get("/v1/route", params=params)).json()
        return [a for a in body.get("areas", []) if a["name"] == "Marienburg"]

    await eventually(routed_to_marienburg)
    # No offices for Köln: the answer says why, and names the area it found.
    response = await stack.geo_router.get("/v1/route", params=params)
    assert response.status_code == 404
    assert response.json()["error"] == "no_responsible_office"
