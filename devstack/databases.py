"""Fresh databases for tests and benchmarks, migrated like production."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

from mm_shared.db import upgrade

PG_DSN = os.environ.get("MM_PG_DSN", "postgresql://postgres:postgres@127.0.0.1:5432")


async def ensure_database(name: str) -> str:
    """Create ``name`` unless it exists (the local stack's database); returns its URL."""
    conn = await asyncpg.connect(f"{PG_DSN}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(name)


def database_url(name: str) -> str:
    return PG_DSN.replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


def migrations_of(*services: str) -> list[Path]:
    from geo_router.cli import MIGRATIONS as GEO_ROUTER
    from intake.cli import MIGRATIONS as INTAKE
    from notifier.cli import MIGRATIONS as NOTIFIER

    known = {"intake": INTAKE, "geo-router": GEO_ROUTER, "notifier": NOTIFIER}
    return [known[s] for s in services]


async def fresh_database(
    name: str, services: tuple[str, ...] = ("intake", "geo-router", "notifier")
) -> str:
    """Drop and create ``name``, run the services' migrations; returns its SQLAlchemy URL."""
    conn = await asyncpg.connect(f"{PG_DSN}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = database_url(name)
    for migrations in migrations_of(*services):
        await asyncio.to_thread(upgrade, migrations, url)
    return url
