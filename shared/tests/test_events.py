from uuid import uuid4

import pytest
from pydantic import ValidationError

from mm_shared.events import (
    ALL_EVENTS,
    TOPIC_PARTITIONS,
    MatchedArea,
    OfficeRef,
    ReportRouted,
    ReportSubmitted,
    utcnow,
)


def test_event_round_trips_through_json_with_envelope_and_headers() -> None:
    report_id = uuid4()
    event = ReportRouted(
        report_id=report_id,
        office=OfficeRef(code="VTA", name="Verkehrs- und Tiefbauamt"),
        areas=(MatchedArea(level="ortsteil", code="00", name="Zentrum"),),
        rule="Regel 1",
    )
    again = ReportRouted.model_validate_json(event.model_dump_json())
    assert again == event
    assert event.key == str(report_id).encode()
    assert event.headers() == {
        "event_type": "ReportRouted",
        "schema_version": "1",
        "event_id": str(event.event_id),
        "correlation_id": str(event.correlation_id),
    }


def test_consumers_ignore_fields_added_later_in_the_same_version() -> None:
    body = {
        "event_type": "ReportSubmitted",
        "report_id": str(uuid4()),
        "jurisdiction": "leipzig",
        "service_code": "001",
        "lat": 51.3,
        "long": 12.4,
        "submitted_at": utcnow().isoformat(),
        "field_from_the_future": 1,
    }
    assert ReportSubmitted.model_validate(body).service_code == "001"


def test_an_event_of_another_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        ReportSubmitted.model_validate({"event_type": "ReportRouted", "report_id": str(uuid4())})


def test_every_event_has_its_own_topic_with_fixed_partitions() -> None:
    topics = [e.topic for e in ALL_EVENTS]
    assert len(set(topics)) == len(topics)
    assert all(t in TOPIC_PARTITIONS for t in topics)
