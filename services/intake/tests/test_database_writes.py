"""Intake's writes on real PostgreSQL, no broker. Geo-router's decisions: one statement reads
what is unprocessed, one writes the transitions with their events and the deliveries, unless
the report changed meanwhile. New reports: group-committed, one bad one failing alone."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa

from devstack.databases import fresh_database
from intake import handlers
from intake.adapters import db
from intake.domain import Contact, Photo, Report, ReporterTokens, submit
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


async def submitted(outbox: Outbox) -> tuple[Report, ReportRouted]:
    """A new report, stored, and geo-router's decision for it."""
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
    return report, routed


@pytest.fixture
async def outbox() -> AsyncIterator[Outbox]:
    url = await fresh_database("mangelmelder_test_database_writes", services=("intake",))
    engine = create_engine(url)
    yield Outbox(engine, db.outbox, db.inbox, Unpublished(), "intake")
    await engine.dispose()


async def test_a_routing_result_assigns_once_however_often_it_comes(outbox: Outbox) -> None:
    engine = outbox.engine
    report, routed = await submitted(outbox)
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

    await handlers.record_routing_results(db.SqlUnitOfWorks(outbox), [routed])
    await handlers.record_routing_results(db.SqlUnitOfWorks(outbox), [routed, unknown, to_parks])
    await handlers.record_routing_results(db.SqlUnitOfWorks(outbox), [to_cleaning])
    # Redelivered after staff moved the ticket on: must not move it back.
    await handlers.record_routing_results(db.SqlUnitOfWorks(outbox), [routed, to_parks])

    stored = await handlers.get_report(db.SqlUnitOfWorks(outbox), report.id)
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


async def test_a_transition_is_not_written_over_a_change_made_since_it_was_read(
    outbox: Outbox,
) -> None:
    report, routed = await submitted(outbox)
    delivery = [(routed.event_id, report.id)]
    async with db.unit_of_work(outbox, autocommit=True) as uow:
        _, reports = await uow.reports.unprocessed(delivery)
    read = reports[report.id]
    read_updated_at = {read.id: read.updated_at}
    change = handlers._apply_routing(read, routed)
    assert change is not None
    async with outbox.engine.begin() as conn:  # meanwhile, someone else changes the report
        await conn.execute(
            db.reports.update().where(db.reports.c.id == report.id).values(updated_at=sa.func.now())
        )

    async with db.unit_of_work(outbox, autocommit=True) as uow:
        staged = await uow.publish(
            change,
            along_with=db.saved(
                [(read, read.history)], unless_changed_since=read_updated_at, deliveries=delivery
            ),
        )

    assert staged == []
    stored = await handlers.get_report(db.SqlUnitOfWorks(outbox), report.id)
    assert stored is not None
    assert stored.status is ReportStatus.RECEIVED
    assert len(stored.history) == 1
    async with db.unit_of_work(outbox, autocommit=True) as uow:
        fresh, _ = await uow.reports.unprocessed(delivery)
    assert fresh == {routed.event_id}  # not recorded: it comes again
    await handlers.record_routing_results(
        db.SqlUnitOfWorks(outbox), [routed]
    )  # read again, decided again
    stored = await handlers.get_report(db.SqlUnitOfWorks(outbox), report.id)
    assert stored is not None
    assert stored.status is ReportStatus.ASSIGNED


async def test_a_report_the_database_refuses_fails_alone_in_its_group_commit(
    outbox: Outbox,
) -> None:
    writer = db.SubmissionWriter(outbox, statements=1)
    good, bad = (
        submit(
            jurisdiction="leipzig",
            service_code="001",
            lat=51.3397,
            long=12.3731,
            description=description,
            contact=None,
        )
        for description in ("Schlagloch", "Gully")
    )
    bad[0].media_url = "\x00"  # past the domain's checks, as a bug elsewhere might let it
    writes = [asyncio.create_task(writer.write(*s)) for s in (good, bad)]
    await asyncio.sleep(0)  # both queued before the writer takes its first batch
    running = asyncio.create_task(writer.run())
    try:
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
    finally:
        running.cancel()
    assert outcomes[0] is None
    assert isinstance(outcomes[1], Exception)
    async with outbox.engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT id FROM intake.reports"))).scalars().all()
    assert stored == [good[0].id]


async def test_kept_contacts_go_by_their_age_or_by_their_reporters_request(
    outbox: Outbox,
) -> None:
    """The SQL of the kept contacts, as the fakes of the fast tier mirror it."""
    uows = db.SqlUnitOfWorks(outbox)
    tokens = ReporterTokens(b"a secret of thirty-two bytes ..")
    reports = []
    for email in ("old@example.org", "new@example.org"):
        report, events = submit(
            jurisdiction="leipzig",
            service_code="001",
            lat=51.3397,
            long=12.3731,
            description="Schlagloch",
            contact=Contact(email),
            tokens=tokens,
        )
        async with uows() as uow:
            await uow.reports.add([report], events)
        reports.append(report)
    old, new = reports
    assert await handlers.follow(uows, new.id, Contact("follower@example.org"))
    async with outbox.engine.begin() as conn:
        await conn.execute(
            db.kept_contacts.update()
            .where(db.kept_contacts.c.report_id == old.id)
            .values(kept_at=sa.func.now() - timedelta(days=40))
        )

    async def kept_emails(within: timedelta | None = None) -> list[str]:
        async with uows() as uow:
            kept = await uow.kept_contacts.kept_since(
                datetime(2000, 1, 1, tzinfo=UTC), after=None, kept_within=within, limit=10
            )
        return sorted(contact.email for _, contact in kept)

    assert await kept_emails() == ["follower@example.org", "new@example.org", "old@example.org"]
    assert await kept_emails(within=timedelta(days=30)) == [
        "follower@example.org",
        "new@example.org",
    ]
    assert await handlers.forget_kept_contacts(uows, timedelta(days=30)) == 1
    assert await kept_emails() == ["follower@example.org", "new@example.org"]
    # The reporter's own contact goes on their request; a follower's stays.
    assert await handlers.erase_kept_contact(uows, tokens, new.id, tokens.issue(new.id)) == 1
    assert await kept_emails() == ["follower@example.org"]
