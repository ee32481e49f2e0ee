"""One deployment, many jurisdictions (issue 19): Köln is served beside Leipzig by the same
intake, geo-router and notifier. A report belongs to the jurisdiction that covers its place (or
the one it names), is routed to that city's offices and handled by its staff; office codes
repeat across cities (both have an Ordnungsamt "OA") without either seeing the other's tickets."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import API_KEY, Stack
from devstack.testing import eventually
from intake.adapters import staff
from mm_shared.events import Topic

BERLIN = {"lat": 52.52, "long": 13.405}
BICYCLE = {"vehicle_kind": ["bicycle"]}


def koeln_altstadt_sued() -> dict[str, float]:
    """A fresh spot in Altstadt/Süd (Stadtteil 101, left bank: roads go to ASR-LINKS)."""
    return {
        "lat": round(50.9333 + random.uniform(-0.0008, 0.0008), 6),
        "long": round(6.9556 + random.uniform(-0.0008, 0.0008), 6),
    }


def leipzig_mitte() -> dict[str, float]:
    return {
        "lat": round(random.uniform(51.336, 51.342), 6),
        "long": round(random.uniform(12.372, 12.382), 6),
    }


async def koeln_known(stack: Stack) -> None:
    """Intake holds both cities' outlines (they arrive from geo-router by event)."""

    async def both() -> bool:
        answer = (await stack.intake.get("/api/v1/jurisdictions")).json()
        return {"koeln", "leipzig"} <= {j["code"] for j in answer["jurisdictions"]}

    await eventually(both)


async def token_for(stack: Stack, jurisdiction: str, *offices: str) -> dict[str, str]:
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            name = f"{jurisdiction}-{'-'.join(offices)}-{random.randrange(10**9)}"
            _, token = await staff.create_account(conn, name, offices, jurisdiction=jurisdiction)
    finally:
        await engine.dispose()
    return {"Authorization": f"Bearer {token}"}


async def submit(stack: Stack, **body: Any) -> UUID:
    response = await stack.intake.post(
        "/api/v1/reports", json=body, headers={"X-Acknowledge-Duplicate": "true"}
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def assigned_to(stack: Stack, report_id: UUID) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body: dict[str, Any] = (await stack.intake.get(f"/api/v1/reports/{report_id}")).json()
        return body if body["status"] == "assigned" else None

    return await eventually(check)


async def test_a_report_in_koeln_is_accepted_natively_and_routed_to_a_koeln_office(
    stack: Stack,
) -> None:
    await koeln_known(stack)
    report_id = await submit(stack, service_code="001", **koeln_altstadt_sued())
    report = await assigned_to(stack, report_id)
    assert report["jurisdiction"] == "koeln"
    assert report["office"]["code"] == "ASR-LINKS"
    # Every report event intake writes names the jurisdiction.
    [submitted] = await eventually(lambda: _records(stack, report_id, Topic.REPORT_SUBMITTED))
    assert submitted.json()["jurisdiction"] == "koeln"
    [changed] = await eventually(lambda: _records(stack, report_id, Topic.REPORT_STATUS_CHANGED))
    assert changed.json()["jurisdiction"] == "koeln"

    named = await submit(stack, service_code="001", jurisdiction="koeln", **koeln_altstadt_sued())
    assert (await assigned_to(stack, named))["office"]["code"] == "ASR-LINKS"


async def _records(stack: Stack, report_id: UUID, topic: Topic) -> list[Any]:
    return stack.tap.about(report_id, topic)


@pytest.mark.parametrize("jurisdiction_id", [None, "koeln"])
async def test_a_report_in_koeln_is_accepted_through_open311(
    stack: Stack, jurisdiction_id: str | None
) -> None:
    await koeln_known(stack)
    spot = koeln_altstadt_sued()
    form = {"api_key": API_KEY, "service_code": "001", "lat": str(spot["lat"])}
    form |= {"long": str(spot["long"]), "description": "Schlagloch am Heumarkt"}
    if jurisdiction_id:
        form["jurisdiction_id"] = jurisdiction_id
    response = await stack.intake.post("/open311/v2/requests.json", data=form)
    assert response.status_code == 201, response.text
    report_id = UUID(response.json()[0]["service_request_id"])
    report = await assigned_to(stack, report_id)
    assert (report["jurisdiction"], report["office"]["code"]) == ("koeln", "ASR-LINKS")
    found = await stack.intake.get(
        f"/open311/v2/requests/{report_id}.json", params={"jurisdiction_id": "koeln"}
    )
    assert found.json()[0]["agency_responsible"] == (
        "Amt für Straßen und Radwegebau – linksrheinisch"
    )
    elsewhere = await stack.intake.get(
        f"/open311/v2/requests/{report_id}.json", params={"jurisdiction_id": "leipzig"}
    )
    assert elsewhere.status_code == 404
    for listed_in, count in (("koeln", 1), ("leipzig", 0)):
        listed = await stack.intake.get(
            "/open311/v2/requests.json",
            params={"service_request_id": str(report_id), "jurisdiction_id": listed_in},
        )
        assert len(listed.json()) == count


async def test_an_unknown_jurisdiction_is_a_404(stack: Stack) -> None:
    await koeln_known(stack)
    form = {"api_key": API_KEY, "service_code": "001", "jurisdiction_id": "atlantis"}
    form |= {"lat": "50.9333", "long": "6.9556"}
    open311 = await stack.intake.post("/open311/v2/requests.json", data=form)
    assert open311.status_code == 404
    [error] = open311.json()
    assert error["code"] == 404
    assert "atlantis" in error["description"]
    assert "koeln" in error["description"]
    assert "leipzig" in error["description"]
    listed = await stack.intake.get(
        "/open311/v2/services.json", params={"jurisdiction_id": "atlantis"}
    )
    assert listed.status_code == 404
    as_xml = await stack.intake.get(
        "/open311/v2/services.xml", params={"jurisdiction_id": "atlantis"}
    )
    assert as_xml.status_code == 404
    assert "<errors>" in as_xml.text
    native = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "001", "lat": 50.9333, "long": 6.9556, "jurisdiction": "atlantis"},
    )
    assert native.status_code == 404
    assert native.json()["errors"][0]["code"] == "unknown_jurisdiction"
    assert native.json()["errors"][0]["field"] == "jurisdiction"


async def test_a_place_in_neither_city_is_refused_naming_both(stack: Stack) -> None:
    await koeln_known(stack)
    native = await stack.intake.post("/api/v1/reports", json={"service_code": "001", **BERLIN})
    assert native.status_code == 422
    [error] = native.json()["errors"]
    assert error["code"] == "outside_jurisdiction"
    # Each name once (other tests of the session may load more jurisdictions, one also named
    # "Stadt Köln"): Köln before Leipzig, in alphabetical order.
    assert "outside the areas this service covers: Stadt Köln, " in error["message"]
    assert error["message"].count("Stadt Köln") == 1
    assert "Stadt Leipzig" in error["message"]
    form = {"api_key": API_KEY, "service_code": "001", "lat": "52.52", "long": "13.405"}
    open311 = await stack.intake.post("/open311/v2/requests.json", data=form)
    assert open311.status_code == 400
    assert "Stadt Köln, " in open311.json()[0]["description"]
    assert "Stadt Leipzig" in open311.json()[0]["description"]


async def test_a_named_jurisdiction_must_cover_the_place(stack: Stack) -> None:
    await koeln_known(stack)
    refused = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "001", "jurisdiction": "leipzig", **koeln_altstadt_sued()},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert refused.status_code == 422
    assert "outside the area of Stadt Leipzig" in refused.json()["errors"][0]["message"]


async def test_the_jurisdictions_are_listed_for_clients(stack: Stack) -> None:
    await koeln_known(stack)
    answer = (await stack.intake.get("/api/v1/jurisdictions")).json()["jurisdictions"]
    assert [j["code"] for j in answer] == sorted(j["code"] for j in answer)
    koeln = next(j for j in answer if j["code"] == "koeln")
    assert koeln["name"] == "Stadt Köln"
    min_lon, min_lat, max_lon, max_lat = koeln["bbox"]
    assert min_lon < 6.9556 < max_lon
    assert min_lat < 50.9333 < max_lat
    discovery = (await stack.intake.get("/open311/v2/discovery.json")).json()
    assert {"jurisdiction_id": "koeln", "name": "Stadt Köln"} in discovery["jurisdictions"]


async def test_koeln_switched_graffiti_off(stack: Stack) -> None:
    await koeln_known(stack)
    answer = (await stack.intake.get("/api/v1/jurisdictions")).json()["jurisdictions"]
    assert next(j for j in answer if j["code"] == "koeln")["disabled_service_codes"] == ["011"]
    koeln = await stack.intake.get("/open311/v2/services.json", params={"jurisdiction_id": "koeln"})
    codes = {s["service_code"] for s in koeln.json()}
    assert "011" not in codes
    assert "001" in codes
    leipzig = await stack.intake.get(
        "/open311/v2/services.json", params={"jurisdiction_id": "leipzig"}
    )
    assert "011" in {s["service_code"] for s in leipzig.json()}
    native = await stack.intake.get("/api/v1/services", params={"jurisdiction": "koeln"})
    assert "011" not in {s["service_code"] for s in native.json()}
    refused = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "011", **koeln_altstadt_sued()},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["code"] == "service_disabled"


async def test_a_koeln_member_of_staff_closes_a_koeln_report(stack: Stack) -> None:
    await koeln_known(stack)
    report_id = await submit(
        stack, service_code="001", email="koeln@example.org", **koeln_altstadt_sued()
    )
    await assigned_to(stack, report_id)
    koeln = await token_for(stack, "koeln", "ASR-LINKS")
    ticket = await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=koeln)
    assert ticket.status_code == 200
    assert ticket.json()["jurisdiction"] == "koeln"
    closed = await stack.intake.post(
        f"/api/v1/staff/tickets/{report_id}/transitions",
        json={"status": "resolved", "public_note": "Ausgebessert."},
        headers=koeln,
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "resolved"

    async def resolved_event() -> list[Any]:
        return [
            r
            for r in stack.tap.about(report_id, Topic.REPORT_STATUS_CHANGED)
            if r.json()["status"] == "resolved"
        ]

    [event] = await eventually(resolved_event)
    assert event.json()["jurisdiction"] == "koeln"


async def test_the_koeln_reporter_hears_from_maengelmelder_koeln(stack: Stack) -> None:
    await koeln_known(stack)
    address = f"koeln-{random.randrange(10**9)}@example.org"
    report_id = await submit(stack, service_code="001", email=address, **koeln_altstadt_sued())
    await assigned_to(stack, report_id)
    koeln = await token_for(stack, "koeln", "ASR-LINKS")
    closed = await stack.intake.post(
        f"/api/v1/staff/tickets/{report_id}/transitions",
        json={"status": "resolved", "public_note": "Ausgebessert."},
        headers=koeln,
    )
    assert closed.status_code == 200

    async def two_mails() -> list[Any] | None:
        found = stack.smtp.to(address)
        return found if len(found) >= 2 else None

    mails = await eventually(two_mails)
    assert all("Mängelmelder Köln" in str(m["From"]) for m in mails)


async def test_a_leipzig_office_never_sees_the_koeln_office_of_the_same_code(
    stack: Stack,
) -> None:
    await koeln_known(stack)
    # Abandoned vehicles go to the Ordnungsamt ("OA") in both cities.
    in_koeln = await submit(stack, service_code="010", attributes=BICYCLE, **koeln_altstadt_sued())
    in_leipzig = await submit(stack, service_code="010", attributes=BICYCLE, **leipzig_mitte())
    assert (await assigned_to(stack, in_koeln))["office"]["code"] == "OA"
    assert (await assigned_to(stack, in_leipzig))["office"]["code"] == "OA"
    leipzig_oa = await token_for(stack, "leipzig", "OA")
    koeln_oa = await token_for(stack, "koeln", "OA")

    for member, mine, theirs in (
        (leipzig_oa, in_leipzig, in_koeln),
        (koeln_oa, in_koeln, in_leipzig),
    ):
        seen = await stack.intake.get(
            "/api/v1/staff/tickets", params={"page_size": 1000}, headers=member
        )
        ids = {t["id"] for t in seen.json()["items"]}
        assert str(mine) in ids
        assert str(theirs) not in ids
        assert len({t["jurisdiction"] for t in seen.json()["items"]}) == 1
        found = await stack.intake.get(f"/api/v1/staff/tickets/{theirs}", headers=member)
        assert found.status_code == 404
        moved = await stack.intake.post(
            f"/api/v1/staff/tickets/{theirs}/transitions",
            json={"status": "in_progress"},
            headers=member,
        )
        assert moved.status_code == 404
        csv = await stack.intake.get("/api/v1/staff/tickets.csv", headers=member)
        assert str(mine) in csv.text
        assert str(theirs) not in csv.text
        other = await stack.intake.get(
            "/api/v1/staff/tickets", params={"jurisdiction": "elsewhere"}, headers=member
        )
        assert other.status_code == 403

    # Canned responses: the same title for both OAs, each sees its own.
    title = f"Abgeschleppt {random.randrange(10**9)}"
    for member, body in ((leipzig_oa, "Leipzig"), (koeln_oa, "Köln")):
        kept = await stack.intake.post(
            "/api/v1/staff/canned-responses",
            json={"office_code": "OA", "title": title, "body": body},
            headers=member,
        )
        assert kept.status_code == 201, kept.text
    for member, body in ((leipzig_oa, "Leipzig"), (koeln_oa, "Köln")):
        listed = (await stack.intake.get("/api/v1/staff/canned-responses", headers=member)).json()
        assert [c["body"] for c in listed if c["title"] == title] == [body]

    me = (await stack.intake.get("/api/v1/staff/me", headers=koeln_oa)).json()
    assert me["jurisdiction"] == "koeln"
    statistics = await stack.intake.get("/api/v1/staff/statistics", headers=koeln_oa)
    assert statistics.json()["jurisdiction"] == "koeln"


async def test_office_reminders_follow_each_jurisdiction_s_holidays(stack: Stack) -> None:
    """On a public holiday of Köln's but not Leipzig's, only Leipzig's offices are reminded
    (and their reminders name their jurisdiction); Köln's come the next working day."""
    from intake import handlers
    from intake.adapters import db
    from mm_shared.db import create_engine
    from mm_shared.outbox import KafkaPublisher, Outbox

    await koeln_known(stack)
    in_koeln = await submit(stack, service_code="010", attributes=BICYCLE, **koeln_altstadt_sued())
    in_leipzig = await submit(stack, service_code="010", attributes=BICYCLE, **leipzig_mitte())
    await assigned_to(stack, in_koeln)
    await assigned_to(stack, in_leipzig)
    engine = create_engine(stack.database_url)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE intake.reports SET updated_at = now() - interval '12 days'"
                " WHERE id IN (:a, :b)"
            ),
            {"a": in_koeln, "b": in_leipzig},
        )
    outbox = Outbox(
        engine, db.outbox, db.inbox, KafkaPublisher(stack.kafka, "test"), "test", lease_s=0
    )
    tuesday = date(2099, 1, 6) + timedelta(weeks=random.randrange(1500))
    koeln_holiday = {tuesday}

    def holidays_of(jurisdiction: str) -> set[date]:
        return koeln_holiday if jurisdiction == "koeln" else set()

    limits: dict[str, Any] = {"accept_within_working_days": 3, "work_within_days": 14}
    try:
        await handlers.send_office_reminders(
            db.SqlUnitOfWorks(outbox), tuesday, holidays_of=holidays_of, **limits
        )
        await handlers.send_office_reminders(
            db.SqlUnitOfWorks(outbox),
            tuesday + timedelta(days=1),
            holidays_of=holidays_of,
            **limits,
        )
    finally:
        await engine.dispose()

    def reminders(day: date) -> list[tuple[str, str]]:
        return sorted(
            (r.json()["jurisdiction"], r.json()["office_code"])
            for r in stack.tap.records
            if r.topic == Topic.OFFICE_REMINDER_DUE and r.json()["day"] == day.isoformat()
        )

    async def both_days() -> bool:
        return ("leipzig", "OA") in reminders(tuesday) and ("koeln", "OA") in reminders(
            tuesday + timedelta(days=1)
        )

    await eventually(both_days)
    assert not [r for r in reminders(tuesday) if r[0] == "koeln"]


async def test_the_staff_token_command_makes_a_member_of_a_named_jurisdiction(
    stack: Stack,
) -> None:
    import asyncio
    import os
    import sys

    async def staff_token(*arguments: str) -> tuple[int, str]:
        command = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "intake.cli",
            "staff-token",
            *arguments,
            env={**os.environ, "INTAKE_DATABASE_URL": stack.database_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await command.communicate()
        assert command.returncode is not None
        return command.returncode, (out + err).decode()

    name = f"cli-koeln-{random.randrange(10**9)}"
    code, out = await staff_token("--office", "OA", "--jurisdiction", "koeln", "--name", name)
    assert code == 0, out
    assert "koeln" in out.splitlines()[0]
    headers = {"Authorization": f"Bearer {out.splitlines()[-1]}"}
    me = (await stack.intake.get("/api/v1/staff/me", headers=headers)).json()
    assert (me["jurisdiction"], [o["code"] for o in me["offices"]]) == ("koeln", ["OA"])
    # The same account cannot be moved to another city by accident.
    code, out = await staff_token("--office", "OA", "--jurisdiction", "leipzig", "--name", name)
    assert code != 0
    assert "works for koeln" in out
