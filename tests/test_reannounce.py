"""After a broker lost messages, intake and geo-router announce again what they own, with the
original event ids: consumers take what they missed and drop what they have."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import Stack
from devstack.testing import eventually
from geo_router import handlers as geo_router
from geo_router.adapters import db as geo_router_db
from geo_router.adapters.index import History
from intake import handlers as intake
from intake.adapters import db as intake_db
from mm_shared.events import Topic, utcnow
from mm_shared.outbox import Outbox
from tests.test_lifecycle import assigned_and_told, mails_to, move
from tests.test_reporter_actions import reported


async def test_reannounced_events_keep_their_ids_and_only_what_was_missed_takes_effect(
    stack: Stack,
) -> None:
    since = utcnow() - timedelta(seconds=1)
    email = "again@example.org"
    office, report_id = await assigned_and_told(stack, email)
    assert (await move(stack, office, report_id, status="in_progress")).status_code == 200
    await eventually(mails_to(stack, email, 2))
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            history = (
                await conn.execute(
                    sa.text(
                        "SELECT status, event->>'event_id' AS event_id, event->>'event_type' AS type"
                        " FROM intake.status_history WHERE report_id = :id ORDER BY id"
                    ),
                    {"id": report_id},
                )
            ).all()
            # The notifier as if the broker had lost "in progress" before it got there.
            in_progress = history[-1].event_id
            for table in ("notifications", "status_events", "processed_events"):
                await conn.execute(
                    sa.text(f"DELETE FROM notifier.{table} WHERE event_id = CAST(:e AS uuid)"),
                    {"e": in_progress},
                )
        assert [(h.status, h.type) for h in history] == [
            ("received", "ReportSubmitted"),
            ("assigned", "ReportStatusChanged"),
            ("in_progress", "ReportStatusChanged"),
        ]
        announced = {str(h.event_id) for h in history}
        assert announced <= {r.headers["event_id"] for r in stack.tap.about(report_id)}

        staged = await intake.reannounce(
            intake_db.SqlUnitOfWorks(Outbox.staging_only(engine, intake_db.metadata, "intake")),
            since,
        )
        assert staged >= 3
        decisions = await geo_router.reannounce(
            geo_router_db.unit_of_work_factory(
                Outbox.staging_only(engine, geo_router_db.metadata, "geo-router")
            ),
            History(engine),
            since,
        )
        assert decisions >= 1

        def seen() -> Counter[str]:
            return Counter(r.headers["event_id"] for r in stack.tap.about(report_id))

        async def all_twice() -> bool:
            routed = [r for r in stack.tap.about(report_id, Topic.REPORT_ROUTED)]
            return all(seen()[e] == 2 for e in announced) and len(routed) == 2

        await eventually(all_twice)
        # The lost change reaches the reporter once more; nothing else is told again.
        await eventually(mails_to(stack, email, 3))
        assert len(stack.smtp.to(email)) == 3
        assert len({m["Message-ID"] for m in stack.smtp.to(email)}) == 2
        assert stack.smtp.to(email)[1]["Message-ID"] == stack.smtp.to(email)[2]["Message-ID"]
        async with engine.connect() as conn:
            entries = await conn.scalar(
                sa.text("SELECT count(*) FROM intake.status_history WHERE report_id = :id"),
                {"id": report_id},
            )
        assert entries == 3  # geo-router's decision, heard again, changed nothing
    finally:
        await engine.dispose()


async def test_a_contact_the_broker_lost_is_announced_again_until_its_reporter_erases_it(
    stack: Stack,
) -> None:
    since = utcnow() - timedelta(seconds=1)
    email = "lost-contact@example.org"
    report_id, token = await reported(stack, email)
    await eventually(mails_to(stack, email, 1))
    engine = create_async_engine(stack.database_url)

    async def kept() -> list[str]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT event->>'event_id' FROM intake.kept_contacts WHERE report_id = :id"
                ),
                {"id": report_id},
            )
            return list(rows.scalars())

    async def contacts_at_notifier() -> int:
        async with engine.connect() as conn:
            return int(
                await conn.scalar(
                    sa.text("SELECT count(*) FROM notifier.contacts WHERE report_id = :id"),
                    {"id": report_id},
                )
            )

    try:
        [contact_event] = await kept()
        published = stack.tap.about(report_id, Topic.REPORTER_CONTACT)
        assert [r.headers["event_id"] for r in published] == [contact_event]
        # The notifier as if the broker had lost the contact before it got there.
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "DELETE FROM notifier.notifications WHERE contact_id IN"
                    " (SELECT id FROM notifier.contacts WHERE report_id = :id)"
                ),
                {"id": report_id},
            )
            await conn.execute(
                sa.text("DELETE FROM notifier.contacts WHERE report_id = :id"), {"id": report_id}
            )
            await conn.execute(
                sa.text("DELETE FROM notifier.processed_events WHERE event_id = CAST(:e AS uuid)"),
                {"e": contact_event},
            )
        outbox = Outbox.staging_only(engine, intake_db.metadata, "intake")
        assert (
            await intake.reannounce(intake_db.SqlUnitOfWorks(outbox), since) >= 3
        )  # submission, assigned, contact

        async def contact_back() -> bool:
            again = stack.tap.about(report_id, Topic.REPORTER_CONTACT)
            return [r.headers["event_id"] for r in again] == [contact_event] * 2

        await eventually(contact_back)
        # The reporter is known again, and told what they missed.
        await eventually(mails_to(stack, email, 2))
        assert await contacts_at_notifier() == 1

        erase = f"/api/v1/reports/{report_id}/contact/erase"
        wrong = await stack.intake.post(erase, json={"reporter_token": "not-it"})
        assert wrong.status_code == 403, wrong.text
        assert wrong.json()["errors"][0]["code"] == "invalid_token"
        assert await kept() == [contact_event]
        assert (await stack.intake.post(erase, json={"reporter_token": token})).status_code == 204
        assert await kept() == []
        # Erased at the notifier too (web asks both); re-announcing brings nobody back.
        assert (await stack.notifier.post(erase, json={"reporter_token": token})).status_code == 204
        await intake.reannounce(intake_db.SqlUnitOfWorks(outbox), since)
        await eventually(
            lambda: _async(len(stack.tap.about(report_id, Topic.REPORT_SUBMITTED)) == 3)
        )
        assert len(stack.tap.about(report_id, Topic.REPORTER_CONTACT)) == 2
        assert await contacts_at_notifier() == 0
    finally:
        await engine.dispose()


async def _async(value: bool) -> bool:
    return value
