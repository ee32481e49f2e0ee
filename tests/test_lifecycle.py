"""Office staff work tickets and every reporter hears of it — end to end over the real broker,
database, SMTP server and webhook receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import WEBHOOK_SECRET, OidcProvider, Stack
from devstack.testing import body_text, eventually
from intake.adapters import staff


async def token_for(stack: Stack, *offices: str, admin: bool = False) -> dict[str, str]:
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            name = f"{'-'.join(offices) or 'admin'}-{random.randrange(10**9)}"
            _, token = await staff.create_account(
                conn, name, offices, is_admin=admin, jurisdiction=None if admin else "leipzig"
            )
    finally:
        await engine.dispose()
    return {"Authorization": f"Bearer {token}"}


def place() -> dict[str, float]:
    # Inside Stadtbezirk Mitte (roads: VTA-OST), a fresh spot per report.
    return {
        "lat": round(random.uniform(51.336, 51.342), 6),
        "long": round(random.uniform(12.372, 12.382), 6),
    }


async def submit(stack: Stack, email: str, locale: str = "de", code: str = "001") -> UUID:
    response = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": code, **place(), "email": email, "locale": locale},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def assigned(stack: Stack, report_id: UUID, office: str = "VTA-OST") -> None:
    async def check() -> bool:
        body: dict[str, Any] = (await stack.intake.get(f"/api/v1/reports/{report_id}")).json()
        return bool(body["status"] == "assigned" and body["office"]["code"] == office)

    await eventually(check)


async def assigned_and_told(stack: Stack, email: str) -> tuple[dict[str, str], UUID]:
    """Staff of VTA-OST, and a report of an English speaker now assigned to them, the
    reporter told."""
    office = await token_for(stack, "VTA-OST")
    report_id = await submit(stack, email, locale="en")
    await assigned(stack, report_id)
    await eventually(mails_to(stack, email, 1))
    return office, report_id


async def move(stack: Stack, headers: dict[str, str], report_id: UUID, **body: Any) -> Any:
    return await stack.intake.post(
        f"/api/v1/staff/tickets/{report_id}/transitions", json=body, headers=headers
    )


def mails_to(stack: Stack, address: str, count: int):  # type: ignore[no-untyped-def]
    async def probe():  # type: ignore[no-untyped-def]
        found = stack.smtp.to(address)
        return found if len(found) >= count else None

    return probe


async def test_the_whole_lifecycle_one_mail_per_change_in_the_reporters_language(
    stack: Stack,
) -> None:
    office, report_id = await assigned_and_told(stack, "life@example.org")

    ortsteil = (
        await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=office)
    ).json()["areas"][-1]
    listed = await stack.intake.get(
        "/api/v1/staff/tickets",
        params={"status": "assigned", "area": ortsteil["name"], "page_size": 200},
        headers=office,
    )
    assert listed.status_code == 200
    assert str(report_id) in [t["id"] for t in listed.json()["items"]]
    assert all(ortsteil in t["areas"] for t in listed.json()["items"])
    for out_of_range in ({"older_than_days": "inf"}, {"page": 10**20}):
        refused = await stack.intake.get(
            "/api/v1/staff/tickets", params=out_of_range, headers=office
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == next(iter(out_of_range))

    started = await move(
        stack,
        office,
        report_id,
        status="in_progress",
        public_note="Crew is on the way",
        internal_note="Kolonne 3",
    )
    assert started.status_code == 200, started.text
    await eventually(mails_to(stack, "life@example.org", 2))
    done = await move(stack, office, report_id, status="resolved", public_note="Filled")
    assert done.status_code == 200
    [first, second, third] = await eventually(mails_to(stack, "life@example.org", 3))
    assert first["Subject"].startswith("Your report is with Verkehrs- und Tiefbauamt")
    assert "in progress" in second["Subject"]
    assert "Crew is on the way" in body_text(second)
    assert "Kolonne 3" not in body_text(second)  # internal notes stay internal
    assert "resolved" in third["Subject"]

    detail = (await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=office)).json()
    assert [h["status"] for h in detail["history"]] == [
        "received",
        "assigned",
        "in_progress",
        "resolved",
    ]
    assert detail["history"][2]["internal_note"] == "Kolonne 3"
    assert detail["history"][2]["by"].startswith("staff:")
    open311 = (await stack.intake.get(f"/open311/v2/requests/{report_id}.json")).json()[0]
    assert open311["status"] == "closed"
    assert open311["status_notes"] == "resolved: Filled"
    public = (await stack.intake.get(f"/api/v1/reports/{report_id}")).json()
    assert "Kolonne 3" not in str(public)

    # Reopened: the reporter hears of it once more, and no mail was ever sent twice.
    reopened = await move(stack, office, report_id, status="in_progress", public_note="Sank again")
    assert reopened.status_code == 200
    await eventually(mails_to(stack, "life@example.org", 4))
    ids = [m["Message-ID"] for m in stack.smtp.to("life@example.org")]
    assert len(set(ids)) == len(ids) == 4


async def test_staff_only_ever_see_and_touch_their_own_offices_tickets(stack: Stack) -> None:
    mine, theirs = await token_for(stack, "VTA-OST"), await token_for(stack, "SRL")
    report_id = await submit(stack, "acl@example.org")
    await assigned(stack, report_id)
    assert (
        await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=theirs)
    ).status_code == 404
    assert (await move(stack, theirs, report_id, status="in_progress")).status_code == 404
    listed = await stack.intake.get(
        "/api/v1/staff/tickets", params={"page_size": 200}, headers=theirs
    )
    assert str(report_id) not in [t["id"] for t in listed.json()["items"]]
    assert all(t["office"]["code"] == "SRL" for t in listed.json()["items"])
    other_office = await stack.intake.get(
        "/api/v1/staff/tickets", params={"office": "VTA-OST"}, headers=theirs
    )
    assert other_office.status_code == 403
    assert (await stack.intake.get("/api/v1/staff/tickets")).status_code == 401
    admin = await token_for(stack, admin=True)
    assert (
        await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=admin)
    ).status_code == 200
    assert (
        await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=mine)
    ).status_code == 200


async def test_staff_signed_in_at_the_city_s_identity_provider(
    stack: Stack, oidc: OidcProvider
) -> None:
    report_id = await submit(stack, "oidc@example.org")
    await assigned(stack, report_id)
    ticket = f"/api/v1/staff/tickets/{report_id}"
    mine = oidc.token("anna", offices=["VTA-OST"], preferred_username="anna.schmidt")
    assert (await stack.intake.get(ticket, headers=mine)).status_code == 200
    moved = await move(stack, mine, report_id, status="in_progress", public_note="Wir kommen")
    assert moved.status_code == 200
    history = (await stack.intake.get(ticket, headers=mine)).json()["history"]
    assert history[-1]["by"] == "staff:anna.schmidt"
    theirs = oidc.token("bernd", offices=["SRL"])
    assert (await stack.intake.get(ticket, headers=theirs)).status_code == 404
    admin = oidc.token("chef", roles=["maengelmelder-admin"])
    assert (await stack.intake.get(ticket, headers=admin)).status_code == 200

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = [
        oidc.token("anna", offices=["VTA-OST"], exp=int(time.time()) - 60),
        oidc.token("anna", offices=["VTA-OST"], aud="another-app"),
        oidc.token("anna", offices=["VTA-OST"], iss="https://elsewhere.example"),
        oidc.token("anna", offices=["VTA-OST"], key=other_key),
    ]
    for headers in refused:
        assert (await stack.intake.get(ticket, headers=headers)).status_code == 401


async def test_revoked_tokens_stop_working(stack: Stack) -> None:
    headers = await token_for(stack, "SRL")
    assert (await stack.intake.get("/api/v1/staff/tickets", headers=headers)).status_code == 200
    engine = create_async_engine(stack.database_url)
    async with engine.begin() as conn:
        assert await staff.revoke(conn, headers["Authorization"].removeprefix("Bearer "))
    await engine.dispose()
    assert (await stack.intake.get("/api/v1/staff/tickets", headers=headers)).status_code == 401


async def test_staff_tokens_expire_and_record_their_last_use(stack: Stack) -> None:
    name = f"expiry-{random.randrange(10**9)}"
    now = datetime.now(UTC)
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            _, valid = await staff.create_account(
                conn, name, ["SRL"], expires_at=now + timedelta(hours=1), jurisdiction="leipzig"
            )
            _, expired = await staff.create_account(
                conn, name, ["SRL"], expires_at=now - timedelta(seconds=1), jurisdiction="leipzig"
            )
        last_used = sa.text(
            "SELECT t.expires_at, t.last_used_at FROM intake.staff_tokens t"
            " JOIN intake.staff_accounts a ON a.id = t.account_id"
            " WHERE a.name = :name ORDER BY t.id"
        )
        async with engine.connect() as conn:
            assert [r.last_used_at for r in await conn.execute(last_used, {"name": name})] == [
                None,
                None,
            ]
        tickets = "/api/v1/staff/tickets"
        ok = await stack.intake.get(tickets, headers={"Authorization": f"Bearer {valid}"})
        assert ok.status_code == 200
        refused = await stack.intake.get(tickets, headers={"Authorization": f"Bearer {expired}"})
        assert refused.status_code == 401
        [error] = refused.json()["errors"]
        assert "expired" in error["message"]
        assert "staff-token" in error["message"]
        async with engine.connect() as conn:
            [used, not_used] = (await conn.execute(last_used, {"name": name})).all()
        assert used.last_used_at is not None
        assert abs(used.last_used_at - datetime.now(UTC)) < timedelta(minutes=1)
        assert not_used.last_used_at is None
    finally:
        await engine.dispose()


async def test_the_staff_token_command_prints_when_the_token_expires(stack: Stack) -> None:
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "intake.cli",
        "staff-token",
        "--office",
        "SRL",
        "--name",
        f"cli-{random.randrange(10**9)}",
        "--days",
        "7",
        env={**os.environ, "INTAKE_DATABASE_URL": stack.database_url},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await command.communicate()
    assert command.returncode == 0
    *_, validity, token = out.decode().splitlines()
    until = datetime.strptime(validity, "valid until %Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
    assert abs(until - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=2)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await stack.intake.get("/api/v1/staff/tickets", headers=headers)).status_code == 200


async def test_transitions_follow_the_rules(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST")
    report_id = await submit(stack, "rules@example.org")
    await assigned(stack, report_id)
    no_reason = await move(stack, office, report_id, status="rejected")
    assert no_reason.status_code == 422
    assert (await move(stack, office, report_id, status="received")).status_code == 422
    rejected = await move(stack, office, report_id, status="rejected", public_note="Privatgrund")
    assert rejected.status_code == 200
    again = await move(stack, office, report_id, status="resolved")
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "transition_not_allowed"


async def test_reassignment_goes_through_geo_router_and_moves_the_ticket(stack: Stack) -> None:
    roads, cleaning = await token_for(stack, "VTA-OST"), await token_for(stack, "SRL")
    report_id = await submit(stack, "moved@example.org")
    await assigned(stack, report_id)

    async def directory():  # type: ignore[no-untyped-def]
        offices = await stack.intake.get("/api/v1/staff/offices", headers=roads)
        return offices.json() if offices.status_code == 200 else None

    assert {"code": "SRL", "name": "Stadtreinigung Leipzig"} in await eventually(directory)
    unknown = await move(stack, roads, report_id, status="assigned", office_code="SLR")
    assert unknown.status_code == 422
    assert "unknown office_code 'SLR'; offices: ASG, " in unknown.json()["errors"][0]["message"]
    response = await move(
        stack,
        roads,
        report_id,
        status="assigned",
        office_code="SRL",
        internal_note="Müll, kein Loch",
    )
    assert response.status_code == 202
    await assigned(stack, report_id, office="SRL")
    detail = await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=cleaning)
    assert detail.status_code == 200
    assert "Manuelle Zuweisung durch staff:" in detail.json()["history"][-1]["internal_note"]
    assert (
        await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=roads)
    ).status_code == 404
    [_, moved] = await eventually(mails_to(stack, "moved@example.org", 2))
    assert "Stadtreinigung Leipzig" in moved["Subject"]


async def test_notes_keep_the_status_and_only_public_ones_reach_the_reporter(
    stack: Stack,
) -> None:
    office, report_id = await assigned_and_told(stack, "noted@example.org")
    notes = f"/api/v1/staff/tickets/{report_id}/notes"

    internal = await stack.intake.post(notes, json={"internal_note": "Asked the contractor"})
    assert internal.status_code == 401
    internal = await stack.intake.post(
        notes, json={"internal_note": "Asked the contractor"}, headers=office
    )
    assert internal.status_code == 200, internal.text
    assert internal.json()["status"] == "assigned"
    public = await stack.intake.post(
        notes, json={"public_note": "Scheduled for Monday"}, headers=office
    )
    assert public.status_code == 200
    empty = await stack.intake.post(notes, json={"public_note": " "}, headers=office)
    assert empty.status_code == 422

    [_, told] = await eventually(mails_to(stack, "noted@example.org", 2))
    assert told["Subject"].startswith("News on your report")
    assert "Scheduled for Monday" in body_text(told)
    history = public.json()["history"]
    assert [(h["status"], h["internal_note"], h["public_note"]) for h in history[-2:]] == [
        ("assigned", "Asked the contractor", None),
        ("assigned", None, "Scheduled for Monday"),
    ]
    open311 = (await stack.intake.get(f"/open311/v2/requests/{report_id}.json")).json()[0]
    assert open311["status_notes"].endswith("Scheduled for Monday")
    assert "contractor" not in str((await stack.intake.get(f"/api/v1/reports/{report_id}")).json())
    # Still waiting to be accepted: a note is no acceptance.
    detail = await stack.intake.get(f"/api/v1/staff/tickets/{report_id}", headers=office)
    assert detail.json()["updated_at"] == detail.json()["history"][1]["at"]


async def test_merged_duplicates_tell_every_reporter(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST")
    original = await submit(stack, "first@example.org")
    duplicate = await submit(stack, "second@example.org", locale="en")
    await assigned(stack, original)
    await assigned(stack, duplicate)
    merged = await move(stack, office, duplicate, status="duplicate", duplicate_of=str(original))
    assert merged.status_code == 200
    assert merged.json()["duplicate_of"] == str(original)
    [_, told] = await eventually(mails_to(stack, "second@example.org", 2))
    assert "merged" in body_text(told)
    assert str(original) in body_text(told)
    assert (
        await move(stack, office, original, status="resolved", public_note="Repaired")
    ).status_code == 200
    [*_, resolved_first] = await eventually(mails_to(stack, "first@example.org", 2))
    [*_, resolved_second] = await eventually(mails_to(stack, "second@example.org", 3))
    assert "erledigt" in resolved_first["Subject"]
    assert "resolved" in resolved_second["Subject"]
    bad = await move(stack, office, original, status="duplicate", duplicate_of=str(duplicate))
    assert bad.status_code in (409, 422)


async def test_a_duplicate_is_merged_only_into_a_ticket_the_member_may_see(stack: Stack) -> None:
    """Else staff could probe for other offices' tickets and merge reporters into them."""
    roads = await token_for(stack, "VTA-OST")
    ours = await submit(stack, "ours@example.org")
    cleaning_s = await submit(stack, "cleaning@example.org", code="006")
    await assigned(stack, ours)
    await assigned(stack, cleaning_s, office="SRL")
    for target in (cleaning_s, uuid4()):
        refused = await move(stack, roads, ours, status="duplicate", duplicate_of=str(target))
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["field"] == "duplicate_of"
        assert str(target) in error["message"]
    # The refusal is the same whether the ticket is another office's or none at all.
    still = await stack.intake.get(f"/api/v1/staff/tickets/{ours}", headers=roads)
    assert still.json()["status"] == "assigned"
    admin = await token_for(stack, admin=True)
    merged = await move(stack, admin, ours, status="duplicate", duplicate_of=str(cleaning_s))
    assert merged.status_code == 200, merged.text


async def test_only_when_closed_preference_is_honoured(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST")
    report_id = await submit(stack, "closedonly@example.org")
    await assigned(stack, report_id)
    [ack] = await eventually(mails_to(stack, "closedonly@example.org", 1))
    link = next(line for line in body_text(ack).splitlines() if "/v1/preferences/" in line)
    path = link[link.index("/v1/preferences/") :].strip()
    assert (await stack.notifier.get(path)).status_code == 200
    assert (await stack.notifier.post(path, data={"preference": "only_closed"})).status_code == 200
    await move(stack, office, report_id, status="in_progress")
    await move(stack, office, report_id, status="resolved", public_note="Done")
    [_, closed] = await eventually(mails_to(stack, "closedonly@example.org", 2))
    assert "erledigt" in closed["Subject"]
    assert len(stack.smtp.to("closedonly@example.org")) == 2


async def test_an_smtp_outage_loses_nothing_and_sends_nothing_twice(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST")
    report_id = await submit(stack, "outage@example.org")
    await assigned(stack, report_id)
    await eventually(mails_to(stack, "outage@example.org", 1))
    stack.smtp.refuse = True
    try:
        await move(stack, office, report_id, status="in_progress")
        await move(stack, office, report_id, status="resolved", public_note="ok")
        engine = create_async_engine(stack.database_url)

        async def failed_once() -> bool:
            async with engine.connect() as conn:
                attempts = await conn.scalar(
                    sa.text(
                        "SELECT max(attempts) FROM notifier.notifications n JOIN notifier.contacts c "
                        "ON c.id = n.contact_id WHERE c.email = 'outage@example.org' AND n.state = 'pending'"
                    )
                )
            return bool(attempts and attempts >= 1)

        await eventually(failed_once)
        await engine.dispose()
        assert len(stack.smtp.to("outage@example.org")) == 1
    finally:
        stack.smtp.refuse = False
    [_, second, third] = await eventually(mails_to(stack, "outage@example.org", 3), timeout_s=30)
    assert "in Bearbeitung" in second["Subject"]
    assert "erledigt" in third["Subject"]
    assert len(stack.smtp.to("outage@example.org")) == 3


async def test_every_status_change_reaches_the_webhook_signed(stack: Stack) -> None:
    report_id = await submit(stack, "hook@example.org")
    await assigned(stack, report_id)

    async def hooked():  # type: ignore[no-untyped-def]
        return [(h, b) for h, b in stack.webhooks.received if str(report_id).encode() in b]

    [(headers, body)] = await eventually(hooked)
    timestamp, v1 = (
        part.split("=", 1)[1] for part in headers["x-maengelmelder-signature"].split(",")
    )
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(v1, expected.hexdigest())
    assert b"hook@example.org" not in body  # no personal data to the push backend either


@pytest.mark.parametrize("token", ["", "wrong"])
async def test_parked_notifications_need_the_ops_token(stack: Stack, token: str) -> None:
    response = await stack.notifier.get(
        "/v1/notifications/parked", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    ok = await stack.notifier.get(
        "/v1/notifications/parked", headers={"Authorization": "Bearer test-ops"}
    )
    assert ok.status_code == 200


async def test_offices_get_a_daily_summary_of_waiting_tickets(stack: Stack) -> None:
    from datetime import date, timedelta

    from intake import handlers
    from intake.adapters import db
    from mm_shared.db import create_engine
    from mm_shared.outbox import KafkaPublisher, Outbox

    report_id = await submit(stack, "remind@example.org", code="006")
    await assigned(stack, report_id, office="SRL")
    engine = create_engine(stack.database_url)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE intake.reports SET updated_at = now() - interval '12 days' WHERE id = :id"
            ),
            {"id": report_id},
        )
    # The session's intake relay publishes what this stages (no lease: not held in memory here).
    outbox = Outbox(
        engine, db.outbox, db.inbox, KafkaPublisher(stack.kafka, "test"), "test", lease_s=0
    )
    monday = date(2099, 1, 5) + timedelta(weeks=random.randrange(1500))
    saturday = monday - timedelta(days=2)
    assert (
        await handlers.send_office_reminders(
            db.SqlUnitOfWorks(outbox), saturday, accept_within_working_days=4, work_within_days=14
        )
        == 0
    )  # offices do not work at weekends
    day = monday
    reminded = await handlers.send_office_reminders(
        db.SqlUnitOfWorks(outbox), day, accept_within_working_days=4, work_within_days=14
    )
    assert reminded >= 1
    assert (
        await handlers.send_office_reminders(
            db.SqlUnitOfWorks(outbox), day, accept_within_working_days=4, work_within_days=14
        )
        == 0
    )  # once per day
    await engine.dispose()

    async def summary():  # type: ignore[no-untyped-def]
        return [
            m
            for m in stack.smtp.to("stadtreinigung@leipzig.example")
            if day.isoformat() in m["Subject"]
        ]

    [mail] = await eventually(summary)
    assert "Stadtreinigung Leipzig" in mail["Subject"]
    assert str(report_id) in body_text(mail)
    # The thresholds named are intake's, carried on the event (the notifier has none).
    assert "seit mehr als 4 Arbeitstagen" in body_text(mail)
