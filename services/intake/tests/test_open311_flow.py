"""Intake over the real database and broker."""

from uuid import UUID

import pytest

from conftest import API_KEY, Stack
from devstack.testing import eventually
from mm_shared.events import Topic

REPORT = {
    "api_key": API_KEY,
    "service_code": "003",
    "lat": "51.3397",
    "long": "12.3731",
    "description": "Laterne aus",
}


async def test_post_request_stores_the_report_and_publishes_it(stack: Stack) -> None:
    response = await stack.intake.post(
        "/open311/v2/requests.json", data={**REPORT, "email": "b@example.org", "locale": "en-GB"}
    )
    assert response.status_code == 201
    [created] = response.json()
    report_id = UUID(created["service_request_id"])

    submitted = await eventually(lambda: _about(stack, report_id, Topic.REPORT_SUBMITTED))
    body = submitted[0].json()
    assert body["service_code"] == "003"
    assert submitted[0].headers["event_type"] == "ReportSubmitted"
    assert "b@example.org" not in submitted[0].value.decode()

    contact = await eventually(lambda: _about(stack, report_id, Topic.REPORTER_CONTACT))
    assert contact[0].json()["email"] == "b@example.org"
    assert contact[0].json()["locale"] == "en"

    fetched = await stack.intake.get(f"/open311/v2/requests/{report_id}.json")
    assert fetched.status_code == 200
    assert fetched.json()[0]["service_code"] == "003"
    assert "b@example.org" not in fetched.text


async def test_a_wrong_api_key_is_refused_with_403(stack: Stack) -> None:
    response = await stack.intake.post(
        "/open311/v2/requests.json", data={**REPORT, "api_key": "nope"}
    )
    assert response.status_code == 403
    assert response.json()[0]["code"] == 403


async def test_bad_input_gets_every_problem_in_open311_errors(stack: Stack) -> None:
    response = await stack.intake.post(
        "/open311/v2/requests.json",
        data={**REPORT, "service_code": "", "lat": "abc"},
    )
    assert response.status_code == 400
    descriptions = [e["description"] for e in response.json()]
    assert len(descriptions) == 2
    assert any("lat" in d for d in descriptions)
    assert any("service_code is required" in d for d in descriptions)


async def test_unknown_request_id_is_404(stack: Stack) -> None:
    for request_id in ("00000000-0000-0000-0000-000000000000", "not-an-id"):
        response = await stack.intake.get(f"/open311/v2/requests/{request_id}.json")
        assert response.status_code == 404
        assert response.json()[0]["code"] == 404


async def _about(stack: Stack, report_id: UUID, topic: Topic):  # type: ignore[no-untyped-def]
    return stack.tap.about(report_id, topic)


@pytest.mark.parametrize("email", ["not an@address", "a@b.org\r\nBcc: x@example.org", "@b.org"])
async def test_an_invalid_email_is_a_400_naming_it(stack: Stack, email: str) -> None:
    response = await stack.intake.post("/open311/v2/requests.json", data={**REPORT, "email": email})
    assert response.status_code == 400
    [problem] = response.json()
    assert problem["description"].startswith(f"email {email!r} is not a valid e-mail address")


async def test_a_json_body_is_refused_as_the_wrong_media_type(stack: Stack) -> None:
    response = await stack.intake.post("/open311/v2/requests.json", json=REPORT)
    assert response.status_code == 415
    assert "x-www-form-urlencoded" in response.json()[0]["description"]


async def test_an_uploaded_file_is_refused_rather_than_dropped(stack: Stack) -> None:
    response = await stack.intake.post(
        "/open311/v2/requests.json", data=REPORT, files={"media": ("hole.jpg", b"\xff\xd8")}
    )
    assert response.status_code == 400
    assert "media_url" in response.json()[0]["description"]


async def test_unescaped_utf_8_in_a_form_is_read_as_utf_8(stack: Stack) -> None:
    """curl -d description='Haustür' sends the ü as two raw bytes, not %-escaped."""
    body = "&".join(
        f"{k}={v}" for k, v in {**REPORT, "description": "Loch vor der Haustür"}.items()
    )
    response = await stack.intake.post(
        "/open311/v2/requests.json",
        content=body.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201
    report_id = response.json()[0]["service_request_id"]
    fetched = await stack.intake.get(f"/open311/v2/requests/{report_id}.json")
    assert fetched.json()[0]["description"] == "Loch vor der Haustür"
    too_many = "&".join(f"attribute[a{i}]=1" for i in range(1001))
    refused = await stack.intake.post(
        "/open311/v2/requests.json",
        content=f"api_key={API_KEY}&{too_many}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 400
    assert "at most 1000 fields" in refused.json()[0]["description"]
