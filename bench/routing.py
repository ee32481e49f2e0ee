"""Geo-router figures (issue 4), in one run on this machine:

1. point-in-area lookups/s, Leipzig (73 areas, 2 levels) and Germany (10,997 municipalities),
   with PostGIS batched through unnest as a reference;
2. Kafka → Kafka: geo-router consuming N ReportSubmitted, routing, storing, publishing N
   ReportRouted and committing, against a bare aiokafka consume-and-republish of the same
   messages;
3. submit → assigned latency through intake and geo-router at a fixed 200 reports/s.

    uv run python bench/routing.py [--reports 50000] [--rounds 3] [--rate 200] [--seconds 20]
    uv run python bench/routing.py --parts kafka --baseline-src /tmp/before/services/geo-router/src

``--baseline-src``: each Kafka round also runs geo-router from that source tree (another
checkout's ``services/geo-router/src``, put first on PYTHONPATH), so that a change is compared
with the code before it in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import (
    INTAKE_BENCH_SETTINGS,
    broker,
    database,
    free_port,
    open_loop_post,
    percentile,
    report,
    service,
    service_env,
)
from geo_router.adapters.index import load_index
from mm_shared.events import ReportSubmitted, Topic, utcnow

BBOX = {"leipzig": (51.24, 51.44, 12.24, 12.54), "germany": (47.3, 55.0, 5.9, 15.0)}


async def lookups(database_url: str) -> dict[str, object]:
    engine = create_async_engine(database_url)
    figures: dict[str, object] = {}
    rng = np.random.default_rng(42)
    try:
        for code, (lat0, lat1, long0, long1) in BBOX.items():
            index = await load_index(engine, code)
            assert index is not None
            n = 200_000
            lats, longs = rng.uniform(lat0, lat1, n), rng.uniform(long0, long1, n)
            started = time.perf_counter()
            found = index.areas_at_many(lats, longs)
            vectorised = n / (time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(0, n, 1000):  # the consumer's batch size
                index.areas_at_many(lats[i : i + 1000], longs[i : i + 1000])
            batched = n / (time.perf_counter() - started)
            figures[code] = {
                "areas": len(index.areas),
                "points": n,
                "inside_share": round(sum(1 for f in found if f) / n, 3),
                "lookups_per_s_vectorised": round(vectorised),
                "lookups_per_s_batches_of_1000": round(batched),
            }
        lat0, lat1, long0, long1 = BBOX["leipzig"]
        m = 20_000
        lats, longs = rng.uniform(lat0, lat1, m), rng.uniform(long0, long1, m)
        async with engine.connect() as conn:
            started = time.perf_counter()
            await conn.execute(
                text(
                    "SELECT p.i, a.code FROM unnest(CAST(:lats AS float8[]), "
                    "CAST(:longs AS float8[])) WITH ORDINALITY AS p(lat, long, i) "
                    "JOIN geo_router.areas a ON a.jurisdiction = 'leipzig' AND a.valid_to IS NULL "
                    "AND ST_Covers(a.geom, ST_SetSRID(ST_MakePoint(p.long, p.lat), 4326))"
                ),
                {"lats": lats.tolist(), "longs": longs.tolist()},
            )
            figures["leipzig"]["postgis_unnest_reference_per_s"] = round(  # type: ignore[index]
                m / (time.perf_counter() - started)
            )
    finally:
        await engine.dispose()
    return figures


def reports(n: int) -> list[ReportSubmitted]:
    rng = np.random.default_rng(7)
    lat0, lat1, long0, long1 = 51.30, 51.38, 12.32, 12.42  # inner Leipzig
    return [
        ReportSubmitted(
            report_id=uuid4(),
            jurisdiction="leipzig",
            service_code=f"{rng.integers(1, 14):03d}",
            lat=float(rng.uniform(lat0, lat1)),
            long=float(rng.uniform(long0, long1)),
            submitted_at=utcnow(),
        )
        for _ in range(n)
    ]


async def produce(bootstrap: str, topic: str, events: list[ReportSubmitted]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        acks = [await producer.send(topic, e.model_dump_json().encode(), key=e.key) for e in events]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


class Arrivals:
    """Counts the messages arriving on ``topic`` from the moment it is opened (its partitions'
    ends then), so that successive rounds on one topic count only their own."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=10)
        self._topic = topic

    async def __aenter__(self) -> Arrivals:
        await self._consumer.start()
        ids = self._consumer.partitions_for_topic(self._topic) or {0}
        partitions = [TopicPartition(self._topic, p) for p in ids]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the positions now, before anything new arrives
            await self._consumer.position(tp)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def count(self, keys: set[bytes], timeout_s: float) -> tuple[int, float]:
        """Messages seen with one of ``keys`` (this round's reports: the broker's end offsets
        can lag the last round's final messages), and the rate while the 10th to the 95th
        percent of them arrived, so that start-up and the last stragglers do not count."""
        expected = len(keys)
        seen = 0
        progress: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout_s
        while seen < expected and time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            got = sum(1 for records in batches.values() for r in records if r.key in keys)
            if got:
                seen += got
                progress.append((time.monotonic(), seen))
        window = [(t, n) for t, n in progress if 0.10 * expected <= n <= 0.95 * expected]
        if len(window) < 2 or window[-1][0] <= window[0][0]:
            return seen, float("nan")
        (t0, n0), (t1, n1) = window[0], window[-1]
        return seen, (n1 - n0) / (t1 - t0)


async def throughput(
    bootstrap: str, database_url: str, n: int, rounds: int, baseline_src: str | None = None
) -> dict[str, object]:
    """Alternating rounds of geo-router (and, with ``baseline_src``, geo-router from that
    source) and the bare pass-through over the same ``n`` new reports each: the machine's
    speed drifts within minutes, and the broker slows as its topics grow, so a single pair of
    runs says little."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    with contextlib.suppress(Exception):
        await admin.create_topics([NewTopic("bench.passthrough", 4, 1)])
    await admin.close()
    port = free_port()
    env = service_env("GEO_ROUTER", database_url, bootstrap, port)
    geo_rates: list[float] = []
    baseline_rates: list[float] = []
    bare_rates: list[float] = []
    routed = passed = baseline_routed = 0
    for _ in range(rounds):
        events = reports(n)
        keys = {e.key for e in events}
        await produce(bootstrap, Topic.REPORT_SUBMITTED.value, events)
        async with (
            Arrivals(bootstrap, Topic.REPORT_ROUTED.value) as arrivals,
            service("geo-router", "geo_router.cli", port, env),
        ):
            seen, rate = await arrivals.count(keys, 600)
        routed += seen
        geo_rates.append(rate)
        if baseline_src is not None:
            events = reports(n)
            keys = {e.key for e in events}
            await produce(bootstrap, Topic.REPORT_SUBMITTED.value, events)
            path = [baseline_src, *filter(None, [os.environ.get("PYTHONPATH")])]
            baseline_env = env | {"PYTHONPATH": os.pathsep.join(path)}
            async with (
                Arrivals(bootstrap, Topic.REPORT_ROUTED.value) as arrivals,
                service("geo-router", "geo_router.cli", port, baseline_env),
            ):
                seen, rate = await arrivals.count(keys, 600)
            baseline_routed += seen
            baseline_rates.append(rate)
        async with Arrivals(bootstrap, "bench.passthrough") as arrivals:
            bare = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).with_name("bare_passthrough.py")),
                bootstrap,
                Topic.REPORT_SUBMITTED.value,
                "bench.passthrough",
            )
            try:
                seen, rate = await arrivals.count(keys, 600)
            finally:
                bare.terminate()
                await bare.wait()
        passed += seen
        bare_rates.append(rate)
    geo_rate, bare_rate = float(np.median(geo_rates)), float(np.median(bare_rates))
    baseline: dict[str, object] = {}
    if baseline_src is not None:
        baseline_rate = float(np.median(baseline_rates))
        baseline = {
            "baseline_src": baseline_src,
            "baseline_routed": baseline_routed,
            "baseline_reports_per_s_each_round": [round(r) for r in baseline_rates],
            "baseline_reports_per_s": round(baseline_rate),
            "baseline_share_of_bare": round(baseline_rate / bare_rate, 3),
            "geo_router_share_of_baseline": round(geo_rate / baseline_rate, 3),
        }
    return {
        "reports_per_round": n,
        "rounds": rounds,
        "geo_router_routed": routed,
        "geo_router_reports_per_s_each_round": [round(r) for r in geo_rates],
        "bare_passthrough_messages": passed,
        "bare_passthrough_per_s_each_round": [round(r) for r in bare_rates],
        "geo_router_reports_per_s": round(geo_rate),
        "bare_passthrough_per_s": round(bare_rate),
        "geo_router_share_of_bare": round(geo_rate / bare_rate, 3),
        **baseline,
        "figures": "medians of the rounds",
    }


async def latency(
    bootstrap: str, database_url: str, rate: float, seconds: float
) -> dict[str, object]:
    """Reports at evenly spaced instants (``open_loop_post``); each report's latency is read
    from intake's own records: acceptance (requested_at) → the ``assigned`` transition."""
    intake_port, geo_port = free_port(), free_port()
    intake_env = service_env(
        "INTAKE", database_url, bootstrap, intake_port, **INTAKE_BENCH_SETTINGS
    )
    geo_env = service_env("GEO_ROUTER", database_url, bootstrap, geo_port)
    url = f"http://127.0.0.1:{intake_port}/open311/v2/requests.json"
    body = "api_key=bench&service_code=001&lat=51.3397&long=12.3731&description=Benchmark"
    engine = create_async_engine(database_url)
    async with (
        service("geo-router", "geo_router.cli", geo_port, geo_env),
        service("intake", "intake.cli", intake_port, intake_env),
    ):
        async with httpx.AsyncClient() as client:  # warm-up: consumers join their groups
            warm = await client.post(url, content=body, headers=FORM)
            warm_id = warm.json()[0]["service_request_id"]
            for _ in range(600):
                if await _status(engine, warm_id) == "assigned":
                    break
                await asyncio.sleep(0.1)
        async with engine.connect() as conn:
            measured_from = await conn.scalar(text("SELECT now()"))
        http = await open_loop_post(url, rate, seconds, FORM["content-type"], body)
        await asyncio.sleep(5)  # let the last reports through
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT r.id, extract(epoch FROM h.changed_at - r.requested_at) * 1000 "
                        "FROM intake.reports r LEFT JOIN intake.status_history h "
                        "ON h.report_id = r.id AND h.status = 'assigned' "
                        "WHERE r.requested_at >= :since"
                    ),
                    {"since": measured_from},
                )
            ).all()
    await engine.dispose()
    latencies = [float(ms) for _, ms in rows if ms is not None]
    return {
        "rate_per_s": rate,
        "load_generator": "open loop, evenly spaced",
        "http": http,
        "reports": len(rows),
        "assigned": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
    }


FORM = {"content-type": "application/x-www-form-urlencoded"}


async def _status(engine: Any, report_id: str) -> str | None:
    async with engine.connect() as conn:
        return await conn.scalar(  # type: ignore[no-any-return]
            text("SELECT status FROM intake.reports WHERE id = :id"), {"id": report_id}
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=50_000, help="per Kafka round")
    parser.add_argument("--rounds", type=int, default=3, help="Kafka rounds (geo, then bare)")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--parts", default="lookups,kafka,latency", help="comma list of lookups, kafka, latency"
    )
    parser.add_argument(
        "--baseline-src", help="also route each Kafka round with geo-router from this source"
    )
    parser.add_argument("--out", default="geo_router", help="bench/results/<out>.json")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    database_url = database(jurisdictions=("leipzig", "germany"))
    figures: dict[str, object] = {}
    if "lookups" in parts:
        figures["lookups"] = asyncio.run(lookups(database_url))
    if "kafka" in parts:
        with broker() as bootstrap:
            figures["kafka_to_kafka"] = asyncio.run(
                throughput(bootstrap, database_url, args.reports, args.rounds, args.baseline_src)
            )
    if "latency" in parts:
        with broker() as bootstrap:
            figures["submit_to_assigned"] = asyncio.run(
                latency(bootstrap, database_url, args.rate, args.seconds)
            )
    figures["targets"] = {
        "lookups_per_s": {"leipzig": 200_000, "germany": 100_000},
        "kafka_to_kafka_reports_per_s": 20_000,
        "kafka_to_kafka_share_of_bare": 0.10,
        "submit_to_assigned_ms": {"p50": 30, "p99": 100},
    }
    report(args.out, figures)


if __name__ == "__main__":
    main()
