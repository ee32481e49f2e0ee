"""Köln beside Leipzig in one deployment: each report routed within its own jurisdiction, office
codes unique per jurisdiction, the manifests' settings announced, reloads that change only what
changed, and the command line's list, show and retire."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import Stack
from devstack.testing import eventually, publish, submitted
from geo_router.cli import load_jurisdiction
from mm_shared.events import ReportReassigned, ReportSubmitted, Topic

DATA = Path(__file__).resolve().parents[3] / "data"
KOELN = DATA / "koeln" / "jurisdiction.yaml"
ALTSTADT_SUED = (50.92918, 6.95533)  # Stadtteil 101, left bank
KALK = (50.93849, 7.00379)  # Stadtteil 802, right bank
CONNEWITZ = (51.30394, 12.36462)  # Leipzig, Stadtbezirk Süd


def in_koeln(place: tuple[float, float], service_code: str = "001") -> ReportSubmitted:
    return submitted(*place, service_code=service_code).model_copy(update={"jurisdiction": "koeln"})


async def routed(stack: Stack, event: ReportSubmitted, topic: Topic = Topic.REPORT_ROUTED) -> Any:
    await publish(stack.kafka, event)

    async def announced():  # type: ignore[no-untyped-def]
        return stack.tap.about(event.report_id, topic)

    return (await eventually(announced))[-1].json()


async def test_a_pothole_in_koeln_goes_to_the_road_office_of_its_bank_of_the_rhine(
    stack: Stack,
) -> None:
    left = await routed(stack, in_koeln(ALTSTADT_SUED))
    assert left["office"]["code"] == "ASR-LINKS"
    assert left["jurisdiction"] == "koeln"
    assert left["areas"] == [{"level": "stadtteil", "code": "101", "name": "Altstadt/Süd"}]
    assert left["rule"].startswith("Regel ")
    assert "im Stadtteil Altstadt/Süd" in left["rule"]
    right = await routed(stack, in_koeln(KALK))
    assert (right["office"]["code"], right["jurisdiction"]) == ("ASR-RECHTS", "koeln")


async def test_a_pothole_in_leipzig_still_goes_to_leipzigs_office(stack: Stack) -> None:
    body = await routed(stack, submitted(*CONNEWITZ))
    assert (body["office"]["code"], body["jurisdiction"]) == ("VTA-SUED", "leipzig")


async def test_a_report_is_routed_within_its_own_jurisdiction_only(stack: Stack) -> None:
    # A point in Köln, reported as Leipzig's: Leipzig's areas do not cover it.
    event = submitted(*ALTSTADT_SUED)
    failed = await routed(stack, event, Topic.REPORT_ROUTING_FAILED)
    assert (failed["reason"], failed["jurisdiction"]) == ("outside_jurisdiction", "leipzig")


async def test_the_same_office_code_resolves_within_each_jurisdiction(stack: Stack) -> None:
    koeln = await routed(stack, in_koeln(ALTSTADT_SUED, "010"))
    leipzig = await routed(stack, submitted(*CONNEWITZ, service_code="010"))
    assert koeln["office"] == {"code": "OA", "name": "Ordnungsamt der Stadt Köln"}
    assert leipzig["office"] == {"code": "OA", "name": "Ordnungsamt"}
    offices = {
        j: {
            o["code"]: o["email"]
            for o in (await stack.geo_router.get("/v1/offices", params={"jurisdiction": j})).json()
        }
        for j in ("koeln", "leipzig")
    }
    assert offices["koeln"]["OA"] == "ordnungsamt@koeln.example"
    assert offices["leipzig"]["OA"] == "ordnungsamt@leipzig.example"
    assert "ASR-LINKS" not in offices["leipzig"]
    # A reassignment names the office within the report's jurisdiction.
    pothole = in_koeln(KALK)
    await routed(stack, pothole)
    await publish(
        stack.kafka,
        ReportReassigned(
            report_id=pothole.report_id,
            jurisdiction="koeln",
            office_code="OA",
            reassigned_by="staff:koeln-1",
        ),
    )

    async def overridden():  # type: ignore[no-untyped-def]
        records = stack.tap.about(pothole.report_id, Topic.REPORT_ROUTED)
        return records[-1].json() if len(records) == 2 else None

    override = await eventually(overridden)
    assert override["office"] == {"code": "OA", "name": "Ordnungsamt der Stadt Köln"}
    assert override["jurisdiction"] == "koeln"


async def test_the_explain_api_takes_the_jurisdiction_or_the_one_covering_the_point(
    stack: Stack,
) -> None:
    place: dict[str, str | float] = {"lat": KALK[0], "long": KALK[1], "service_code": "001"}
    named = await stack.geo_router.get("/v1/route", params={**place, "jurisdiction": "koeln"})
    covering = await stack.geo_router.get("/v1/route", params=place)
    assert named.json()["office"]["code"] == covering.json()["office"]["code"] == "ASR-RECHTS"
    assert covering.json()["jurisdiction"] == "koeln"
    rules = await stack.geo_router.get("/v1/rules", params={"jurisdiction": "koeln"})
    assert {r["office"]["code"] for r in rules.json()} >= {"ASR-LINKS", "ASR-RECHTS", "OA"}
    for path in ("/v1/rules", "/v1/offices", "/v1/areas"):
        unknown = await stack.geo_router.get(path, params={"jurisdiction": "atlantis"})
        assert unknown.status_code == 404, path
        assert unknown.json()["error"] == "unknown_jurisdiction"
    listed = (await stack.geo_router.get("/v1/jurisdictions")).json()
    koeln = next(j for j in listed if j["code"] == "koeln")
    assert koeln == {
        "code": "koeln",
        "name": "Stadt Köln",
        "precedence": 10,
        "disabled_service_codes": ["011"],
        "retired": False,
    }


async def test_koelns_settings_are_announced_with_its_outline_and_directory(
    stack: Stack,
) -> None:
    async def latest(topic: Topic):  # type: ignore[no-untyped-def]
        found = [r for r in stack.tap.records if r.topic == topic and r.key == b"koeln"]
        return found[-1].json() if found else None

    boundary = await eventually(lambda: latest(Topic.JURISDICTION_BOUNDARY))
    assert (boundary["precedence"], boundary["disabled_service_codes"]) == (10, ["011"])
    assert boundary["retired"] is False
    directory = await eventually(lambda: latest(Topic.OFFICE_DIRECTORY))
    assert directory["sender_name"] == "Mängelmelder Köln"
    assert (directory["holidays_country"], directory["holidays_subdivision"]) == ("DE", "NW")
    assert {o["code"] for o in directory["offices"]} >= {"ASR-LINKS", "OA"}


async def _state(stack: Stack, jurisdiction: str) -> tuple[dict[Any, int], dict[str, int]]:
    """Current rule ids by what they say, and area versions by code."""
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.connect() as conn:
            rules = await conn.execute(
                sa.text(
                    "SELECT id, service_code, area_code, priority, office_code"
                    " FROM geo_router.rules WHERE jurisdiction = :j AND valid_to IS NULL"
                ),
                {"j": jurisdiction},
            )
            areas = await conn.execute(
                sa.text(
                    "SELECT code, version FROM geo_router.areas"
                    " WHERE jurisdiction = :j AND valid_to IS NULL"
                ),
                {"j": jurisdiction},
            )
            return (
                {(r.service_code, r.area_code, r.priority, r.office_code): r.id for r in rules},
                {a.code: a.version for a in areas},
            )
    finally:
        await engine.dispose()


def changed_copy(tmp_path: Path, rule_office: str, area_name: str) -> Path:
    """Köln's manifest with the office of its public-order rule and one Stadtteil's name
    changed."""
    stadtteile = json.loads((DATA / "koeln" / "stadtteile.geojson").read_text())
    for feature in stadtteile["features"]:
        if feature["properties"]["STT_NR"] == "802":
            feature["properties"]["STT_NAME"] = area_name
    (tmp_path / "stadtteile.geojson").write_text(json.dumps(stadtteile))
    text = KOELN.read_text().replace(
        '{service_codes: ["010"], office: OA}', f'{{service_codes: ["010"], office: {rule_office}}}'
    )
    assert rule_office == "OA" or text != KOELN.read_text()
    path = tmp_path / "jurisdiction.yaml"
    path.write_text(text)
    return path


async def test_reloading_koeln_changes_only_what_changed(stack: Stack, tmp_path: Path) -> None:
    rules_before, areas_before = await _state(stack, "koeln")
    summary = await load_jurisdiction(stack.database_url, KOELN)
    assert "86 areas of level stadtteil (version 1, unchanged)" in summary
    assert "repaired: 202 Marienburg: Ring Self-intersection" in summary
    assert "nothing changed" in summary
    assert await _state(stack, "koeln") == (rules_before, areas_before)

    try:
        summary = await load_jurisdiction(stack.database_url, changed_copy(tmp_path, "MM", "Kalk!"))
        assert "(version 2: 0 added, 1 changed, 0 removed, 85 unchanged)" in summary
        rules_after, areas_after = await _state(stack, "koeln")
        gone = {k: v for k, v in rules_before.items() if k not in rules_after}
        new = {k: v for k, v in rules_after.items() if k not in rules_before}
        assert list(gone) == [("010", None, 0, "OA")]
        assert list(new) == [("010", None, 0, "MM")]
        assert new[("010", None, 0, "MM")] > max(rules_before.values())
        assert {k: v for k, v in areas_after.items() if v != areas_before[k]} == {"802": 2}

        async def office_for_public_order() -> str | None:
            params: dict[str, str | float] = {
                "lat": KALK[0],
                "long": KALK[1],
                "service_code": "010",
            }
            body = (await stack.geo_router.get("/v1/route", params=params)).json()
            code: str | None = body.get("office", {}).get("code")
            return code

        await eventually(lambda: _is(office_for_public_order, "MM"))
    finally:
        await load_jurisdiction(stack.database_url, KOELN)
    # Back as before: the ids of the rules that never changed are still the first ones.
    rules_back, _ = await _state(stack, "koeln")
    assert {k: v for k, v in rules_back.items() if k[0] != "010"} == {
        k: v for k, v in rules_before.items() if k[0] != "010"
    }


async def _is(probe, expected) -> bool:  # type: ignore[no-untyped-def]
    return bool(await probe() == expected)


async def test_a_dry_run_warns_and_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    text = KOELN.read_text().replace('disabled_service_codes: ["011"]', "")
    text = text.replace('  - {service_codes: ["013"], office: MM}\n', "")
    path = tmp_path / "jurisdiction.yaml"
    path.write_text(text)
    (tmp_path / "stadtteile.geojson").write_bytes(
        (DATA / "koeln" / "stadtteile.geojson").read_bytes()
    )
    before = await _state(stack, "koeln")
    summary = await load_jurisdiction(stack.database_url, path, dry_run=True)
    assert "dry run: nothing was changed" in summary
    warnings = [line.strip() for line in summary.splitlines() if "warning:" in line]
    assert [w.split(":")[1].strip().split(" (")[0] for w in warnings] == [
        "category 011",
        "category 013",
        "office 7",
    ]
    assert "office 7 (MM): no rule sends reports to it" in summary
    assert await _state(stack, "koeln") == before


async def cli(stack: Stack, *args: str) -> tuple[int, str]:
    """``geo-router ARGS`` as an administrator runs it, against the test database."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "geo-router"),
        *args,
        env={**os.environ, "GEO_ROUTER_DATABASE_URL": stack.database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_jurisdictions_are_listed_shown_and_retired(stack: Stack, tmp_path: Path) -> None:
    code, listing = await cli(stack, "jurisdictions", "list")
    assert code == 0, listing
    koeln_line = next(line for line in listing.splitlines() if line.startswith("koeln "))
    # precedence, areas, offices, rule rows (one per category and area)
    assert koeln_line.split()[-4:] == ["10", "86", "7", "442"]
    assert "Stadt Köln" in koeln_line
    assert "active" in koeln_line

    code, shown = await cli(stack, "jurisdictions", "show", "koeln")
    assert code == 0, shown
    assert "mail sender name: Mängelmelder Köln" in shown
    assert "public holidays: DE/NW" in shown
    assert "categories switched off: 011" in shown
    # The version is 1 unless the reload test ran first and changed an area.
    assert re.search(r"1\. stadtteil \(der Stadtteil\): 86 areas, version \d+\n", shown)
    assert "OA: Ordnungsamt der Stadt Köln <ordnungsamt@koeln.example>, 1 rule" in shown

    # A city to retire: Köln's Stadtteile under another code.
    retiree = (
        KOELN.read_text()
        .replace("code: koeln", "code: koeln-alt")
        .replace("precedence: 10", "precedence: 1")
    )
    (tmp_path / "jurisdiction.yaml").write_text(retiree)
    (tmp_path / "stadtteile.geojson").write_bytes(
        (DATA / "koeln" / "stadtteile.geojson").read_bytes()
    )
    await load_jurisdiction(stack.database_url, tmp_path / "jurisdiction.yaml")
    code, said = await cli(stack, "jurisdictions", "retire", "koeln-alt")
    assert code == 0, said
    assert "retired" in said

    async def retirement():  # type: ignore[no-untyped-def]
        found = [
            r.json()
            for r in stack.tap.records
            if r.topic == Topic.JURISDICTION_BOUNDARY and r.key == b"koeln-alt"
        ]
        return found[-1] if found and found[-1]["retired"] else None

    announced = await eventually(retirement)
    assert announced["boundary"] == {"type": "MultiPolygon", "coordinates": []}

    async def refused():  # type: ignore[no-untyped-def]
        params: dict[str, str | float] = {"lat": KALK[0], "long": KALK[1], "service_code": "001"}
        response = await stack.geo_router.get(
            "/v1/route", params={**params, "jurisdiction": "koeln-alt"}
        )
        # Until the reload reaches the routing cache, the new code is merely unknown.
        body = response.json()
        return body if response.status_code == 404 and "retired" in body["detail"] else None

    body = await eventually(refused)
    assert body["error"] == "unknown_jurisdiction"
    assert "retired" in body["detail"]
    failed = await routed(
        stack,
        in_koeln(KALK).model_copy(update={"jurisdiction": "koeln-alt"}),
        Topic.REPORT_ROUTING_FAILED,
    )
    assert failed["reason"] == "unknown_jurisdiction"
    areas = await stack.geo_router.get("/v1/areas", params={"jurisdiction": "koeln-alt"})
    assert (areas.status_code, areas.json()["error"]) == (404, "retired_jurisdiction")
    code, listing = await cli(stack, "jurisdictions", "list")
    assert "retired" in next(line for line in listing.splitlines() if line.startswith("koeln-alt"))

    code, said = await cli(stack, "jurisdictions", "retire", "atlantis")
    assert code == 1
    assert "unknown jurisdiction 'atlantis'" in said
    code, said = await cli(stack, "jurisdictions", "show", "atlantis")
    assert (code, said.strip()) == (
        1,
        "unknown jurisdiction 'atlantis' (geo-router jurisdictions list)",
    )


async def test_the_command_line_refuses_a_broken_manifest_with_numbered_problems(
    stack: Stack, tmp_path: Path
) -> None:
    broken = KOELN.read_text().replace(
        '{service_codes: ["005", "006"], office: AWB}',
        '{service_codes: ["005", "006"], office: AWB, area_level: bezirk, area_codes: [1]}',
    )
    (tmp_path / "jurisdiction.yaml").write_text(broken)
    (tmp_path / "stadtteile.geojson").write_bytes(
        (DATA / "koeln" / "stadtteile.geojson").read_bytes()
    )
    code, said = await cli(stack, "load", "--dry-run", str(tmp_path / "jurisdiction.yaml"))
    assert code == 1
    assert said.strip() == (
        "import refused:\nrule 4 (office AWB): unknown area level 'bezirk' "
        "(the levels are: stadtteil)"
    )
