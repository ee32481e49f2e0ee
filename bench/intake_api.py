"""Intake figures (issue 3), in one run on this machine, load generators on the same machine:

1. accepted reports/s for ``POST /api/v1/reports`` (JSON, no photo) at full load (wrk), and
   p50/p99 latency at a fixed 500/s (hey); the same for a bare FastAPI + asyncpg endpoint doing
   one INSERT;
2. photos/s for 3 MB 12-megapixel JPEGs with EXIF (strip + display size + thumbnail) against a
   naive decode-and-re-encode, on one thread and on two (the service runs photo work in a
   thread pool).

    apt-get install -y wrk hey    # the load generators
    uv run python bench/intake_api.py [--seconds 10] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import (
    INTAKE_BENCH_SETTINGS,
    LOGS,
    PG_DSN,
    broker,
    database,
    free_port,
    hey_post,
    open_loop_post,
    report,
    run_tool,
    service,
    service_env,
)
from devstack.pictures import camera_jpeg
from devstack.processes import spawn, wait_for_port
from intake.adapters.photos import make_variants, process_photo

BODY = {"service_code": "001", "lat": 51.3397, "long": 12.3731, "description": "Benchmark"}
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Acknowledge-Duplicate"] = "true"
"""


async def load(
    url: str, seconds: float, rate: float, outbox_drained: Callable[[], Awaitable[float]] | None
) -> dict[str, float]:
    script = LOGS / "post.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(WRK_SCRIPT.format(body=json.dumps(BODY)))
    # Warm-up (connection pools, statement caches), not measured.
    await run_tool("wrk", "-t2", "-c16", "-d2s", "-s", str(script), url)
    wrk = await run_tool("wrk", "-t2", "-c32", f"-d{int(seconds)}s", "-s", str(script), url)
    if "Requests/sec" not in wrk:
        raise SystemExit(f"wrk failed:\n{wrk}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
    # The fixed rate is measured in a steady state: not while the relay still publishes (and
    # deletes) what the full-load run left in the outbox.
    drained_after_s = await outbox_drained() if outbox_drained else 0.0
    steady = await open_loop_post(
        url, rate, seconds, "application/json", json.dumps(BODY), "X-Acknowledge-Duplicate: true"
    )
    # For comparison: hey at the same average rate, whose workers fire in lockstep (bursts).
    hey = await hey_post(
        url, rate, seconds, "application/json", json.dumps(BODY), "X-Acknowledge-Duplicate: true"
    )
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", hey).group(1)) * 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", hey).group(1)) * 1000  # type: ignore[union-attr]
    return {
        "max_reports_per_s": round(rps),
        "non_2xx_at_max": int(errors.group(1)) if errors else 0,
        "outbox_drained_after_max_load_s": round(drained_after_s, 1),
        "fixed_rate_achieved_per_s": steady["achieved_per_s"],
        "fixed_rate_p50_ms": steady["p50_ms"],
        "fixed_rate_p99_ms": steady["p99_ms"],
        "fixed_rate_status_codes": steady["status_codes"],
        "hey_lockstep_bursts_p50_ms": round(p50, 1),
        "hey_lockstep_bursts_p99_ms": round(p99, 1),
    }


async def api_figures(
    database_url: str, bootstrap: str, seconds: float, rate: float
) -> dict[str, object]:
    figures: dict[str, object] = {}
    port = free_port()
    env = service_env("INTAKE", database_url, bootstrap, port, **INTAKE_BENCH_SETTINGS)
    engine = create_async_engine(database_url)

    async def outbox_drained() -> float:
        started = time.monotonic()
        async with engine.connect() as conn:
            while await conn.scalar(text("SELECT EXISTS (SELECT FROM intake.outbox)")):
                await asyncio.sleep(0.1)
        return time.monotonic() - started

    async with service("intake", "intake.cli", port, env):
        figures["intake"] = intake = await load(
            f"http://127.0.0.1:{port}/api/v1/reports", seconds, rate, outbox_drained
        )
    await engine.dispose()
    port = free_port()
    dsn = f"{PG_DSN}/mangelmelder_bench"
    bare = spawn(
        f"bare-{port}",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(Path(__file__).parent),
            "bare_insert_app:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={"BARE_DSN": dsn},
        log_dir=LOGS,
    )
    try:
        wait_for_port(port, timeout_s=30, what="bare endpoint")
        figures["bare_fastapi_asyncpg"] = baseline = await load(
            f"http://127.0.0.1:{port}/api/v1/reports", seconds, rate, None
        )
    finally:
        bare.terminate()
        bare.wait(10)
    figures["intake_share_of_bare"] = round(
        intake["max_reports_per_s"] / baseline["max_reports_per_s"], 3
    )
    return figures


def naive(data: bytes) -> None:
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    image.save(io.BytesIO(), "JPEG", quality=90)
    for size in (1000, 320):
        copy = image.copy()
        copy.thumbnail((size, size))
        copy.save(io.BytesIO(), "JPEG", quality=85)


def strip_and_scale(data: bytes) -> None:
    """A photo's whole processing: checked and stripped (the request path), display size and
    thumbnail (the background worker's). bench/photos.py measures the two paths apart."""
    make_variants(process_photo(data).original)


def photo_figures(count: int = 40) -> dict[str, object]:
    data = camera_jpeg()

    def rate(work, threads: int) -> float:  # type: ignore[no-untyped-def]
        work(data)  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, [data] * count))
        return count / (time.perf_counter() - started)

    ours_1, naive_1 = rate(strip_and_scale, 1), rate(naive, 1)
    ours_2, naive_2 = rate(strip_and_scale, 2), rate(naive, 2)
    return {
        "input": {"bytes": len(data), "pixels": "4000x3000", "exif": "GPS, make, orientation 6"},
        "photos_per_s_1_thread": round(ours_1, 1),
        "naive_per_s_1_thread": round(naive_1, 1),
        "photos_per_s_2_threads": round(ours_2, 1),
        "naive_per_s_2_threads": round(naive_2, 1),
        "speedup_vs_naive": round(ours_2 / naive_2, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=500)
    args = parser.parse_args()
    database_url = database("mangelmelder_bench", jurisdictions=())
    with broker() as bootstrap:
        api = asyncio.run(api_figures(database_url, bootstrap, args.seconds, args.rate))
    figures = {
        "api": api,
        "photos": photo_figures(),
        "targets": {
            "max_reports_per_s": 1000,
            "p99_ms_at_500_per_s": 50,
            "share_of_bare": 0.5,
            "photos_per_s": 40,
            "speedup_vs_naive": 3,
        },
    }
    report("intake", figures)


if __name__ == "__main__":
    main()
