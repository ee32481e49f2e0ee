"""Geo-router's decisions as intake stores them (real PostgreSQL, no broker): one statement
claims the deliveries and locks the reports, one writes the transitions with their events."""

from collections.abc import Sequence
from uuid import uuid4

import sqlalchemy as sa

from devstack.databases import fresh_database
from intake import handlers
from intake.adapters import db
from intake.domain import Photo, submit
from mm_shared.db import create_engine
from mm_shared.events import (
    MatchedArea,
    OfficeRef,
    ReportRouted,
    ReportStatus,
    Topic,
)
from mm_shared.outbox import Message, Outbox


class Unpublished:
    """The relay is not under test: rows stay in the outbox, where they can be counted."""

    async def __call__(self, messages: Sequence[Message]) -> None:
        raise ConnectionError("no broker in this test")

    async def stop(self) -> None:
        pass


async def test_a_routing_result_assigns_once_however_often_it_comes() -> None:
    url = await fresh_database("mangelmelder_test_routing_results", services=("intake",))
    engine = create_engine(url)
    outbox = Outbox(engine, db.outbox, db.inbox, Unpublished(), "intake")
    report, events = submit(
        jurisdiction="leipzig",
        service_code="001",
        lat=51.3397,
        long=12.3731,
        description="Schlagloch",
        contact=None,
        photos=[Photo("ab" * 32, "image/jpeg", 640, 480)],
    )
    async with outbox.transaction(autocommit=True) as tx:
        await tx.publish(*events, along_with=db.added([report]))
    routed = ReportRouted(
        report_id=report.id,
        correlation_id=report.id,
        office=OfficeRef(code="VTA", name="Verkehrs- und Tiefbauamt"),
        areas=(MatchedArea(level="ortsteil", code="00", name="Zentrum"),),
        rule="Straßenschäden im Stadtbezirk Mitte",
    )
    unknown = routed.model_copy(update={"event_id": uuid4(), "report_id": uuid4()})
    to_parks, to_cleaning = (
        routed.model_copy(
            update={"event_id": uuid4(), "office": office, "override": True, "rule": "staff"}
        )
        for office in (
            OfficeRef(code="ASG", name="Amt für Stadtgrün und Gewässer"),
            OfficeRef(code="SR", name="Stadtreinigung"),
        )
    )

    await handlers.record_routing_results(outbox, [routed])
    await handlers.record_routing_results(outbox, [routed, unknown, to_parks])
    await handlers.record_routing_results(outbox, [to_cleaning])
    # Redelivered after staff moved the ticket on: must not move it back.
    await handlers.record_routing_results(outbox, [routed, to_parks])

    stored = await handlers.get_report(outbox, report.id)
    assert stored is not None
    assert stored.status is ReportStatus.ASSIGNED
    assert stored.office == to_cleaning.office
    assert stored.areas == list(routed.areas)
    assert [c.status for c in stored.history] == [ReportStatus.RECEIVED] + 3 * [
        ReportStatus.ASSIGNED
    ]
    assert stored.photos == report.photos
    async with engine.connect() as conn:
        staged = (
            await conn.execute(sa.select(db.outbox.c.topic).order_by(db.outbox.c.id))
        ).scalars()
        assert list(staged) == [Topic.REPORT_SUBMITTED.value] + 3 * [
            Topic.REPORT_STATUS_CHANGED.value
        ]
    await engine.dispose()
