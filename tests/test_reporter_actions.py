"""What the reporter can do with their own link (the token in the answer and in their mails):
say "not fixed" and so reopen a resolved report (its office is told), and have their contact
data erased — end to end over the real broker, database and SMTP server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from conftest import API_KEY, REPORTER_TOKEN_SECRET, Stack
from devstack.pictures import camera_jpeg
from devstack.testing import body_text, eventually, run_sql
from intake.adapters.photos import process_photo
from mm_shared.events import Topic
from tests.test_lifecycle import assigned, mails_to, move, place, token_for


async def reported(stack: Stack, email: str, locale: str = "de") -> tuple[UUID, str]:
    response = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "001", **place(), "email": email, "locale": locale},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"]), response.json()["reporter_token"]


async def resolved(stack: Stack, email: str) -> tuple[UUID, str, dict[str, str]]:
    """A report of ``email``'s, resolved by its office (VTA-OST); the reporter told of both."""
    report_id, token = await reported(stack, email)
    await assigned(stack, report_id)
    office = await token_for(stack, "VTA-OST")
    done = await move(stack, office, report_id, status="resolved", public_note="Verfüllt")
    assert done.status_code == 200, done.text
    await eventually(mails_to(stack, email, 2))
    return report_id, token, office


def not_fixed(stack: Stack, report_id: UUID, **body: Any) -> Any:
    return stack.intake.post(f"/api/v1/reports/{report_id}/not-fixed", json=body)


async def test_the_reporter_s_token_is_theirs_alone_and_their_mails_link_with_it(
    stack: Stack,
) -> None:
    report_id, token = await reported(stack, "token@example.org", locale="en")
    digest = hmac.new(REPORTER_TOKEN_SECRET.encode(), str(report_id).encode(), hashlib.sha256)
    assert token == base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    followed = await stack.intake.post(
        f"/api/v1/reports/{report_id}/followers", json={"email": "metoo@example.org"}
    )
    assert followed.status_code == 202
    [mail] = await eventually(mails_to(stack, "token@example.org", 1))
    assert f"/api/v1/reports/{report_id}?token={token}" in body_text(mail)

    async def contact_events() -> list[dict[str, Any]] | None:
        found = [e.json() for e in stack.tap.about(report_id, Topic.REPORTER_CONTACT)]
        return found if len(found) == 2 else None

    contacts = await eventually(contact_events)
    assert sorted((c["email"], c["reporter_token"]) for c in contacts) == [
        ("metoo@example.org", None),
        ("token@example.org", token),
    ]
    # Open311 clients get no reporter token; their reporters' mails carry one all the same.
    open311 = await stack.intake.post(
        "/open311/v2/requests.json",
        data={"api_key": API_KEY, "service_code": "001", **place(), "email": "o@example.org"},
    )
    assert open311.status_code == 201
    assert "reporter_token" not in open311.text


async def test_not_fixed_reopens_a_resolved_report_and_its_office_is_told(stack: Stack) -> None:
    report_id, token, _ = await resolved(stack, "notfixed@example.org")
    followed = await stack.intake.post(
        f"/api/v1/reports/{report_id}/followers", json={"email": "follows@example.org"}
    )
    assert followed.status_code == 202
    wrong = await not_fixed(stack, report_id, reporter_token="x" + token[1:], note="Nein")
    assert wrong.status_code == 403
    assert wrong.json()["errors"][0]["code"] == "invalid_token"
    before = len(stack.smtp.to("vta-ost@leipzig.example"))
    two_photos = await stack.intake.post(
        f"/api/v1/reports/{report_id}/not-fixed",
        data={"reporter_token": token},
        files=[("photos", ("a.jpg", camera_jpeg(), "image/jpeg"))] * 2,
    )
    assert two_photos.status_code == 422
    assert two_photos.json()["errors"][0]["code"] == "too_many_photos"

    reopened = await stack.intake.post(
        f"/api/v1/reports/{report_id}/not-fixed",
        data={"reporter_token": token, "note": "Das Loch ist wieder da"},
        files={"photos": ("loch.jpg", camera_jpeg(), "image/jpeg")},
    )
    assert reopened.status_code == 200, reopened.text
    body = reopened.json()
    assert body["status"] == "assigned"
    assert body["office"]["code"] == "VTA-OST"
    assert body["history"][-1] == {
        "status": "assigned",
        "at": body["history"][-1]["at"],
        "note": "Das Loch ist wieder da",
    }
    assert len(body["photos"]) == 1
    photo = await stack.intake.get(urlsplit(body["photos"][0]["thumbnail_url"]).path)
    assert photo.status_code == 200

    async def reopening() -> list[dict[str, Any]]:
        return [
            e.json()
            for e in stack.tap.about(report_id, Topic.REPORT_STATUS_CHANGED)
            if e.json()["status"] == "assigned" and e.json()["previous_status"] == "resolved"
        ]

    [changed] = await eventually(reopening)
    assert changed["reopened_by_reporter"] is True
    assert changed["changed_by"] == "reporter"

    async def office_told() -> list[Any]:
        return [
            m
            for m in stack.smtp.to("vta-ost@leipzig.example")[before:]
            if str(report_id) in body_text(m)
        ]

    [mail] = await eventually(office_told)
    assert "Nicht behoben" in mail["Subject"]
    assert "Das Loch ist wieder da" in body_text(mail)
    [*_, told] = await eventually(mails_to(stack, "notfixed@example.org", 3))
    assert "wieder offen" in told["Subject"]
    assert "Sie haben gemeldet" in body_text(told)
    assert "Ihr Hinweis: Das Loch ist wieder da" in body_text(told)
    [follower_told] = await eventually(mails_to(stack, "follows@example.org", 1))
    assert "Die meldende Person hat gemeldet" in body_text(follower_told)

    again = await not_fixed(stack, report_id, reporter_token=token)
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "not_resolved"


async def test_not_fixed_only_within_the_reopening_period(stack: Stack) -> None:
    report_id, token, _ = await resolved(stack, "toolate@example.org")
    await run_sql(
        stack.database_url,
        "UPDATE intake.reports SET updated_at = updated_at - interval '29 days' WHERE id = :id",
        id=report_id,
    )
    late = await not_fixed(stack, report_id, reporter_token=token)
    assert late.status_code == 409
    assert late.json()["errors"][0]["code"] == "reopen_period_over"


async def test_not_fixed_refuses_bad_requests_clearly(stack: Stack) -> None:
    unknown = uuid4()
    digest = hmac.new(REPORTER_TOKEN_SECRET.encode(), str(unknown).encode(), hashlib.sha256)
    valid = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    assert (await not_fixed(stack, unknown, reporter_token=valid)).status_code == 404
    missing = await not_fixed(stack, unknown, note="no token")
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "reporter_token"
    broken = await stack.intake.post(
        f"/api/v1/reports/{unknown}/not-fixed",
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 400
    report_id, token = await reported(stack, "early@example.org")
    early = await not_fixed(stack, report_id, reporter_token=token, note="x" * 4001)
    assert early.status_code == 422
    not_yet = await not_fixed(stack, report_id, reporter_token=token, note="\x00")
    assert not_yet.status_code == 422
    await assigned(stack, report_id)
    picture = camera_jpeg(200_000, seed=random.randrange(10**9))
    open_one = await stack.intake.post(
        f"/api/v1/reports/{report_id}/not-fixed",
        data={"reporter_token": token},
        files={"photos": ("a.jpg", picture, "image/jpeg")},
    )
    assert open_one.status_code == 409
    assert open_one.json()["errors"][0]["code"] == "not_resolved"
    # Refused before its photo was stored: nothing kept for a report that stays as it was.
    stored_as = process_photo(picture).digest
    assert (await stack.intake.get(f"/api/v1/photos/{stored_as}/original")).status_code == 404


async def test_the_reporter_erases_their_contact_data_the_report_stays(stack: Stack) -> None:
    report_id, token = await reported(stack, "erase@example.org")
    await stack.intake.post(
        f"/api/v1/reports/{report_id}/followers", json={"email": "stays@example.org"}
    )
    await assigned(stack, report_id)
    await eventually(mails_to(stack, "erase@example.org", 1))
    await eventually(mails_to(stack, "stays@example.org", 1))
    erase = f"/api/v1/reports/{report_id}/contact/erase"

    wrong = await stack.notifier.post(erase, json={"reporter_token": "not-it"})
    assert wrong.status_code == 403
    assert wrong.json()["errors"][0]["code"] == "invalid_token"
    assert (await stack.notifier.post(erase, json={})).status_code == 422
    erased = await stack.notifier.post(erase, json={"reporter_token": token})
    assert erased.status_code == 204
    again = await stack.notifier.post(erase, json={"reporter_token": token})
    assert again.status_code == 404
    emails = await run_sql(
        stack.database_url,
        "SELECT email FROM notifier.contacts WHERE report_id = :id",
        id=report_id,
    )
    assert [e for (e,) in emails] == ["stays@example.org"]
    report = await stack.intake.get(f"/api/v1/reports/{report_id}")
    assert report.status_code == 200
    assert "erase@example.org" not in report.text

    office = await token_for(stack, "VTA-OST")
    await move(stack, office, report_id, status="in_progress")
    await eventually(mails_to(stack, "stays@example.org", 2))
    assert len(stack.smtp.to("erase@example.org")) == 1


async def test_erasure_reaches_the_copy_handed_on_to_the_original(stack: Stack) -> None:
    office = await token_for(stack, "VTA-OST")
    original, _ = await reported(stack, "original@example.org")
    duplicate, token = await reported(stack, "merged@example.org")
    await assigned(stack, original)
    await assigned(stack, duplicate)
    merged = await move(stack, office, duplicate, status="duplicate", duplicate_of=str(original))
    assert merged.status_code == 200
    await eventually(mails_to(stack, "merged@example.org", 2))

    async def contacts_of_merged() -> list[Any]:
        return await run_sql(
            stack.database_url,
            "SELECT report_id FROM notifier.contacts WHERE email = 'merged@example.org'",
        )

    assert len(await eventually(contacts_of_merged)) == 2  # theirs, and the copy on the original
    erased = await stack.notifier.post(
        f"/api/v1/reports/{duplicate}/contact/erase", json={"reporter_token": token}
    )
    assert erased.status_code == 204
    assert await contacts_of_merged() == []
    await move(stack, office, original, status="in_progress")
    await eventually(mails_to(stack, "original@example.org", 2))
    assert len(stack.smtp.to("merged@example.org")) == 2
