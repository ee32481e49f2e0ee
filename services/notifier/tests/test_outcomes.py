"""Outcomes go to the database on the driver's own connection (adapters/db.py, _on_driver): a
connection found broken there is never handed out by the pool again, as with SQLAlchemy's own
execution (PostgreSQL restarted, a connection cut)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from mm_shared.events import utcnow
from notifier.adapters.db import SqlUnitOfWorkFactory
from notifier.domain import sent


async def test_a_connection_broken_under_an_outcome_is_replaced_not_reused(
    database_url: str,
) -> None:
    # One connection only: a broken one handed out again would fail every statement after.
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    admin = create_async_engine(database_url)
    statements = SqlUnitOfWorkFactory(engine, autocommit=True)
    nothing = [sent(-1, utcnow())]  # no such notification: the statement changes nothing
    try:
        async with statements() as uow:
            await uow.notifications.record_outcomes(nothing, ["nobody"])
            first = await uow.connection.scalar(sa.text("SELECT pg_backend_pid()"))
        async with admin.connect() as conn:  # the server drops it, as when it restarts
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": first})
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises
            async with statements() as uow:
                await uow.notifications.record_outcomes(nothing, ["nobody"])
        async with statements() as uow:
            await uow.notifications.record_outcomes(nothing, ["nobody"])
            second = await uow.connection.scalar(sa.text("SELECT pg_backend_pid()"))
        assert second != first
    finally:
        await engine.dispose()
        await admin.dispose()


async def test_in_a_transactional_unit_of_work_the_outcomes_are_part_of_its_transaction(
    database_url: str,
) -> None:
    """Not on the driver there: it would run before SQLAlchemy's BEGIN, outside the unit of
    work, and stay if the unit of work rolled back."""
    engine = create_async_engine(database_url)
    clock = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    nothing = [sent(-1, utcnow())]

    async def server_time() -> object:
        async with clock.connect() as conn:
            return await conn.scalar(sa.text("SELECT clock_timestamp()"))

    try:
        async with SqlUnitOfWorkFactory(engine)() as uow:
            before = await server_time()
            await uow.notifications.record_outcomes(nothing, ["nobody"])
            after = await server_time()
            began = await uow.connection.scalar(
                sa.text("SELECT xact_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            )
        assert before < began < after
    finally:
        await engine.dispose()
        await clock.dispose()
