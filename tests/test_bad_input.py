"""What the services refuse, and in which shape: a NUL character (PostgreSQL stores none, and a
query carrying one fails), FastAPI's own refusals, and browsers on origins nobody allowed."""

from uuid import uuid4
from xml.etree import ElementTree

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import API_KEY, CITY_APP_ORIGIN, Stack
from intake.adapters import staff


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("geo_router", "/v1/areas/ortsteil/%00"),
        ("geo_router", "/v1/offices?jurisdiction=%00"),
        ("notifier", "/v1/notifications/parked?x=%00"),
        ("intake", "/api/v1/staff/tickets?category=%00"),
    ],
)
async def test_a_nul_in_the_address_is_refused_everywhere(
    stack: Stack, service: str, path: str
) -> None:
    response = await getattr(stack, service).get(path)
    assert response.status_code == 400
    body = response.json()
    code = body["error"] if service == "geo_router" else body["errors"][0]["code"]
    assert code == "invalid_character"


async def test_a_reporter_s_page_refuses_it_as_a_page(stack: Stack) -> None:
    response = await stack.notifier.get("/v1/preferences/%00")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "not valid" in response.text


async def test_open311_refuses_it_as_open311_errors(stack: Stack) -> None:
    response = await stack.intake.get("/open311/v2/requests.xml?service_code=%00")
    assert response.status_code == 400
    assert "<code>400</code>" in response.text


async def test_json_text_fields_refuse_it_by_name(stack: Stack) -> None:
    report = {"service_code": "001", "lat": 51.3397, "long": 12.3731, "description": "a\x00b"}
    refused = await stack.intake.post("/api/v1/reports", json=report)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "description"
    created = await stack.intake.post(
        "/open311/v2/requests.json",
        data={"api_key": API_KEY, "service_code": "001", "lat": "51.3397", "long": "12.3731"},
    )
    report_id = created.json()[0]["service_request_id"]
    follower = {"email": "f@example.org", "first_name": "\x00"}
    refused = await stack.intake.post(f"/api/v1/reports/{report_id}/followers", json=follower)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "first_name"


async def test_each_service_answers_fastapis_own_refusals_in_its_shape(stack: Stack) -> None:
    route = await stack.geo_router.get("/v1/route", params={"lat": 91, "long": 12.37})
    assert route.status_code == 422
    assert route.json()["error"] == "invalid_field"
    assert {p["field"] for p in route.json()["problems"]} == {"lat", "service_code"}
    parked = await stack.notifier.get("/v1/notifications/parked")
    assert parked.status_code == 401
    assert parked.json()["errors"][0]["code"] == "unauthorized"


async def test_only_the_configured_web_origins_may_call_intake_from_a_browser(
    stack: Stack,
) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,idempotency-key",
    }
    allowed = await stack.intake.options(
        "/api/v1/reports", headers={"Origin": CITY_APP_ORIGIN, **ask}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == CITY_APP_ORIGIN
    other = await stack.intake.options(
        "/api/v1/reports", headers={"Origin": "https://evil.example", **ask}
    )
    assert "access-control-allow-origin" not in other.headers


# XML 1.0 forbids the C0 controls but tab, line feed and carriage return, lone surrogates,
# U+FFFE and U+FFFF. One such character in a stored report had made every Open311 XML answer
# that held it unparseable; they are refused where text enters, like NUL.
FORBIDDEN = ["\x01", "\x08", "\x0b", "\x0c", "\x1f", "\ufffe"]


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("geo_router", "/v1/offices?jurisdiction=%0B"),
        ("geo_router", "/v1/areas/ortsteil/%01"),
        ("notifier", "/v1/notifications/parked?x=%1f"),
        ("notifier", "/v1/preferences/%0C"),
        ("intake", "/api/v1/staff/tickets?area=%EF%BF%BE"),
        ("intake", "/open311/v2/requests.xml?service_code=%08"),
    ],
)
async def test_a_control_character_in_the_address_is_refused_everywhere(
    stack: Stack, service: str, path: str
) -> None:
    response = await getattr(stack, service).get(path)
    assert response.status_code == 400, response.text
    if service == "geo_router":
        assert response.json()["error"] == "invalid_character"
    elif path.startswith("/v1/preferences/"):
        assert response.headers["content-type"].startswith("text/html")
    elif path.startswith("/open311/"):
        ElementTree.fromstring(response.content)
    else:
        assert response.json()["errors"][0]["code"] == "invalid_character"


async def test_tab_line_feed_and_carriage_return_stay_welcome(stack: Stack) -> None:
    # Not refused as a forbidden character: an unknown jurisdiction like any other.
    offices = await stack.geo_router.get("/v1/offices?jurisdiction=%09%0A%0D")
    assert offices.status_code == 404, offices.text
    assert offices.json()["error"] == "unknown_jurisdiction"
    text = "Schlagloch\r\n\tvor Nr. 5"
    created = await stack.intake.post(
        "/api/v1/reports",
        json={**HERE_IN_LEIPZIG, "description": text},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert created.status_code == 201, created.text
    stored = await stack.intake.get(f"/api/v1/reports/{created.json()['id']}")
    assert stored.json()["description"] == text


HERE_IN_LEIPZIG = {"service_code": "001", "lat": 51.3397, "long": 12.3731}


@pytest.mark.parametrize("character", FORBIDDEN, ids=lambda c: f"U+{ord(c):04X}")
async def test_the_city_app_api_refuses_a_control_character_by_field(
    stack: Stack, character: str
) -> None:
    json_report = {**HERE_IN_LEIPZIG, "description": f"a{character}b"}
    refused = await stack.intake.post("/api/v1/reports", json=json_report)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "description"
    form_report = {**HERE_IN_LEIPZIG, "address": f"Markt{character}1"}
    refused = await stack.intake.post("/api/v1/reports", data=form_report)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "address"
    created = await stack.intake.post(
        "/api/v1/reports", json=HERE_IN_LEIPZIG, headers={"X-Acknowledge-Duplicate": "true"}
    )
    follower = {"email": "f@example.org", "first_name": f"Eri{character}ka"}
    refused = await stack.intake.post(
        f"/api/v1/reports/{created.json()['id']}/followers", json=follower
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "first_name"


async def test_a_lone_surrogate_in_json_is_refused_by_field(stack: Stack) -> None:
    body = b'{"service_code": "001", "lat": 51.3397, "long": 12.3731, "description": "a\\ud800"}'
    refused = await stack.intake.post(
        "/api/v1/reports", content=body, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "description"


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_open311_refuses_a_control_character_by_field(stack: Stack, fmt: str) -> None:
    form = {
        "api_key": API_KEY,
        **{k: str(v) for k, v in HERE_IN_LEIPZIG.items()},
        "description": "a\x0bb",
        "email": "x@example.org",
        "first_name": "\x01",
    }
    refused = await stack.intake.post(f"/open311/v2/requests.{fmt}", data=form)
    assert refused.status_code == 400
    if fmt == "json":
        descriptions = [e["description"] for e in refused.json()]
    else:
        root = ElementTree.fromstring(refused.content)
        descriptions = [e.findtext("description", "") for e in root]
    assert sorted(d.split()[0] for d in descriptions) == ["description", "first_name"]


async def test_staff_notes_refuse_a_control_character(stack: Stack) -> None:
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            _, token = await staff.create_account(conn, f"admin-{uuid4()}", [], is_admin=True)
    finally:
        await engine.dispose()
    created = await stack.intake.post(
        "/api/v1/reports", json=HERE_IN_LEIPZIG, headers={"X-Acknowledge-Duplicate": "true"}
    )
    refused = await stack.intake.post(
        f"/api/v1/staff/tickets/{created.json()['id']}/notes",
        json={"internal_note": "ok\x0b"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "internal_note"


async def test_open311_xml_stays_parseable_with_a_stored_control_character(stack: Stack) -> None:
    """Rows stored before the refusal (or written by anything else) must not break the XML."""
    created = await stack.intake.post(
        "/open311/v2/requests.json",
        data={"api_key": API_KEY, **{k: str(v) for k, v in HERE_IN_LEIPZIG.items()}},
    )
    report_id = created.json()[0]["service_request_id"]
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE intake.reports SET description = :d, address = :a WHERE id = :id"),
                {"d": "Loch\x0bim\x01Weg\ufffe\tTab", "a": "Markt\x1f1", "id": report_id},
            )
    finally:
        await engine.dispose()
    for path in (
        f"/open311/v2/requests/{report_id}.xml",
        f"/open311/v2/requests.xml?service_request_id={report_id}",
    ):
        response = await stack.intake.get(path)
        assert response.status_code == 200
        [request] = ElementTree.fromstring(response.content)
        assert request.findtext("description") == "Loch\ufffdim\ufffdWeg\ufffd\tTab"
        assert request.findtext("address") == "Markt\ufffd1"
    # JSON can carry every character escaped: it says what is stored.
    as_json = await stack.intake.get(f"/open311/v2/requests/{report_id}.json")
    assert as_json.json()[0]["description"] == "Loch\x0bim\x01Weg\ufffe\tTab"
