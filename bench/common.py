"""What every benchmark needs: its own broker and database, services as real processes, figures
printed and written as JSON. Loopback only; every loop is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from devstack.processes import ROOT, free_port, spawn, start_broker, wait_for_port
from mm_shared.db import upgrade
from mm_shared.kafka import ensure_topics, wait_for_broker

PG_DSN = os.environ.get("MM_PG_DSN", "postgresql://postgres:postgres@127.0.0.1:5432")
RESULTS = ROOT / "bench" / "results"
LOGS = ROOT / "var" / "bench-log"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def report(name: str, figures: dict[str, Any]) -> None:
    figures = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    print(f"written to {path.relative_to(ROOT)}")


@contextlib.contextmanager
def broker() -> Iterator[str]:
    port = free_port()
    process = start_broker(port, log_dir=LOGS)
    bootstrap = f"127.0.0.1:{port}"

    async def prepare() -> None:
        await wait_for_broker(bootstrap)
        await ensure_topics(bootstrap)

    asyncio.run(prepare())
    try:
        yield bootstrap
    finally:
        process.terminate()
        process.wait(10)


def database(
    name: str = "mangelmelder_bench", jurisdictions: tuple[str, ...] = ("leipzig",)
) -> str:
    """A fresh database with every schema migrated and the given jurisdictions loaded."""
    from geo_router.cli import MIGRATIONS as GEO
    from geo_router.cli import load_jurisdiction
    from intake.cli import MIGRATIONS as INTAKE
    from notifier.cli import MIGRATIONS as NOTIFIER

    async def recreate() -> None:
        conn = await asyncpg.connect(f"{PG_DSN}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    url = PG_DSN.replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    for migrations in (INTAKE, GEO, NOTIFIER):
        upgrade(migrations, url)
    for code in jurisdictions:
        asyncio.run(load_jurisdiction(url, ROOT / "data" / code / "jurisdiction.yaml"))
    return url


@contextlib.asynccontextmanager
async def service(
    name: str, module: str, port: int, env: dict[str, str]
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Run a service as its own process (as in production) and wait until it is healthy."""
    process = spawn(f"{name}-{port}", ["python", "-m", module, "serve"], env=env, log_dir=LOGS)
    try:
        wait_for_port(port, timeout_s=60, what=name)
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(15)


def service_env(
    prefix: str, database_url: str, kafka: str, port: int, **extra: str
) -> dict[str, str]:
    env = {
        f"{prefix}_DATABASE_URL": database_url,
        f"{prefix}_KAFKA_BOOTSTRAP_SERVERS": kafka,
        f"{prefix}_HTTP_PORT": str(port),
        f"{prefix}_LOG_LEVEL": "WARNING",
    }
    env.update({f"{prefix}_{k.upper()}": v for k, v in extra.items()})
    return env


__all__ = ["ROOT", "Path", "free_port"]
