"""Contacts, status changes, retention and erasure, preferences, office mails: the use cases
against in-memory repositories (fixtures in conftest.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from mm_shared.events import (
    OfficeContact,
    OfficeDirectoryChanged,
    OfficeRef,
    OfficeReminderDue,
    OverdueTicket,
    ReporterContactSubmitted,
    ReportStatus,
    ReportStatusChanged,
)
from notifier import handlers
from notifier.domain import Preference, handed_on_token
from notifier.mails import Mails
from notifier.settings import NotifierSettings

OFFICE = OfficeRef(code="SRL", name="Stadtreinigung Leipzig")


def contact(db: Any, report_id: UUID, email: str, **fields: Any) -> ReporterContactSubmitted:
    """A contact submitted at the database's present moment (unless ``occurred_at`` says)."""
    return ReporterContactSubmitted(
        report_id=report_id,
        email=email,
        occurred_at=fields.pop("occurred_at", db.state.now),
        **fields,
    )


def change(
    db: Any, report_id: UUID, status: ReportStatus = ReportStatus.ASSIGNED, **fields: Any
) -> ReportStatusChanged:
    return ReportStatusChanged(
        report_id=report_id,
        service_code="005",
        previous_status=ReportStatus.RECEIVED,
        status=status,
        office=OFFICE,
        changed_by="test",
        occurred_at=fields.pop("occurred_at", db.state.now),
        **fields,
    )


async def record(db: Any, *events: Any, with_webhook: bool = False) -> None:
    await handlers.record_batch(db, list(events), with_webhook=with_webhook)


def emails_queued(db: Any) -> list[tuple[UUID, str]]:
    """(event id, address) of every e-mail notification queued."""
    by_id = {c.id: c.email for c in db.contacts()}
    return [(n.note.event_id, by_id[n.note.contact_id]) for n in db.notifications("email")]


async def test_a_contact_is_recorded_once_with_every_change_as_its_preference(
    database: Any,
) -> None:
    report_id = uuid4()
    submitted = contact(database, report_id, "ann@example.org", reporter_token="t0k3n")
    await record(database, submitted)
    await record(database, submitted)  # redelivered
    [stored] = database.contacts()
    assert (stored.report_id, stored.email, stored.reporter_token) == (
        report_id,
        "ann@example.org",
        "t0k3n",
    )
    assert stored.preference is Preference.EVERY_CHANGE
    assert submitted.event_id in database.state.inbox


async def test_a_status_change_is_queued_for_every_contact_subscribed_before_it(
    database: Any,
) -> None:
    report_id = uuid4()
    await record(database, contact(database, report_id, "early@example.org"))
    database.advance(timedelta(minutes=1))
    assigned = change(database, report_id)
    database.advance(timedelta(minutes=1))
    # A follower ("me too") subscribed after the change: no old news.
    await record(database, contact(database, report_id, "late@example.org"), assigned)
    assert emails_queued(database) == [(assigned.event_id, "early@example.org")]


async def test_a_change_that_arrives_before_the_contact_still_reaches_the_reporter(
    database: Any,
) -> None:
    report_id = uuid4()
    submitted = contact(database, report_id, "reporter@example.org")
    database.advance(timedelta(seconds=5))
    assigned = change(database, report_id)
    await record(database, assigned)
    assert emails_queued(database) == []
    await record(database, submitted)
    assert emails_queued(database) == [(assigned.event_id, "reporter@example.org")]
    await record(database, assigned)  # redelivered: nothing more
    assert len(database.notifications()) == 1


async def test_the_webhook_hears_of_every_change_and_the_office_of_a_reopening(
    database: Any,
) -> None:
    report_id = uuid4()
    assigned = change(database, report_id)
    reopened = change(database, report_id, ReportStatus.IN_PROGRESS, reopened_by_reporter=True)
    await record(database, assigned, reopened, with_webhook=True)
    assert [n.note.event_id for n in database.notifications("webhook")] == [
        assigned.event_id,
        reopened.event_id,
    ]
    assert [n.note.event_id for n in database.notifications("office")] == [reopened.event_id]


async def test_a_duplicates_contacts_follow_the_original_from_the_merge_on(
    database: Any,
) -> None:
    duplicate, original = uuid4(), uuid4()
    earlier_on_original = change(database, original)
    await record(
        database,
        contact(database, duplicate, "dup@example.org", reporter_token="dup-token"),
        earlier_on_original,
    )
    database.advance(timedelta(minutes=1))
    merged = change(database, duplicate, ReportStatus.DUPLICATE, duplicate_of=original)
    await record(database, merged)
    [reporter, copy] = database.contacts()
    assert (copy.report_id, copy.email, copy.reporter_token) == (original, "dup@example.org", None)
    assert copy.subscribed_at == merged.occurred_at
    assert copy.unsubscribe_token == handed_on_token(reporter.unsubscribe_token, original)
    database.advance(timedelta(minutes=1))
    resolved = change(database, original, ReportStatus.RESOLVED)
    await record(database, resolved)
    # Told of the merge on their own report, and of the original's news after it only.
    assert emails_queued(database) == [
        (merged.event_id, "dup@example.org"),
        (resolved.event_id, "dup@example.org"),
    ]

    # Erasing the reporter's contact erases the copy too.
    assert await handlers.erase_reporter_contact(database, duplicate, "dup-token")
    assert database.contacts() == []
    assert database.notifications() == []


async def test_erasure_needs_the_reporters_own_token(database: Any) -> None:
    report_id = uuid4()
    await record(
        database,
        contact(database, report_id, "me@example.org", reporter_token="mine"),
        contact(database, report_id, "follower@example.org"),
    )
    with pytest.raises(handlers.WrongReporterToken):
        await handlers.erase_reporter_contact(database, report_id, "not-mine")
    assert len(database.contacts()) == 2
    assert await handlers.erase_reporter_contact(database, report_id, "mine")
    assert [c.email for c in database.contacts()] == ["follower@example.org"]
    assert not await handlers.erase_reporter_contact(database, report_id, "mine")
    assert not await handlers.erase_reporter_contact(database, uuid4(), "mine")


async def test_contacts_are_erased_once_their_report_has_been_closed_long_enough(
    database: Any,
) -> None:
    long_ago, today, still_open, busy = uuid4(), uuid4(), uuid4(), uuid4()
    await record(
        database,
        *(
            contact(
                database,
                r,
                f"{name}@example.org",
                occurred_at=database.state.now - timedelta(days=200),
            )
            for name, r in [
                ("old", long_ago),
                ("today", today),
                ("open", still_open),
                ("busy", busy),
            ]
        ),
    )
    await record(
        database,
        change(
            database,
            long_ago,
            ReportStatus.RESOLVED,
            occurred_at=database.state.now - timedelta(days=100),
        ),
        change(
            database,
            busy,
            ReportStatus.RESOLVED,
            occurred_at=database.state.now - timedelta(days=100),
        ),
        change(database, today, ReportStatus.RESOLVED),
        change(database, still_open, occurred_at=database.state.now - timedelta(days=100)),
    )
    # Every mail sent, but the one to "busy", which is still under way.
    for n in database.notifications("email"):
        if n.note.report_id != busy:
            n.state = "sent"
    assert (
        await handlers.erase_expired_contacts(database, timedelta(days=30), now=database.state.now)
        == 1
    )
    assert sorted(c.email for c in database.contacts()) == [
        "busy@example.org",
        "open@example.org",
        "today@example.org",
    ]
    assert {n.note.report_id for n in database.notifications()} == {today, still_open, busy}


async def test_the_preference_link_reads_and_changes_the_choice(database: Any) -> None:
    await record(database, contact(database, uuid4(), "pref@example.org"))
    [stored] = database.contacts()
    token = stored.unsubscribe_token
    assert await handlers.preference_of(database, token) is Preference.EVERY_CHANGE
    assert await handlers.set_preference(database, token, Preference.ONLY_CLOSED)
    assert await handlers.preference_of(database, token) is Preference.ONLY_CLOSED
    assert await handlers.preference_of(database, "unknown") is None
    assert not await handlers.set_preference(database, "unknown", Preference.NONE)


async def test_the_office_reminder_goes_to_the_offices_address_once(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    mails = Mails(settings.public_base_url, settings.tracking_base_url)
    await handlers.record_office_directory(
        database,
        OfficeDirectoryChanged(
            jurisdiction="koeln",
            offices=(OfficeContact(code="OA", name="Ordnungsamt", email="oa@koeln.example"),),
            sender_name="Mängelmelder Köln",
        ),
    )
    report_id = uuid4()
    due = OfficeReminderDue(
        jurisdiction="koeln",
        office_code="OA",
        day=database.state.now.date(),
        not_accepted=(
            OverdueTicket(
                report_id=report_id,
                service_code="005",
                status=ReportStatus.RECEIVED,
                since=database.state.now - timedelta(days=3),
                days=3,
            ),
        ),
        stalled=(),
        past_service_level=(),
        accept_within_working_days=2,
        work_within_days=10,
    )
    await handlers.send_office_reminder(database, mail, mails, due)
    await handlers.send_office_reminder(database, mail, mails, due)  # redelivered
    [sent] = mail.sent
    assert sent.to == "oa@koeln.example"
    assert sent.sender_name == "Mängelmelder Köln"
    assert f"{settings.tracking_base_url}/{report_id}" in sent.text
    assert sent.message_id == f"<{due.event_id}@maengelmelder>"

    elsewhere = due.model_copy(update={"event_id": uuid4(), "office_code": "NOPE"})
    await handlers.send_office_reminder(database, mail, mails, elsewhere)
    assert len(mail.sent) == 1  # no address: dropped


async def test_an_office_reminder_whose_mail_fails_is_not_marked_as_processed(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    mails = Mails(settings.public_base_url, settings.tracking_base_url)
    await handlers.record_office_directory(
        database,
        OfficeDirectoryChanged(
            jurisdiction="leipzig",
            offices=(OfficeContact(code="SRL", name="Stadtreinigung", email="srl@example.org"),),
        ),
    )
    due = OfficeReminderDue(
        jurisdiction="leipzig",
        office_code="SRL",
        day=database.state.now.date(),
        not_accepted=(),
        stalled=(),
        past_service_level=(),
        accept_within_working_days=2,
        work_within_days=10,
    )
    mail.failures = 1
    with pytest.raises(ConnectionRefusedError):
        await handlers.send_office_reminder(database, mail, mails, due)
    await handlers.send_office_reminder(database, mail, mails, due)  # the redelivery
    assert [m.to for m in mail.sent] == ["srl@example.org"]
