"""Database plumbing: engines and per-service Alembic migrations."""

from __future__ import annotations

import asyncio
import functools
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    # No pre-ping: it costs a round trip per transaction; stale connections are recycled
    # instead, and a failed one surfaces as a retried error.
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_recycle=1800)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


def exits_on_database_errors(main: Callable[[], None]) -> Callable[[], None]:
    """For a service's CLI: a database that is unreachable, missing or refuses the command ends
    it with one line saying so, not with a traceback."""

    @functools.wraps(main)
    def run() -> None:
        try:
            main()
        except (ConnectionError, socket.gaierror, TimeoutError, sa.exc.DBAPIError) as exc:
            cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            sys.exit(f"database error: {cause.__class__.__name__}: {cause}".splitlines()[0])

    return run


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    # Alembic is imported only by the commands that migrate: serving processes and a recovery's
    # re-announce start faster without it.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Apply a service's migrations. Blocking: from async code call it via ``asyncio.to_thread``."""
    from alembic import command

    command.upgrade(alembic_config(migrations_dir, database_url), revision)


def run_migrations_online(context: Any, schema: str) -> None:
    """Body of every service's ``migrations/env.py``; ``context`` is ``alembic.context``.

    Async engine, the service's own schema, its own version table there.
    """
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"

    def run(connection: Connection) -> None:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            version_table_schema=schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(run)
        await engine.dispose()

    asyncio.run(main())
