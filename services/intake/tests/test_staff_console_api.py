"""The staff API behind the console, over the real broker and database: who am I, the queue's
filters, search, sorting, paging and counts, the CSV and open-data exports, service levels,
canned responses, statistics and duplicate candidates."""

from __future__ import annotations

import csv
import io
import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import Stack
from devstack.testing import eventually
from intake.adapters import staff
from intake.catalogue import SERVICE_LEVEL_DAYS


async def token_for(stack: Stack, *offices: str, admin: bool = False) -> dict[str, str]:
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            name = f"console-{'-'.join(offices) or 'admin'}-{random.randrange(10**9)}"
            _, token = await staff.create_account(
                conn, name, offices, is_admin=admin, jurisdiction=None if admin else "leipzig"
            )
    finally:
        await engine.dispose()
    return {"Authorization": f"Bearer {token}"}


async def sql(stack: Stack, statement: str, **params: Any) -> None:
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(statement), params)
    finally:
        await engine.dispose()


def in_mitte() -> dict[str, float]:
    # Stadtbezirk Mitte: roads are VTA-OST's, waste SRL's.
    return {
        "lat": round(random.uniform(51.336, 51.342), 6),
        "long": round(random.uniform(12.372, 12.382), 6),
    }


async def report(
    stack: Stack, description: str, code: str = "001", place: dict[str, float] | None = None
) -> UUID:
    response = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": code, **(place or in_mitte()), "description": description},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def assigned(stack: Stack, *report_ids: UUID) -> None:
    async def all_assigned() -> bool:
        for report_id in report_ids:
            body = (await stack.intake.get(f"/api/v1/reports/{report_id}")).json()
            if body["status"] != "assigned":
                return False
        return True

    await eventually(all_assigned)


async def move(stack: Stack, office: dict[str, str], report_id: UUID, **body: Any) -> Any:
    response = await stack.intake.post(
        f"/api/v1/staff/tickets/{report_id}/transitions", json=body, headers=office
    )
    assert response.status_code == 200, response.text
    return response.json()


async def queue(stack: Stack, office: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await stack.intake.get("/api/v1/staff/tickets", params=params, headers=office)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [t["id"] for t in body["items"]]


async def test_me_names_the_member_their_offices_and_role(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST", "SRL")
    me = await stack.intake.get("/api/v1/staff/me", headers=office)
    assert me.status_code == 200
    body = me.json()
    assert body["name"].startswith("console-VTA-OST-SRL-")
    assert [o["code"] for o in body["offices"]] == ["SRL", "VTA-OST"]
    assert body["admin"] is False
    admin = await stack.intake.get("/api/v1/staff/me", headers=await token_for(stack, admin=True))
    assert admin.json()["admin"] is True
    for headers in ({}, {"Authorization": "Bearer mm_not-a-token"}):
        refused = await stack.intake.get("/api/v1/staff/me", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["code"] == "unauthorized"


async def test_an_admin_asking_for_the_offices_of_an_unknown_city_gets_a_404(
    stack: Stack,
) -> None:
    """Not the 503 of a directory that has not arrived yet: that one clears, this one never."""
    await stack.boundary_known()
    admin = await token_for(stack, admin=True)
    known = await stack.intake.get(
        "/api/v1/staff/offices", params={"jurisdiction": "koeln"}, headers=admin
    )
    assert known.status_code == 200, known.text
    assert "OA" in {office["code"] for office in known.json()}
    unknown = await stack.intake.get(
        "/api/v1/staff/offices", params={"jurisdiction": "null"}, headers=admin
    )
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["code"] == "unknown_jurisdiction"


async def test_the_queue_filters_searches_sorts_pages_and_counts(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST")
    word = f"kanal{secrets.token_hex(4)}"
    first = await report(stack, f"Schlagloch {word} vor dem Haus", code="001")
    second = await report(stack, f"Laterne {word} aus", code="003")
    third = await report(stack, f"Noch ein Loch {word.upper()}", code="001")
    elsewhere = await report(
        stack, f"{word} in Grünau", code="001", place={"lat": 51.3158, "long": 12.2876}
    )
    await assigned(stack, first, second, third, elsewhere)
    await move(stack, office, second, status="in_progress")

    everything = await queue(stack, office, q=word, sort="requested_at")
    # Grünau's roads are another office's: not in my queue, not in my counts.
    assert ids(everything) == [str(first), str(second), str(third)]
    assert everything["total"] == 3
    assert everything["counts"] == {
        "received": 0,
        "assigned": 2,
        "in_progress": 1,
        "resolved": 0,
        "rejected": 0,
        "duplicate": 0,
    }
    assert ids(await queue(stack, office, q=word, sort="-requested_at")) == [
        str(third),
        str(second),
        str(first),
    ]
    only_assigned = await queue(stack, office, q=word, status="assigned", sort="requested_at")
    assert ids(only_assigned) == [str(first), str(third)]
    assert only_assigned["total"] == 2
    assert only_assigned["counts"]["in_progress"] == 1  # the tabs count beside the filter
    assert ids(await queue(stack, office, q=word, service_code="003")) == [str(second)]
    assert ids(await queue(stack, office, q=f"laterne {word}")) == [str(second)]  # all words
    mitte = await queue(stack, office, q=word, area="Mitte", page_size=200)
    assert mitte["total"] == 3
    by_id = await queue(stack, office, q=str(first)[:8])
    assert ids(by_id) == [str(first)]
    pages = [
        ids(await queue(stack, office, q=word, sort="requested_at", page=n, page_size=2))
        for n in (1, 2)
    ]
    assert pages == [[str(first), str(second)], [str(third)]]
    assert ids(await queue(stack, office, q=word, newer_than_days=1, sort="requested_at")) == ids(
        everything
    )
    assert ids(await queue(stack, office, q=word, older_than_days=1)) == []
    assert (await queue(stack, office, q="100%_nothing"))["total"] == 0  # LIKE signs are text

    # Past its service level: overdue in the queue, the filter finds it.
    await sql(
        stack,
        "UPDATE intake.reports SET expected_at = now() - interval '1 hour' WHERE id = :id",
        id=third,
    )
    overdue = await queue(stack, office, q=word, overdue="true")
    assert ids(overdue) == [str(third)]
    assert overdue["items"][0]["overdue"] is True
    assert sorted(ids(await queue(stack, office, q=word, overdue="false"))) == sorted(
        [str(first), str(second)]
    )
    soonest = await queue(stack, office, q=word, sort="expected_at")
    assert ids(soonest)[0] == str(third)

    for wrong, field in (
        ({"status": "lost"}, "status"),
        ({"sort": "description"}, "sort"),
        ({"office": "SRL"}, "office"),
        ({"q": "x" * 201}, "q"),
    ):
        refused = await stack.intake.get("/api/v1/staff/tickets", params=wrong, headers=office)
        assert refused.status_code in (400, 403, 422), refused.text
        assert refused.json()["errors"][0]["field"] == field


async def test_the_csv_export_streams_the_filtered_queue(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST")
    word = f"export{secrets.token_hex(4)}"
    wanted = [await report(stack, f"Riss {word} Nr. {n}, „Straße“") for n in range(3)]
    other = await report(stack, f"Riss {word} Laterne", code="003")
    await assigned(stack, *wanted, other)
    response = await stack.intake.get(
        "/api/v1/staff/tickets.csv",
        params={"q": word, "service_code": "001", "sort": "requested_at"},
        headers=office,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    text = response.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [str(r) for r in wanted]
    assert rows[0]["description"] == f"Riss {word} Nr. 0, „Straße“"
    assert rows[0]["stadtbezirk"] == "Mitte"
    assert rows[0]["office_code"] == "VTA-OST"
    assert rows[0]["overdue"] == "nein"
    assert (
        await stack.intake.get("/api/v1/staff/tickets.csv", params={"q": word})
    ).status_code == 401


async def test_the_open_data_export_has_no_personal_data_or_notes(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST")
    secret = f"Herr Mustermann {secrets.token_hex(4)}"
    response = await stack.intake.post(
        "/api/v1/reports",
        json={
            "service_code": "001",
            **in_mitte(),
            "description": secret,
            "email": "opendata@example.org",
            "first_name": "Erika",
        },
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    report_id = UUID(response.json()["id"])
    await assigned(stack, report_id)
    await move(stack, office, report_id, status="in_progress", internal_note="Kolonne Meier")
    since = (datetime.now() - timedelta(days=1)).date().isoformat()
    export = await stack.intake.get("/api/v1/open-data/reports.csv", params={"since": since})
    assert export.status_code == 200
    text = export.content.decode("utf-8-sig")
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows[str(report_id)]["status"] == "in_progress"
    assert rows[str(report_id)]["agency_responsible"]
    assert rows[str(report_id)]["ortsteil"]
    for private in (secret, "opendata@example.org", "Erika", "Kolonne Meier"):
        assert private not in text


async def test_service_levels_give_expected_dates_everywhere(stack: Stack) -> None:
    office = await token_for(stack, "SRL")
    report_id = await report(stack, "Papierkorb voll", code="006")
    await assigned(stack, report_id)
    public = (await stack.intake.get(f"/api/v1/reports/{report_id}")).json()
    requested = datetime.fromisoformat(public["requested_at"])
    expected = datetime.fromisoformat(public["expected_at"])
    assert expected - requested == timedelta(days=SERVICE_LEVEL_DAYS["006"])
    open311 = await stack.intake.get(f"/open311/v2/requests/{report_id}.json")
    assert datetime.fromisoformat(open311.json()[0]["expected_datetime"]) == expected
    ticket = (await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=office)).json()
    assert ticket["overdue"] is False
    assert datetime.fromisoformat(ticket["expected_at"]) == expected


async def test_canned_responses_are_kept_by_their_office(stack: Stack) -> None:
    office = await token_for(stack, "SRL")
    colleague = await token_for(stack, "SRL")
    stranger = await token_for(stack, "VTA-OST")
    title = f"Abholung {secrets.token_hex(3)}"
    body = {"office_code": "SRL", "title": title, "body": "Wir holen den Müll diese Woche ab."}
    created = await stack.intake.post("/api/v1/staff/canned-responses", json=body, headers=office)
    assert created.status_code == 201, created.text
    response_id = created.json()["id"]
    assert created.json()["updated_by"].startswith("staff:console-SRL-")

    listed = await stack.intake.get("/api/v1/staff/canned-responses", headers=colleague)
    assert title in [c["title"] for c in listed.json()]
    theirs = await stack.intake.get("/api/v1/staff/canned-responses", headers=stranger)
    assert title not in [c["title"] for c in theirs.json()]

    twice = await stack.intake.post("/api/v1/staff/canned-responses", json=body, headers=office)
    assert twice.status_code == 409
    assert twice.json()["errors"][0]["code"] == "title_taken"
    for_another = await stack.intake.post(
        "/api/v1/staff/canned-responses", json={**body, "office_code": "SRL"}, headers=stranger
    )
    assert for_another.status_code == 403
    empty = await stack.intake.post(
        "/api/v1/staff/canned-responses", json={**body, "title": " ", "body": ""}, headers=office
    )
    assert empty.status_code == 422
    assert len(empty.json()["errors"]) == 2

    changed = await stack.intake.put(
        f"/api/v1/staff/canned-responses/{response_id}",
        json={**body, "body": "Abholung morgen."},
        headers=colleague,
    )
    assert changed.status_code == 200
    assert changed.json()["body"] == "Abholung morgen."
    assert (
        await stack.intake.put(
            f"/api/v1/staff/canned-responses/{response_id}",
            json={**body, "office_code": "VTA-OST"},
            headers=stranger,
        )
    ).status_code == 404
    assert (
        await stack.intake.delete(f"/api/v1/staff/canned-responses/{response_id}", headers=stranger)
    ).status_code == 404
    gone = await stack.intake.delete(
        f"/api/v1/staff/canned-responses/{response_id}", headers=office
    )
    assert gone.status_code == 204
    listed = await stack.intake.get("/api/v1/staff/canned-responses", headers=office)
    assert title not in [c["title"] for c in listed.json()]


async def test_statistics_count_time_and_service_level_per_office(stack: Stack) -> None:
    office = await token_for(stack, "SRL")
    reports = [await report(stack, f"Statistik {n}", code="006") for n in range(3)]
    await assigned(stack, *reports)
    await move(stack, office, reports[0], status="resolved", public_note="Geleert")
    await move(stack, office, reports[1], status="in_progress")
    await move(stack, office, reports[1], status="resolved", public_note="Geleert")
    # Into a month of their own: arrived 10:00, assigned after 2, 4 and 6 hours; the first
    # closed within a day (inside its 3 days), the second after 5 days (outside).
    year = random.randrange(1990, 2010)
    for n, report_id in enumerate(reports):
        arrived = datetime(year, 3, 10 + n, 10, tzinfo=UTC)
        await sql(
            stack,
            "UPDATE intake.reports SET requested_at = CAST(:at AS timestamptz),"
            " expected_at = CAST(:at AS timestamptz) + interval '3 days' WHERE id = :id",
            at=arrived,
            id=report_id,
        )
        await sql(
            stack,
            "UPDATE intake.status_history SET changed_at = CASE"
            " WHEN status = 'received' THEN CAST(:at AS timestamptz)"
            " WHEN status = 'assigned' THEN CAST(:at AS timestamptz) + :assigned * interval '1 hour'"
            " WHEN status = 'in_progress' THEN CAST(:at AS timestamptz) + interval '1 day'"
            " ELSE CAST(:at AS timestamptz) + :closed * interval '1 day' END"
            " WHERE report_id = :id",
            at=arrived,
            assigned=2 * (n + 1),
            closed=(1, 5, 0)[n],
            id=report_id,
        )
    window = {"from": f"{year}-03-01", "to": f"{year}-03-31"}
    found = await stack.intake.get("/api/v1/staff/statistics", params=window, headers=office)
    assert found.status_code == 200, found.text
    stats = found.json()
    assert stats["per_category"] == [
        {"service_code": "006", "service_name": "Verschmutzung / Papierkorb voll", "count": 3}
    ]
    assert stats["per_month"] == [{"month": f"{year}-03", "count": 3}]
    bezirke = [a for a in stats["per_area"] if a["level"] == "stadtbezirk"]
    assert bezirke == [{"level": "stadtbezirk", "code": "0", "name": "Mitte", "count": 3}]
    assert stats["median_hours_to_assignment"] == 4.0
    assert stats["median_hours_to_closing"] == 72.0  # (24 + 120) / 2
    assert stats["closed"] == 2
    assert stats["closed_within_service_level"] == 1
    assert stats["share_closed_within_service_level"] == 0.5

    # Another office sees none of them; an admin sees them all.
    theirs = await stack.intake.get(
        "/api/v1/staff/statistics", params=window, headers=await token_for(stack, "VTA-OST")
    )
    assert theirs.json()["per_category"] == []
    assert theirs.json()["share_closed_within_service_level"] is None
    admin = await stack.intake.get(
        "/api/v1/staff/statistics", params=window, headers=await token_for(stack, admin=True)
    )
    assert admin.json()["per_category"][0]["count"] == 3
    assert admin.json()["offices"] is None
    refused = await stack.intake.get(
        "/api/v1/staff/statistics", params={"office": "VTA-OST"}, headers=office
    )
    assert refused.status_code == 403
    backwards = await stack.intake.get(
        "/api/v1/staff/statistics",
        params={"from": "2020-02-01", "to": "2020-01-01"},
        headers=office,
    )
    assert backwards.status_code == 422


async def test_nearby_open_reports_of_the_same_kind_are_duplicate_candidates(
    stack: Stack,
) -> None:
    office = await token_for(stack, "VTA-OST")
    here = in_mitte()
    near = {"lat": here["lat"] + 0.0003, "long": here["long"]}  # ~33 m north
    far = {"lat": here["lat"] + 0.01, "long": here["long"]}  # ~1.1 km
    ticket = await report(stack, "Loch hier", place=here)
    candidate = await report(stack, "Loch da", place=near)
    other_kind = await report(stack, "Laterne da", code="003", place=near)
    distant = await report(stack, "Loch weit weg", place=far)
    await assigned(stack, ticket, candidate, other_kind, distant)
    found = await stack.intake.get(
        f"/api/v1/staff/tickets/{ticket}/nearby", params={"radius_m": 200}, headers=office
    )
    assert found.status_code == 200
    # Other tests' reports may lie near too: mine are told apart by id.
    candidates = {c["id"]: c for c in found.json()}
    assert str(candidate) in candidates
    assert not {str(ticket), str(other_kind), str(distant)} & set(candidates)
    assert 25 < candidates[str(candidate)]["distance_m"] < 40
    distances = [c["distance_m"] for c in found.json()]
    assert distances == sorted(distances)
    stranger = await token_for(stack, "SRL")
    assert (
        await stack.intake.get(f"/api/v1/staff/tickets/{ticket}/nearby", headers=stranger)
    ).status_code == 404
    await move(stack, office, ticket, status="duplicate", duplicate_of=str(candidate))
    after = await stack.intake.get(f"/api/v1/staff/tickets/{candidate}/nearby", headers=office)
    assert str(ticket) not in [c["id"] for c in after.json()]  # closed: no candidate any more
