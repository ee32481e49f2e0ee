"""The fast ReportRouted serialisation says exactly what the model would."""

from __future__ import annotations

from uuid import UUID

from devstack.testing import submitted
from geo_router.domain import Decision, Rule
from geo_router.handlers import random_event_ids, routed_messages
from mm_shared.events import MatchedArea, OfficeRef, ReportRouted, utcnow


def test_a_routed_message_is_the_model_serialised() -> None:
    office = OfficeRef(code="VTA", name='Verkehrs- und Tiefbauamt "Mitte" – Straßen')
    areas = (
        MatchedArea(level="stadtbezirk", code="0", name="Mitte"),
        MatchedArea(level="ortsteil", code="00", name="Zentrum\\Nord"),
    )
    rule = Rule(id=7, service_code="001", office=office, priority=10, area_level="stadtbezirk")
    decision = Decision(office, rule, "Regel 7: „Schlagloch“ → Verkehrs- und Tiefbauamt")
    # The second and third come from the cached template, at other places; the fourth is of
    # another jurisdiction and must not take the first one's from the cache.
    places = ((51.3397, 12.3731), (51.3, 12.4), (51.312345678901, 12.00001), (50.94, 6.95))
    for (lat, long), jurisdiction in zip(places, ["leipzig"] * 3 + ["koeln"], strict=True):
        report = submitted(lat, long).model_copy(update={"jurisdiction": jurisdiction})
        [(event_id, message)] = routed_messages([(report, decision, areas)])
        routed = ReportRouted.model_validate_json(message.payload)
        expected = ReportRouted(
            event_id=UUID(event_id),
            correlation_id=report.correlation_id,
            occurred_at=routed.occurred_at,
            report_id=report.report_id,
            jurisdiction=jurisdiction,
            office=office,
            areas=areas,
            rule=decision.explanation,
            service_code=report.service_code,
            lat=report.lat,
            long=report.long,
        )
        assert routed == expected
        assert message.key == expected.key
        assert message.headers == expected.headers()
        assert message.topic == expected.topic.value
        assert abs((utcnow() - routed.occurred_at).total_seconds()) < 5


def test_event_ids_are_distinct_version_4_uuids() -> None:
    ids = random_event_ids(10_000)
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == "specified in RFC 4122"
