"""Geo-router over the real broker and PostGIS with Leipzig's real districts."""

from uuid import uuid4

from conftest import Stack
from devstack.testing import eventually, publish
from mm_shared.events import ReportSubmitted, Topic, utcnow


def submitted(lat: float, long: float, service_code: str = "001") -> ReportSubmitted:
    return ReportSubmitted(
        report_id=uuid4(),
        jurisdiction="leipzig",
        service_code=service_code,
        lat=lat,
        long=long,
        submitted_at=utcnow(),
    )


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
    assert "Zentrum" in body["rule"]["explanation"]

    outside = await stack.geo_router.get(
        "/v1/route", params={"lat": 48.137, "long": 11.575, "service_code": "001"}
    )
    assert outside.status_code == 404
    assert outside.json()["error"] == "outside_jurisdiction"

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
    params = {"lat": 51.34436056624219, "long": 12.379275261310742, "service_code": "005"}
    for _ in range(3):
        body = (await stack.geo_router.get("/v1/route", params=params)).json()
        assert {"level": "ortsteil", "code": "00", "name": "Zentrum"} in body["areas"]
