"""The dispatcher (claims, sending, outcomes, retries, parking, instances) and area alerts,
against in-memory repositories and fake senders (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from mm_shared.events import (
    MatchedArea,
    OfficeRef,
    ReporterContactSubmitted,
    ReportRouted,
    ReportStatus,
    ReportStatusChanged,
)
from notifier import domain, handlers
from notifier.domain import AlertRequest, Preference
from notifier.mails import Mails
from notifier.settings import NotifierSettings

OFFICE = OfficeRef(code="SRL", name="Stadtreinigung Leipzig")


def dispatcher(
    database: Any, senders: list[Any], settings: NotifierSettings, hooks: Any = None
) -> handlers.Dispatcher:
    return handlers.Dispatcher(database, senders, hooks, settings, clock=lambda: database.state.now)


async def reported(database: Any, *addresses: str, **contact: Any) -> Any:
    """A report with one contact per address, and its assignment; returns the report's id."""
    report_id = uuid4()
    await handlers.record_batch(
        database,
        [
            *(
                ReporterContactSubmitted(
                    report_id=report_id, email=a, occurred_at=database.state.now, **contact
                )
                for a in addresses
            ),
        ],
        with_webhook=False,
    )
    await changed(database, report_id, ReportStatus.ASSIGNED)
    return report_id


async def changed(
    database: Any, report_id: Any, status: ReportStatus, with_webhook: bool = False
) -> ReportStatusChanged:
    database.advance(timedelta(seconds=1))
    event = ReportStatusChanged(
        report_id=report_id,
        service_code="005",
        previous_status=ReportStatus.RECEIVED,
        status=status,
        office=OFFICE,
        changed_by="test",
        occurred_at=database.state.now,
    )
    await handlers.record_batch(database, [event], with_webhook=with_webhook)
    return event


def states(database: Any) -> list[str]:
    return [n.state for n in database.notifications()]


async def test_without_a_heartbeat_nothing_is_claimed(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    await reported(database, "a@example.org")
    assert await dispatcher(database, [mail], settings).deliver_due() == 0
    assert states(database) == ["pending"]
    assert mail.sent == []


async def test_each_contact_gets_the_mail_their_preference_asks_for(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    report_id = await reported(
        database, "every@example.org", "closed@example.org", "none@example.org"
    )
    by_address = {c.email: c.unsubscribe_token for c in database.contacts()}
    await handlers.set_preference(
        database, by_address["closed@example.org"], Preference.ONLY_CLOSED
    )
    await handlers.set_preference(database, by_address["none@example.org"], Preference.NONE)
    resolved = await changed(database, report_id, ReportStatus.RESOLVED)

    d = dispatcher(database, [mail], settings)
    await d.heartbeat()
    # Each contact's second mail waits for their first: two rounds.
    assert await d.deliver_due() == 3
    assert await d.deliver_due() == 3
    assert [m.to for m in mail.sent] == [
        "every@example.org",
        "every@example.org",
        "closed@example.org",
    ]
    assert sorted(states(database)) == ["sent"] * 3 + ["skipped"] * 3
    closed_mail = mail.to("closed@example.org")[0]
    assert closed_mail.message_id.startswith(f"<{resolved.event_id}.")
    assert closed_mail.unsubscribe_url == (
        f"{settings.public_base_url}/v1/unsubscribe/{by_address['closed@example.org']}"
    )


async def test_the_reporters_mail_links_their_report_with_their_token(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    report_id = await reported(database, "r@example.org", reporter_token="secret-token")
    d = dispatcher(database, [mail], settings)
    await d.heartbeat()
    await d.deliver_due()
    [sent] = mail.sent
    assert f"{settings.tracking_base_url}/{report_id}?token=secret-token" in sent.text


async def test_a_failed_mail_is_retried_later_and_parked_after_max_attempts(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    await reported(database, "flaky@example.org")
    d = dispatcher(database, [mail], settings)
    await d.heartbeat()
    mail.always_fail = True
    assert await d.deliver_due() == 1
    [n] = database.notifications()
    assert (n.state, n.attempts) == ("pending", 1)
    assert n.next_attempt_at > database.state.now
    assert "refused" in (n.last_error or "")
    assert await d.deliver_due() == 0  # not due yet: it backs off

    for attempt in (2, 3):
        database.state.now = database.notifications()[0].next_attempt_at
        assert await d.deliver_due() == 1
        assert database.notifications()[0].attempts == attempt
    assert states(database) == ["parked"]  # max_attempts is 3
    [parked] = await handlers.parked(database)
    assert (parked.attempts, parked.channel) == (3, "email")

    mail.always_fail = False
    assert await handlers.retry(database, parked.id)
    assert not await handlers.retry(database, parked.id)  # not parked any more
    assert await d.deliver_due() == 1
    assert states(database) == ["sent"]
    assert [m.to for m in mail.sent] == ["flaky@example.org"]


async def test_a_later_change_never_overtakes_an_earlier_one_to_the_same_contact(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    report_id = await reported(database, "ordered@example.org")
    resolved = await changed(database, report_id, ReportStatus.RESOLVED)
    d = dispatcher(database, [mail], settings)
    await d.heartbeat()
    mail.failures = 1  # the assignment fails once
    assert await d.deliver_due() == 1  # the resolution waits behind it
    assert states(database) == ["pending", "pending"]
    database.state.now = database.notifications()[0].next_attempt_at
    while await d.deliver_due():
        pass
    assert [m.message_id.split(".")[0] for m in mail.sent][-1] == f"<{resolved.event_id}"
    assert len(mail.sent) == 2


async def test_outcomes_are_recorded_together_and_before_a_connection_sends_again(
    database: Any, settings: NotifierSettings
) -> None:
    class SlowSender:
        """Checks that its earlier mails are recorded as sent before the next one goes."""

        def __init__(self) -> None:
            self.sent: list[Any] = []

        async def send(self, message: Any, ready: Any = None) -> None:
            await asyncio.sleep(0)
            await ready()
            recorded = {
                contacts[n.note.contact_id] for n in database.notifications() if n.state == "sent"
            }
            assert {m.to for m in self.sent} <= recorded
            self.sent.append(message)

    senders = [SlowSender() for _ in range(4)]
    await reported(database, *(f"c{i}@example.org" for i in range(20)))
    contacts = {c.id: c.email for c in database.contacts()}
    d = dispatcher(database, list(senders), settings)
    await d.heartbeat()
    assert await d.deliver_due() == 20
    assert states(database) == ["sent"] * 20
    assert sum(len(s.sent) for s in senders) == 20
    assert sum(database.recorded_batches) == 20
    assert max(database.recorded_batches) > 1  # fewer statements than mails


async def test_an_outcome_the_database_did_not_take_is_kept_and_the_mail_not_sent_again(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    await reported(database, "once@example.org", "twice@example.org")
    d = dispatcher(database, [mail], settings)
    await d.heartbeat()
    database.go_away()
    assert await d.deliver_due() == 2
    # The first was sent, its outcome kept; the connection sent nothing more meanwhile.
    assert [m.to for m in mail.sent] == ["once@example.org"]
    assert states(database) == ["sending", "sending"]
    with pytest.raises(ConnectionError):  # still away: the kept outcome comes first
        await d.deliver_due()
    assert len(mail.sent) == 1
    database.go_away(False)
    while await d.deliver_due():
        pass
    assert [m.to for m in mail.sent] == ["once@example.org", "twice@example.org"]
    assert states(database) == ["sent", "sent"]


async def test_the_claims_of_a_silent_instance_go_to_a_live_one_and_never_twice(
    database: Any, settings: NotifierSettings
) -> None:
    from_first: list[Any] = []
    from_second: list[Any] = []

    class Recording:
        def __init__(self, into: list[Any]) -> None:
            self.into = into

        async def send(self, message: Any, ready: Any = None) -> None:
            if ready is not None:
                await ready()
            self.into.append(message.to)

    first = dispatcher(database, [Recording(from_first)], settings)
    second = dispatcher(database, [Recording(from_second)], settings)
    await first.heartbeat()
    await second.heartbeat()
    await reported(database, *(f"s{i}@example.org" for i in range(60)))
    # Both claim from the same queue: 25 each at a time.
    assert await first.deliver_due() == 25
    assert await second.deliver_due() == 25
    while await first.deliver_due() or await second.deliver_due():
        pass
    assert sorted(from_first + from_second) == sorted(f"s{i}@example.org" for i in range(60))
    assert set(from_first).isdisjoint(from_second)

    # A third instance claims and falls silent: its claims go back after instance_dead_after_s.
    await reported(database, "orphan@example.org")
    silent = dispatcher(database, [Recording([])], settings)
    await silent.heartbeat()
    async with database() as uow:
        await uow.notifications.claim_due_in_order_per_recipient(
            silent.instance_id, 10, database.state.now
        )
    assert await first.release_claims_of_dead_instances() == 0  # still alive
    database.advance(timedelta(seconds=settings.instance_dead_after_s + 1))
    await first.heartbeat()  # renews itself, releases the silent one's claim
    assert silent.instance_id not in database.state.instances
    assert await first.deliver_due() == 1
    assert from_first[-1] == "orphan@example.org"


async def test_an_instance_leaving_gives_back_its_claims(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    await reported(database, "left@example.org")
    d = dispatcher(database, [mail], settings)
    await d.heartbeat()
    async with database() as uow:
        await uow.notifications.claim_due_in_order_per_recipient(
            d.instance_id, 10, database.state.now
        )
    assert states(database) == ["sending"]
    await d.leave()
    assert states(database) == ["pending"]
    assert d.instance_id not in database.state.instances


async def test_the_webhook_gets_the_event_signed_by_its_id(
    database: Any, mail: Any, hooks: Any, settings: NotifierSettings
) -> None:
    report_id = uuid4()
    event = await changed(database, report_id, ReportStatus.ASSIGNED, with_webhook=True)
    d = dispatcher(database, [mail], settings, hooks)
    await d.heartbeat()
    assert await d.deliver_due() == 1
    [(payload, event_id)] = hooks.sent
    assert event_id == str(event.event_id)
    assert payload["status"] == "assigned"
    assert states(database) == ["sent"]


# Area alerts.


def mails_for(settings: NotifierSettings) -> Mails:
    return Mails(settings.public_base_url, settings.tracking_base_url)


def request(email: str = "alerts@example.org", **fields: Any) -> AlertRequest:
    defaults: dict[str, Any] = {
        "locale": "de",
        "service_code": None,
        "area_code": "101",
        "point": None,
    }
    return AlertRequest(email=email, **(defaults | fields))


async def test_an_alert_subscription_is_confirmed_by_its_link_and_then_gets_alerts(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    await handlers.subscribe_to_alerts(database, mail, mails_for(settings), request())
    [confirmation] = mail.sent
    [subscription] = database.state.alerts.values()
    confirm_url = f"{settings.public_base_url}/alerts/confirm/{subscription.confirm_token}"
    assert confirm_url in confirmation.text

    routed = ReportRouted(
        report_id=uuid4(),
        office=OFFICE,
        areas=(MatchedArea(level="ortsteil", code="101", name="Zentrum"),),
        rule="test",
        service_code="005",
    )
    await handlers.record_batch(database, [routed], with_webhook=False)
    assert database.notifications("alert") == []  # not confirmed yet: no consent

    found = await handlers.alert_subscription(database, confirm_token=subscription.confirm_token)
    assert found is not None
    assert found.id == subscription.id
    assert await handlers.confirm_alerts(
        database, subscription.confirm_token, now=database.state.now
    )
    assert await handlers.confirm_alerts(database, subscription.confirm_token)  # again: fine
    assert not await handlers.confirm_alerts(database, "unknown")
    again = routed.model_copy(update={"event_id": uuid4(), "report_id": uuid4()})
    await handlers.record_batch(database, [again, routed], with_webhook=False)
    [alert] = database.notifications("alert")
    assert alert.note.report_id == again.report_id  # the first routing was consumed already

    d = dispatcher(database, [mail], settings)
    await d.heartbeat()
    assert await d.deliver_due() == 1
    assert mail.sent[-1].to == "alerts@example.org"
    assert "Zentrum" in mail.sent[-1].text

    assert await handlers.unsubscribe_alerts(database, subscription.unsubscribe_token)
    assert not await handlers.unsubscribe_alerts(database, subscription.unsubscribe_token)
    assert database.state.alerts == {}


async def test_an_address_with_several_unconfirmed_subscriptions_gets_no_more_mails(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    mails = mails_for(settings)
    for _ in range(3):
        await handlers.subscribe_to_alerts(
            database, mail, mails, request("Spam@Example.org"), now=database.state.now
        )
    with pytest.raises(handlers.TooManyUnconfirmed):
        await handlers.subscribe_to_alerts(
            database, mail, mails, request("spam@example.org"), now=database.state.now
        )
    assert len(mail.sent) == 3
    # A day later the count starts again.
    database.advance(timedelta(days=1, seconds=1))
    await handlers.subscribe_to_alerts(
        database, mail, mails, request("spam@example.org"), now=database.state.now
    )
    assert len(mail.sent) == 4
    # Unconfirmed for a week: gone at the next sweep.
    database.advance(timedelta(days=7, seconds=1))
    await handlers.erase_expired_contacts(database, timedelta(days=90), now=database.state.now)
    assert database.state.alerts == {}


async def test_a_confirmation_mail_that_cannot_be_sent_leaves_no_subscription(
    database: Any, mail: Any, settings: NotifierSettings
) -> None:
    mail.failures = 1
    with pytest.raises(ConnectionRefusedError):
        await handlers.subscribe_to_alerts(database, mail, mails_for(settings), request())
    assert database.state.alerts == {}


class GatedStatements:
    """Outcome statements that run until the test opens the gate; counts them."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.began = asyncio.Event()
        self.batches: list[int] = []
        self.running = self.most_at_once = 0

    async def record(self, outcomes: list[Any]) -> None:
        self.batches.append(len(outcomes))
        self.began.set()
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await self.gate.wait()
        self.running -= 1

    async def started(self, statements: int) -> None:
        while len(self.batches) < statements:
            self.began.clear()
            await self.began.wait()


def sent(notification_id: int) -> Any:
    return domain.sent(notification_id, datetime.now(UTC))


@pytest.mark.parametrize(
    ("overlap_after_s", "at_once"),
    [(3600.0, 1), (0.0, 2)],
    ids=["quick commits: one statement at a time", "slow commits: statements overlap"],
)
async def test_outcomes_arriving_during_a_statement_are_recorded_together_by_the_next(
    overlap_after_s: float, at_once: int
) -> None:
    statements = GatedStatements()
    recorder = handlers._GroupRecorder(statements.record, 4, overlap_after_s)
    first = recorder.record(sent(1))
    await statements.started(1)
    later = [recorder.record(sent(i)) for i in range(2, 7)]
    if at_once > 1:
        # The first statement counts as slow at once: a second one starts beside it.
        await statements.started(2)
    else:
        for _ in range(10):  # what a second statement would need to start, and more
            await asyncio.sleep(0)
    assert statements.most_at_once == at_once
    statements.gate.set()
    await asyncio.gather(first, *later)
    assert statements.batches == [1, 5]


async def test_outcomes_waiting_behind_a_statement_that_turns_slow_get_one_beside_it() -> None:
    statements = GatedStatements()
    recorder = handlers._GroupRecorder(statements.record, 4, overlap_after_s=0.01)
    first = recorder.record(sent(1))
    await statements.started(1)
    # Within the first statement's quick time: they wait for it, until it turns slow.
    later = [recorder.record(sent(i)) for i in range(2, 7)]
    await asyncio.wait_for(statements.started(2), 5)
    assert statements.most_at_once == 2
    statements.gate.set()
    await asyncio.gather(first, *later)
    assert statements.batches == [1, 5]
