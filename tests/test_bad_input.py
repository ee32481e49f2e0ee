"""What the services refuse, and in which shape: a NUL character (PostgreSQL stores none, and a
query carrying one fails), FastAPI's own refusals, and browsers on origins nobody allowed."""

import pytest

from conftest import API_KEY, CITY_APP_ORIGIN, Stack


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
