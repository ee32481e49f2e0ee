"""The staff console's figures (issue 14), on this machine, client on the same machine:

1. the queue page (``/staff/tickets``: filtered, sorted, paged, intake's answer included) with
   100,000 tickets in the database: p50/p99 over a mix of filters, for a member of one office
   (VTA-OST, ~12,500 tickets) and for an admin (all 100,000), requests one after another over
   loopback (so the time is the servers');
2. the CSV export of all 100,000 rows through web (``/staff/tickets.csv``): time to the last
   byte, and web's and intake's resident memory sampled every 20 ms while it streams.

    uv run python bench/web_staff.py [--requests 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import (
    broker,
    database,
    free_port,
    percentile,
    report,
    service,
    service_env,
)
from devstack.processes import ROOT, python_module

TICKETS = 100_000
OFFICES = ["VTA-OST", "VTA-NORD", "VTA-SUED", "VTA-WEST", "SRL", "ASG-INNENSTADT", "OA", "MM"]
BEZIRKE = ["Mitte", "Nordost", "Ost", "Südost", "Süd", "Südwest", "West", "Alt-West", "Nordwest"]
#: Statuses by the remainder of the ticket number modulo 20: a city's mix, half closed.
SEED = text(
    """
    INSERT INTO intake.reports (id, jurisdiction, service_code, lat, long, description, status,
        office_code, office_name, requested_at, updated_at, attributes, token, areas,
        expected_at)
    SELECT gen_random_uuid(), 'leipzig', lpad(((g % 13) + 1)::text, 3, '0'),
        51.30 + random() * 0.08, 12.30 + random() * 0.15,
        (ARRAY['Tiefes Schlagloch', 'Laterne defekt', 'Sperrmüll am Gehweg', 'Graffiti am Haus',
               'Ampel ausgefallen', 'Gehwegplatte lose'])[1 + g % 6] || ' Nr. ' || g,
        CASE WHEN g % 20 < 6 THEN 'assigned' WHEN g % 20 < 9 THEN 'in_progress'
             WHEN g % 20 < 19 THEN 'resolved' ELSE 'rejected' END,
        (CAST(:offices AS text[]))[1 + (g / 7) % 8], 'Amt',
        t.requested_at, t.requested_at + interval '1 day', '{}'::jsonb, md5(g::text),
        jsonb_build_array(
            jsonb_build_object('level', 'stadtbezirk', 'code', (g % 9)::text,
                               'name', (CAST(:bezirke AS text[]))[1 + g % 9]),
            jsonb_build_object('level', 'ortsteil', 'code', lpad((g % 63)::text, 2, '0'),
                               'name', 'Ortsteil ' || (g % 63))),
        t.requested_at + interval '14 days'
    FROM generate_series(1, :n) AS g,
        LATERAL (SELECT now() - (g % 730) * interval '1 day' - random() * interval '1 day'
                 AS requested_at) AS t
    """
)
#: The queue as staff use it: the page's query string, and what web asks intake for it (25 a
#: page, newest first unless sorted otherwise).
#: Per queue: the console page's query string, and the same query for the staff API.
QUEUES: dict[str, tuple[str, dict[str, str | int]]] = {
    "all, newest first": ("", {}),
    "assigned": ("status=assigned", {"status": "assigned"}),
    "assigned, oldest first, page 40": (
        "status=assigned&sort=requested_at&page=40",
        {"status": "assigned", "sort": "requested_at", "page": 40},
    ),
    "search in descriptions": ("q=Schlagloch", {"q": "Schlagloch"}),
    "search by id prefix": ("q=0a1b", {"q": "0a1b"}),
    "Stadtbezirk Mitte": ("area=Mitte", {"area": "Mitte"}),
    "overdue": ("overdue=1", {"overdue": "true"}),
    "category, older than 30 days": (
        "service_code=001&age=30",
        {"service_code": "001", "older_than_days": 30},
    ),
    "by due date": ("sort=expected_at", {"sort": "expected_at"}),
}
PAGE_SIZE = 25


async def seed(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(SEED, {"offices": OFFICES, "bezirke": BEZIRKE, "n": TICKETS})
    async with engine.connect() as conn:
        # What autovacuum does to a table this size within a minute: statistics and the
        # visibility map (index-only scans for the counts).
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE intake.reports"))
    await engine.dispose()


def token(env: dict[str, str], *args: str) -> str:
    import subprocess

    done = subprocess.run(
        python_module("intake.cli", "staff-token", *args),
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()[-1]


async def signed_in(web: str, credential: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=web, timeout=60)
    page = await client.get("/staff/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    answer = await client.post(
        "/staff/sign-in", data={"csrf_token": csrf.group(1), "token": credential, "next": ""}
    )
    assert answer.status_code == 303, answer.text
    return client


async def queue_times(
    client: httpx.AsyncClient, requests: int, *, api: bool = False
) -> dict[str, Any]:
    """The queue page's times (``api``: intake's staff API alone, with the page's query)."""
    by_queue: dict[str, list[float]] = {}
    for name, (query, api_params) in QUEUES.items():
        params: dict[str, str | int]
        if api:
            path = "/api/v1/staff/tickets"
            params = {"sort": "-requested_at", "page": 1, **api_params, "page_size": PAGE_SIZE}
        else:
            path, params = "/staff/tickets", dict(parse_qsl(query))
        await client.get(path, params=params)  # warm
        times = by_queue.setdefault(name, [])
        for _ in range(requests):
            started = time.perf_counter()
            answer = await client.get(path, params=params)
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text[:300]
    every = [t for times in by_queue.values() for t in times]
    return {
        "requests": len(every),
        "p50_ms": round(percentile(every, 50), 1),
        "p99_ms": round(percentile(every, 99), 1),
        "max_ms": round(max(every), 1),
        "p99_ms_by_queue": {n: round(percentile(t, 99), 1) for n, t in by_queue.items()},
    }


def api(port: int, credential: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {credential}"},
        timeout=60,
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def export_figures(client: httpx.AsyncClient, pids: dict[str, int]) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in pids}
    before = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for name, pid in pids.items():
                samples[name].append(rss_mb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    size = lines = 0
    async with client.stream("GET", "/staff/tickets.csv") as answer:
        assert answer.status_code == 200
        async for chunk in answer.aiter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "rows": lines - 1,  # the header (descriptions here have no line breaks)
        "megabytes": round(size / 2**20, 1),
        "seconds": round(seconds, 2),
        "rss_mb_before": before,
        "rss_mb_max_while_streaming": {n: round(max(s), 1) for n, s in samples.items()},
        "rss_mb_after": {name: round(rss_mb(pid), 1) for name, pid in pids.items()},
    }


def main(requests: int) -> None:
    with broker() as kafka:
        url = database("mangelmelder_bench_webstaff")
        figures = asyncio.run(measure(kafka, url, requests))
    report("web_staff", figures)


async def measure(kafka: str, url: str, requests: int) -> dict[str, Any]:
    started = time.perf_counter()
    await seed(url)
    seeded_s = time.perf_counter() - started
    intake_port, web_port = free_port(), free_port()
    intake_env = service_env(
        "INTAKE", url, kafka, intake_port, reporter_token_secret="bench-" + "x" * 32
    )
    web_env = {
        "WEB_HTTP_PORT": str(web_port),
        "WEB_INTAKE_URL": f"http://127.0.0.1:{intake_port}",
        "WEB_SECRET_KEY": "bench",
        "WEB_LOG_LEVEL": "WARNING",
    }
    member_token = token(intake_env, "--office", "VTA-OST", "--name", "bench-vta-ost")
    admin_token = token(intake_env, "--admin", "--name", "bench-admin")
    async with (
        service("intake", "intake.cli", intake_port, intake_env) as intake,
        service("web", "web.cli", web_port, web_env) as web,
    ):
        base = f"http://127.0.0.1:{web_port}"
        member = await signed_in(base, member_token)
        admin = await signed_in(base, admin_token)
        figures = {
            # Other work on this machine skews every figure: its load beside them.
            "load_average_1min_at_start": round(os.getloadavg()[0], 1),
            "tickets": TICKETS,
            "seeding_s": round(seeded_s, 1),
            "queue_page_vta_ost": await queue_times(member, requests),
            "queue_page_admin": await queue_times(admin, requests),
            "staff_api_alone_vta_ost": await queue_times(
                api(intake_port, member_token), requests, api=True
            ),
            "staff_api_alone_admin": await queue_times(
                api(intake_port, admin_token), requests, api=True
            ),
            "csv_export_all_as_admin": await export_figures(
                admin, {"web": web.pid, "intake": intake.pid}
            ),
        }
        await member.aclose()
        await admin.aclose()
    figures["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60, help="per queue and member")
    main(parser.parse_args().requests)
