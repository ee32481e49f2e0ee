"""Several notifier instances share one queue: they never send the same notification, and the
claims of one that died go back to the queue within seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from conftest import Stack
from devstack.testing import eventually
from mm_shared.events import OfficeRef, ReporterContactSubmitted, ReportStatus, ReportStatusChanged
from notifier.adapters.db import SqlUnitOfWorkFactory, instances, notifications
from notifier.adapters.senders import SmtpSender
from notifier.handlers import Dispatcher, record_contacts, record_status_changes
from notifier.settings import NotifierSettings


def _settings(stack: Stack, **overrides: Any) -> NotifierSettings:
    return NotifierSettings(database_url=stack.database_url, smtp_port=stack.smtp.port, **overrides)


@contextlib.asynccontextmanager
async def _engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(stack.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _dispatcher(stack: Stack, engine: AsyncEngine, **overrides: Any) -> Dispatcher:
    settings = _settings(stack, **overrides)
    # One connection: batches of 25, so that the instances take turns at the queue.
    senders = [SmtpSender(settings)]
    dispatcher = Dispatcher(
        SqlUnitOfWorkFactory(engine),
        list(senders),
        None,
        settings,
        statements=SqlUnitOfWorkFactory(engine, autocommit=True),
    )
    dispatcher.closers.extend(s.close for s in senders)
    return dispatcher


async def _queue_mails(engine: AsyncEngine, addresses: list[str], claimed_by: str | None) -> UUID:
    """One status change of a new report, told to one contact per address: claimed by
    ``claimed_by`` already when given (in the same transaction, so nobody else gets there
    first). Returns the change's event id."""
    report_id = uuid4()
    change = ReportStatusChanged(
        report_id=report_id,
        service_code="001",
        previous_status=ReportStatus.RECEIVED,
        status=ReportStatus.ASSIGNED,
        office=OfficeRef(code="VTA-OST", name="Verkehrs- und Tiefbauamt"),
        changed_by="test",
    )
    async with SqlUnitOfWorkFactory(engine)() as uow:
        await record_contacts(
            uow,
            [
                ReporterContactSubmitted(
                    report_id=report_id, email=a, occurred_at=change.occurred_at
                )
                for a in addresses
            ],
        )
        await record_status_changes(uow, [change], with_webhook=False)
        if claimed_by is not None:
            await uow.connection.execute(
                notifications.update()
                .where(notifications.c.event_id == change.event_id)
                .values(state="sending", claimed_by=claimed_by, claimed_at=sa.func.now())
            )
    return change.event_id


async def test_live_instances_never_send_the_same_notification(stack: Stack) -> None:
    addresses = [f"shared-{i}@example.org" for i in range(30)]
    async with _engine(stack) as first_engine, _engine(stack) as second_engine:
        # Two more instances beside the stack's own notifier, all on the same queue.
        dispatchers = [_dispatcher(stack, first_engine), _dispatcher(stack, second_engine)]
        for d in dispatchers:
            await d.heartbeat()
        tasks = [asyncio.create_task(d.run(poll_interval_s=0.05)) for d in dispatchers]
        try:
            event_id = await _queue_mails(first_engine, addresses, claimed_by=None)
            for d in dispatchers:
                d.notify()

            async def all_sent() -> bool:
                return all(stack.smtp.to(a) for a in addresses)

            await eventually(all_sent, timeout_s=120)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for d in dispatchers:
                for close in d.closers:
                    await close()
    ids = Counter(m["Message-ID"] for m in stack.smtp.messages if str(event_id) in m["Message-ID"])
    assert len(ids) == len(addresses)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]


async def test_claims_of_a_dead_instance_are_released_and_a_live_ones_are_not(
    stack: Stack,
) -> None:
    async with _engine(stack) as engine:
        async with engine.begin() as conn:
            await conn.execute(
                instances.insert().values(
                    id="dead-instance", heartbeat_at=sa.func.now() - timedelta(minutes=1)
                )
            )
            await conn.execute(instances.insert().values(id="live-instance"))
        await _queue_mails(engine, ["orphan@example.org"], claimed_by="dead-instance")
        held = await _queue_mails(engine, ["held@example.org"], claimed_by="live-instance")

        # The stack's notifier takes back the dead instance's claim at its next heartbeat.
        await eventually(lambda: _mails_to(stack, "orphan@example.org"), timeout_s=20)

        checker = _dispatcher(stack, engine)
        await checker.release_claims_of_dead_instances()
        async with engine.connect() as conn:
            state = await conn.scalar(
                sa.select(notifications.c.state).where(notifications.c.event_id == held)
            )
        assert state == "sending"
        assert not stack.smtp.to("held@example.org")

        async with engine.begin() as conn:  # the live one falls silent
            await conn.execute(
                instances.update()
                .where(instances.c.id == "live-instance")
                .values(heartbeat_at=sa.func.now() - timedelta(minutes=1))
            )
        assert await checker.release_claims_of_dead_instances() == 1
        await eventually(lambda: _mails_to(stack, "held@example.org"), timeout_s=20)
        assert len(stack.smtp.to("orphan@example.org")) == 1


async def test_an_instance_without_a_lease_sends_nothing_and_comes_back_as_a_new_one(
    stack: Stack,
) -> None:
    async with _engine(stack) as engine:
        dispatcher = _dispatcher(stack, engine, instance_dead_after_s=0.2)
        assert await dispatcher.deliver_due() == 0  # no heartbeat yet: no lease
        await dispatcher.heartbeat()
        first = dispatcher.instance_id

        async def lapsed() -> bool:
            return not dispatcher._leased()

        await eventually(lapsed)
        assert await dispatcher.deliver_due() == 0
        await eventually(lambda: _silent_for(engine, first, 0.2))
        await dispatcher.heartbeat()
        assert dispatcher.instance_id != first
        await dispatcher.leave()


async def _silent_for(engine: AsyncEngine, instance_id: str, seconds: float) -> bool:
    async with engine.connect() as conn:
        return bool(
            await conn.scalar(
                sa.select(
                    sa.func.coalesce(
                        sa.select(
                            instances.c.heartbeat_at < sa.func.now() - timedelta(seconds=seconds)
                        )
                        .where(instances.c.id == instance_id)
                        .scalar_subquery(),
                        True,
                    )
                )
            )
        )


async def _mails_to(stack: Stack, address: str) -> bool:
    return bool(stack.smtp.to(address))
