"""The notifier over the real broker, database and an SMTP server."""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import WEB_STYLESHEET, Stack
from devstack.testing import body_text, eventually, publish
from mm_shared.events import (
    OfficeRef,
    ReporterContactSubmitted,
    ReportStatus,
    ReportStatusChanged,
    utcnow,
)
from notifier.adapters.db import SqlUnitOfWorkFactory, contacts, notifications, status_events
from notifier.handlers import erase_expired_contacts

OFFICE = OfficeRef(code="SRL", name="Stadtreinigung Leipzig")


def status_changed(
    report_id: UUID, status: ReportStatus = ReportStatus.ASSIGNED, note: str | None = None
) -> ReportStatusChanged:
    return ReportStatusChanged(
        report_id=report_id,
        service_code="005",
        previous_status=ReportStatus.RECEIVED,
        status=status,
        office=OFFICE,
        public_note=note,
        changed_by="test",
    )


async def test_the_reporter_gets_one_mail_in_their_language_even_if_delivered_twice(
    stack: Stack,
) -> None:
    report_id = uuid4()
    contact = ReporterContactSubmitted(
        report_id=report_id, email="en@example.org", first_name="Ann", locale="en"
    )
    change = status_changed(report_id)
    await publish(stack.kafka, contact, change, change)

    [mail] = await eventually(lambda: _mails(stack, "en@example.org"))
    assert mail["Subject"].startswith("Your report is with Stadtreinigung Leipzig")
    text = body_text(mail)
    assert "Hello Ann" in text
    assert "/v1/unsubscribe/" in text
    assert mail["Message-ID"].startswith(f"<{change.event_id}.")

    # A later change arriving proves the duplicate was consumed and ignored in between.
    closed = status_changed(report_id, ReportStatus.RESOLVED, note="Abgeholt")
    await publish(stack.kafka, closed)
    await eventually(lambda: _mails(stack, "en@example.org", count=2))
    assert len(stack.smtp.to("en@example.org")) == 2
    assert "resolved" in stack.smtp.to("en@example.org")[1]["Subject"]


async def test_a_status_change_that_arrives_before_the_contact_still_reaches_the_reporter(
    stack: Stack,
) -> None:
    report_id = uuid4()
    # Submitted (with the contact) first, assigned after; but the assignment arrives first.
    contact = ReporterContactSubmitted(report_id=report_id, email="late@example.org")
    await publish(stack.kafka, status_changed(report_id))
    await publish(stack.kafka, contact)
    [mail] = await eventually(lambda: _mails(stack, "late@example.org"))
    assert "Zuständig ist: Stadtreinigung Leipzig" in body_text(mail)


async def test_unsubscribe_stops_further_mails(stack: Stack) -> None:
    report_id = uuid4()
    await publish(
        stack.kafka,
        ReporterContactSubmitted(report_id=report_id, email="quiet@example.org"),
        status_changed(report_id),
    )
    [mail] = await eventually(lambda: _mails(stack, "quiet@example.org"))
    link = next(line for line in body_text(mail).splitlines() if "/v1/unsubscribe/" in line)
    path = link[link.index("/v1/unsubscribe/") :].strip()
    token = path.rsplit("/", 1)[1]
    # Opening the link (as a mail scanner does) only asks; the page never repeats the token.
    confirmation = await stack.notifier.get(path)
    assert confirmation.status_code == 200
    assert '<form method="post">' in confirmation.text
    assert f'<link rel="stylesheet" href="{WEB_STYLESHEET}">' in confirmation.text
    assert token not in confirmation.text
    preferences = await stack.notifier.get(f"/v1/preferences/{token}")  # the choice is marked
    assert 'value="every_change">bei jeder Änderung / on every change</button> ✓' in (
        preferences.text
    )
    # RFC 8058 one-click, as a mail client sends it from the List-Unsubscribe header.
    unsubscribed = await stack.notifier.post(path, data={"List-Unsubscribe": "One-Click"})
    assert unsubscribed.status_code == 200
    for unknown in ("/v1/unsubscribe/unknown", '/v1/preferences/"><img src=x onerror=alert(1)>'):
        refused = await stack.notifier.get(unknown)
        assert refused.status_code == 404
        assert "<img" not in refused.text

    resolved = status_changed(report_id, ReportStatus.RESOLVED)
    await publish(stack.kafka, resolved)
    engine = create_async_engine(stack.database_url)
    try:

        async def state() -> str | None:
            async with engine.connect() as conn:
                return await conn.scalar(  # type: ignore[no-any-return]
                    sa.text(
                        "SELECT state FROM notifier.notifications WHERE event_id = :id AND channel = 'email'"
                    ),
                    {"id": resolved.event_id},
                )

        assert await eventually(lambda: _is_skipped(state))
    finally:
        await engine.dispose()
    assert len(stack.smtp.to("quiet@example.org")) == 1


async def _is_skipped(state: Callable[[], Awaitable[str | None]]) -> bool:
    return await state() == "skipped"


async def _mails(stack: Stack, address: str, count: int = 1):  # type: ignore[no-untyped-def]
    mails = stack.smtp.to(address)
    return mails if len(mails) >= count else None


async def test_contact_data_is_erased_once_its_report_has_been_closed_long_enough(
    stack: Stack,
) -> None:
    closed_long_ago, closed_today, still_open = uuid4(), uuid4(), uuid4()
    resolved_long_ago = status_changed(closed_long_ago, ReportStatus.RESOLVED).model_copy(
        update={"occurred_at": utcnow() - timedelta(days=100)}
    )
    await publish(
        stack.kafka,
        *(
            ReporterContactSubmitted(report_id=r, email=f"{n}@example.org")
            for n, r in [("old", closed_long_ago), ("today", closed_today), ("open", still_open)]
        ),
        resolved_long_ago,
        status_changed(closed_today, ReportStatus.RESOLVED),
        status_changed(still_open),
    )
    reports = [closed_long_ago, closed_today, still_open]
    engine = create_async_engine(stack.database_url)
    try:

        async def emails() -> list[str]:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(contacts.c.email)
                    .where(contacts.c.report_id.in_(reports))
                    .order_by(contacts.c.email)
                )
                return list(rows.scalars())

        async def all_stored() -> bool:
            async with engine.connect() as conn:
                events = await conn.scalar(
                    sa.select(sa.func.count()).where(status_events.c.report_id.in_(reports))
                )
            return len(await emails()) == 3 and events == 3

        await eventually(all_stored)
        async with engine.begin() as conn:  # a mail it was sent then: erased with the contact
            await conn.execute(
                sa.insert(notifications).from_select(
                    ["event_id", "report_id", "contact_id", "channel", "event", "state"],
                    sa.select(
                        sa.literal(resolved_long_ago.event_id),
                        contacts.c.report_id,
                        contacts.c.id,
                        sa.literal("email"),
                        sa.literal(resolved_long_ago.model_dump(mode="json"), pg.JSONB),
                        sa.literal("sent"),
                    ).where(contacts.c.report_id == closed_long_ago),
                )
            )
        assert await erase_expired_contacts(SqlUnitOfWorkFactory(engine), timedelta(days=30)) >= 1
        assert await emails() == ["open@example.org", "today@example.org"]
    finally:
        await engine.dispose()
