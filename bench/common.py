"""What every benchmark needs: its own broker and database, services as real processes, figures
printed and written as JSON. Loopback only; every loop is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from devstack.databases import PG_DSN, fresh_database
from devstack.processes import ROOT, free_port, spawn, start_broker, wait_for_port
from mm_shared.kafka import ensure_topics, wait_for_broker

RESULTS = ROOT / "bench" / "results"
LOGS = ROOT / "var" / "bench-log"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def python_speed() -> float:
    """Million iterations per second of a fixed pure-Python loop, best of five. The same
    benchmarks ran up to four times slower on one day than on another here: figures from
    different runs only compare beside this."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i % 7
        best = min(best, time.perf_counter() - started)
    return round(1 / best, 2)


def report(name: str, figures: dict[str, Any]) -> None:
    figures = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "python_loop_million_per_s": python_speed(),
        },
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
    """A fresh database with every schema migrated and the given jurisdictions loaded.
    ``MM_BENCH_DATABASE_SUFFIX`` is appended to the name: benchmarks run side by side on one
    PostgreSQL server would otherwise drop each other's database."""
    from geo_router.cli import load_jurisdiction

    url = asyncio.run(fresh_database(name + os.environ.get("MM_BENCH_DATABASE_SUFFIX", "")))
    for code in jurisdictions:
        asyncio.run(load_jurisdiction(url, ROOT / "data" / code / "jurisdiction.yaml"))
    return url


async def run_tool(*cmd: str) -> str:
    """A load generator's output (wrk, hey: Debian packages)."""
    if not shutil.which(cmd[0]):
        raise SystemExit(f"{cmd[0]} is needed: apt-get install -y {cmd[0]}")
    process = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return out.decode()


async def hey_post(
    url: str, rate: float, seconds: float, content_type: str, body: str, *headers: str
) -> str:
    """POSTs at a fixed total rate for ``seconds`` (50 workers), with hey's latency report."""
    workers = 50
    extra = [arg for header in headers for arg in ("-H", header)]
    return await run_tool(
        "hey",
        "-z",
        f"{int(seconds)}s",
        "-c",
        str(workers),
        "-q",
        str(rate / workers),
        "-m",
        "POST",
        "-T",
        content_type,
        *extra,
        "-d",
        body,
        url,
    )


async def open_loop_post(
    url: str, rate: float, seconds: float, content_type: str, body: str, *headers: str
) -> dict[str, Any]:
    """POSTs at evenly spaced instants, whatever the answers do (open loop), on keep-alive
    connections opened as needed. Latency counts from each request's scheduled instant, so a
    slow server cannot hide its queueing by slowing the generator down.

    Why not ``hey -q``: its rate limit is per worker, and its workers fire in lockstep (50
    requests at once, 4 times a second for 200/s): a burst test, not a steady rate. A raw
    asyncio client costs the shared CPU far less per request than an HTTP library would."""
    payload = body.encode()
    return await open_loop(
        url,
        rate,
        seconds,
        "POST",
        payload,
        f"Content-Type: {content_type}",
        *headers,
        f"Content-Length: {len(payload)}",
    )


async def open_loop_get(url: str, rate: float, seconds: float, *headers: str) -> dict[str, Any]:
    """GETs at evenly spaced instants (see :func:`open_loop_post`)."""
    return await open_loop(url, rate, seconds, "GET", b"", *headers)


async def open_loop(
    url: str, rate: float, seconds: float, method: str, payload: bytes, *headers: str
) -> dict[str, Any]:
    """``rate`` requests a second for ``seconds`` at evenly spaced instants (open loop)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    hostname, _, port = host.partition(":")
    request = (
        f"{method} /{rest} HTTP/1.1\r\nHost: {host}\r\n"
        + "".join(f"{h}\r\n" for h in headers)
        + "\r\n"
    ).encode() + payload
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    #: How late each request left after its scheduled instant: the generator's own queueing,
    #: included in ``latencies``, which count from the scheduled instant.
    send_lags: list[float] = []
    codes: dict[str, int] = {}

    async def one(scheduled: float) -> None:
        reader, writer = idle.pop() if idle else await asyncio.open_connection(hostname, int(port))
        writer.write(request)
        send_lags.append((time.perf_counter() - scheduled) * 1000)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # the server closed an idle keep-alive connection
            writer.close()
            reader, writer = await asyncio.open_connection(hostname, int(port))
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        latencies.append((time.perf_counter() - scheduled) * 1000)
        codes[status] = codes.get(status, 0) + 1
        idle.append((reader, writer))

    total = int(rate * seconds)
    cpu_before = os.times()
    started = time.perf_counter()
    tasks = []
    for i in range(total):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - started
    cpu_after = os.times()
    for _, writer in idle:
        writer.close()
    generator_cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "achieved_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "send_lag_p50_ms": round(percentile(send_lags, 50), 1),
        "send_lag_p99_ms": round(percentile(send_lags, 99), 1),
        "generator_cpu_percent_of_a_core": round(generator_cpu_s / elapsed * 100, 1),
        "status_codes": codes,
        "failed": total - len(latencies),
    }


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


#: Intake as the benchmarks run it: one client sends thousands of reports, so no rate limits.
INTAKE_BENCH_SETTINGS = {
    "api_keys": '["bench"]',
    "reporter_token_secret": "bench-reporter-token-secret-not-for-production",
    "rate_limit_per_address": "0",
    "rate_limit_per_email": "0",
}


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


@contextlib.contextmanager
def checked_out(commit: str) -> Iterator[Path]:
    """The commit as a detached worktree with its own ``uv sync --locked`` environment."""
    tree = Path(tempfile.mkdtemp(prefix="mm-baseline-")) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), commit],
        check=True,
    )
    try:
        subprocess.run(["uv", "sync", "--locked", "-q"], cwd=tree, env=clean_env(), check=True)
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
        )
        shutil.rmtree(tree.parent, ignore_errors=True)


def clean_env() -> dict[str, str]:
    """This process's environment without its own virtualenv, so that ``uv run`` in another
    tree takes that tree's."""
    return {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT")}


def in_turns(
    baseline: str, rounds: int, one_round: Callable[[Path], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rounds`` rounds of ``one_round`` in the baseline commit's worktree and in this tree,
    in turns (this machine's speed drifts even within minutes): each side's figures by round."""
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    with checked_out(baseline) as tree:
        for number in range(1, rounds + 1):
            before.append(one_round(tree))
            after.append(one_round(ROOT))
            print(f"round {number}: baseline {before[-1]}\n         this tree {after[-1]}")
    return before, after


def this_commit() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


__all__ = ["PG_DSN", "ROOT", "Path", "free_port"]
