"""Every Open311 GeoReport v2 endpoint, in both formats, with its errors."""

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import API_KEY, Stack

FORM = {"api_key": API_KEY, "service_code": "002", "lat": "51.3397", "long": "12.3731"}


def xml(text: str) -> ElementTree.Element:
    assert text.startswith("<?xml version='1.0' encoding='utf-8'?>")
    return ElementTree.fromstring(text.encode())


async def test_discovery_in_both_formats(stack: Stack) -> None:
    body = (await stack.intake.get("/open311/v2/discovery.json")).json()
    assert body["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert "application/json" in body["endpoints"][0]["formats"]
    root = xml((await stack.intake.get("/open311/v2/discovery.xml")).text)
    assert root.tag == "discovery"
    assert root.find("endpoints/endpoint/formats/format") is not None


async def test_services_list_keeps_codes_as_strings(stack: Stack) -> None:
    services = (await stack.intake.get("/open311/v2/services.json")).json()
    assert len(services) >= 10
    assert services[0]["service_code"] == "001"
    by_code = {s["service_code"]: s for s in services}
    assert by_code["005"]["metadata"] is True
    assert by_code["001"]["metadata"] is False
    root = xml((await stack.intake.get("/open311/v2/services.xml")).text)
    assert root.tag == "services"
    assert root.find("service/service_code").text == "001"  # type: ignore[union-attr]


async def test_service_definition_with_attributes_and_404(stack: Stack) -> None:
    definition = (await stack.intake.get("/open311/v2/services/005.json")).json()
    [waste_type, _] = definition["attributes"]
    assert waste_type["code"] == "waste_type"
    assert waste_type["required"] is True
    assert {"key": "bulky", "name": "Sperrmüll / bulky waste"} in waste_type["values"]
    root = xml((await stack.intake.get("/open311/v2/services/005.xml")).text)
    assert root.tag == "service_definition"
    assert root.find("attributes/attribute/values/value/key").text == "bulky"  # type: ignore[union-attr]
    for fmt in ("json", "xml"):
        missing = await stack.intake.get(f"/open311/v2/services/999.{fmt}")
        assert missing.status_code == 404
    assert (await stack.intake.get("/open311/v2/services/999.json")).json()[0]["code"] == 404
    root = xml((await stack.intake.get("/open311/v2/services/999.xml")).text)
    assert root.tag == "errors"
    assert root.find("error/code").text == "404"  # type: ignore[union-attr]


async def test_post_in_xml_and_get_by_id_and_token(stack: Stack) -> None:
    created = await stack.intake.post("/open311/v2/requests.xml", data=FORM)
    assert created.status_code == 201
    request = xml(created.text).find("request")
    assert request is not None
    request_id = request.findtext("service_request_id")
    # Every service is realtime: the answer is the id, not a token as well (GeoReport v2:
    # one or the other). Tokens handed out before stay answerable.
    assert request.find("token") is None
    token = await stored_token(stack, str(request_id))
    fetched = xml((await stack.intake.get(f"/open311/v2/requests/{request_id}.xml")).text)
    assert fetched.findtext("request/service_code") == "002"
    assert fetched.findtext("request/status") == "open"
    requested = fetched.findtext("request/requested_datetime")
    assert requested
    assert requested.endswith(("+01:00", "+02:00"))
    by_token = (await stack.intake.get(f"/open311/v2/tokens/{token}.json")).json()
    assert by_token == [{"service_request_id": request_id, "token": token}]
    assert (await stack.intake.get("/open311/v2/tokens/nope.json")).status_code == 404


async def stored_token(stack: Stack, request_id: str) -> str:
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.connect() as conn:
            token = await conn.scalar(
                sa.text("SELECT token FROM intake.reports WHERE id = :id"), {"id": request_id}
            )
    finally:
        await engine.dispose()
    assert token
    return str(token)


async def test_post_answers_the_service_request_id_alone(stack: Stack) -> None:
    created = await stack.intake.post("/open311/v2/requests.json", data=FORM)
    assert created.status_code == 201
    [answer] = created.json()
    assert set(answer) == {"service_request_id", "service_notice", "account_id"}


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_a_retry_with_the_same_idempotency_key_files_nothing_new(
    stack: Stack, fmt: str
) -> None:
    key = {"Idempotency-Key": f"open311-{fmt}-{datetime.now(UTC).timestamp()}"}
    url = f"/open311/v2/requests.{fmt}"
    form = {**FORM, "description": f"Retried {key}"}
    first = await stack.intake.post(url, data=form, headers=key)
    again = await stack.intake.post(url, data=form, headers=key)
    changed = await stack.intake.post(url, data={**form, "description": "other"}, headers=key)
    without_key = [await stack.intake.post(url, data=form) for _ in range(2)]

    def request_id(response: httpx.Response) -> str:
        if fmt == "json":
            return str(response.json()[0]["service_request_id"])
        return str(xml(response.text).findtext("request/service_request_id"))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert request_id(again) == request_id(first)
    assert changed.status_code == 400
    assert "Idempotency-Key" in changed.text
    assert [r.status_code for r in without_key] == [201, 201]
    assert request_id(without_key[0]) != request_id(without_key[1])
    engine = create_async_engine(stack.database_url)
    async with engine.connect() as conn:
        filed = await conn.scalar(
            sa.text("SELECT count(*) FROM intake.reports WHERE description = :d"),
            {"d": form["description"]},
        )
    await engine.dispose()
    assert filed == 3


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_an_unknown_service_code_on_post_is_a_404(stack: Stack, fmt: str) -> None:
    response = await stack.intake.post(
        f"/open311/v2/requests.{fmt}", data={**FORM, "service_code": "999", "lat": "abc"}
    )
    assert response.status_code == 404
    if fmt == "json":
        [error] = response.json()
    else:
        [error] = [
            {"code": e.findtext("code"), "description": e.findtext("description")}
            for e in xml(response.text)
        ]
    assert str(error["code"]) == "404"
    assert "999" in str(error["description"])


async def test_requests_carry_an_address_id(stack: Stack) -> None:
    created = await stack.intake.post("/open311/v2/requests.json", data=FORM)
    request_id = created.json()[0]["service_request_id"]
    [request] = (await stack.intake.get(f"/open311/v2/requests/{request_id}.json")).json()
    assert "address_id" in request
    assert request["address_id"] is None
    listed = xml((await stack.intake.get(f"/open311/v2/requests/{request_id}.xml")).text)
    assert listed.find("request/address_id") is not None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/open311/v2/discovery.json"),
        ("GET", "/open311/v2/services.json"),
        ("GET", "/open311/v2/requests.json"),
        ("GET", "/open311/v2/services/999.json"),
        ("POST", "/open311/v2/requests.json"),
        ("GET", "/open311/v2/requests/not-an-id.json"),
    ],
)
async def test_json_answers_name_their_charset(stack: Stack, method: str, path: str) -> None:
    response = await stack.intake.request(method, path, data=FORM if method == "POST" else None)
    assert response.headers["content-type"] == "application/json; charset=utf-8"


async def test_attributes_are_checked_against_the_definition(stack: Stack) -> None:
    base = {**FORM, "service_code": "005"}
    missing = await stack.intake.post("/open311/v2/requests.json", data=base)
    assert missing.status_code == 400
    assert "attribute[waste_type] is required" in missing.json()[0]["description"]
    wrong = await stack.intake.post(
        "/open311/v2/requests.json",
        data={**base, "attribute[waste_type]": "plutonium", "attribute[colour]": "red"},
    )
    assert wrong.status_code == 400
    assert len(wrong.json()) == 2
    fine = await stack.intake.post(
        "/open311/v2/requests.json", data={**base, "attribute[waste_type]": "bulky"}
    )
    assert fine.status_code == 201


async def test_get_requests_filters(stack: Stack) -> None:
    ids = []
    for code in ("011", "011", "009"):
        response = await stack.intake.post(
            "/open311/v2/requests.json", data={**FORM, "service_code": code}
        )
        ids.append(response.json()[0]["service_request_id"])
    by_ids = (
        await stack.intake.get(
            "/open311/v2/requests.json",
            params={"service_request_id": ",".join(ids[:2]), "service_code": "009"},
        )
    ).json()
    assert {r["service_request_id"] for r in by_ids} == set(ids[:2])  # ids override the rest
    by_code = (
        await stack.intake.get(
            "/open311/v2/requests.json", params={"service_code": "011,009", "status": "open"}
        )
    ).json()
    assert set(ids) <= {r["service_request_id"] for r in by_code}
    assert {r["service_code"] for r in by_code} <= {"011", "009"}
    closed = (
        await stack.intake.get(
            "/open311/v2/requests.json", params={"service_code": "011", "status": "closed"}
        )
    ).json()
    assert not set(ids) & {r["service_request_id"] for r in closed}
    now = datetime.now(UTC)
    window = {"start_date": (now - timedelta(hours=1)).isoformat(), "end_date": now.isoformat()}
    recent = (await stack.intake.get("/open311/v2/requests.json", params=window)).json()
    assert set(ids) <= {r["service_request_id"] for r in recent}
    old = (
        await stack.intake.get(
            "/open311/v2/requests.json",
            params={"start_date": "2020-01-01T00:00:00Z", "end_date": "2020-02-01T00:00:00Z"},
        )
    ).json()
    assert old == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"start_date": "2020-01-01T00:00:00Z", "end_date": "2020-06-01T00:00:00Z"}, "90 days"),
        ({"start_date": "yesterday"}, "ISO 8601"),
        ({"status": "pending"}, "open or closed"),
        ({"service_request_id": "x,y"}, "not a valid id"),
    ],
)
async def test_get_requests_refuses_bad_filters(stack: Stack, params, fragment) -> None:  # type: ignore[no-untyped-def]
    response = await stack.intake.get("/open311/v2/requests.json", params=params)
    assert response.status_code == 400
    assert any(fragment in e["description"] for e in response.json())


async def test_errors_in_xml_list_every_problem(stack: Stack) -> None:
    response = await stack.intake.post(
        "/open311/v2/requests.xml",
        data={"api_key": API_KEY, "service_code": "", "lat": "5700000", "long": "320000"},
    )
    assert response.status_code == 400
    root = xml(response.text)
    assert root.tag == "errors"
    descriptions = [e.findtext("description") for e in root.findall("error")]
    assert len(descriptions) == 2
    assert any("projected metres" in (d or "") for d in descriptions)


async def test_missing_api_key_is_403_in_xml_too(stack: Stack) -> None:
    response = await stack.intake.post("/open311/v2/requests.xml", data={**FORM, "api_key": ""})
    assert response.status_code == 403
    assert xml(response.text).findtext("error/code") == "403"


async def test_an_address_alone_is_located_by_the_geocoder(stack: Stack) -> None:
    response = await stack.intake.post(
        "/open311/v2/requests.json",
        data={"api_key": API_KEY, "service_code": "001", "address_string": "Markt 1"},
    )
    assert response.status_code == 201, response.text
    request_id = response.json()[0]["service_request_id"]
    found = (await stack.intake.get(f"/open311/v2/requests/{request_id}.json")).json()[0]
    assert (found["lat"], found["long"]) == (51.3406, 12.3747)
    assert found["address"] == "Markt 1"


async def test_an_address_nobody_knows_or_outside_the_city_is_refused(stack: Stack) -> None:
    await stack.boundary_known()
    unknown = await stack.intake.post(
        "/open311/v2/requests.json",
        data={"api_key": API_KEY, "service_code": "001", "address_string": "Nirgendwo 99"},
    )
    assert unknown.status_code == 400
    assert "was not found" in unknown.json()[0]["description"]
    outside = await stack.intake.post(
        "/open311/v2/requests.json",
        data={
            "api_key": API_KEY,
            "service_code": "001",
            "address_string": "Marienplatz 1, München",
        },
    )
    assert outside.status_code == 400
    assert "outside" in outside.json()[0]["description"]


async def test_an_unknown_format_gets_an_open311_error(stack: Stack) -> None:
    response = await stack.intake.get("/open311/v2/services.yaml")
    assert response.status_code == 400
    assert response.json()[0]["code"] == 400
    assert "fmt" in response.json()[0]["description"]
    missing = await stack.intake.get("/open311/v2/nothing.xml")
    assert missing.status_code == 404
    assert xml(missing.text).findtext("error/code") == "404"
