"""The stack's footprint (issue 17, section 5), in one run on this machine:

1. submit → assigned latency at a fixed rate (200 reports/s, open loop) through the whole stack
   (intake, geo-router, notifier, each report with an e-mail address, so every one is mailed);
2. each service's resident memory (VmRSS) at steady state after that load;
3. the idle CPU of the stack (services and broker) over 60 s without traffic, as % of one core;
4. the latency of the first report after that quiet period;
5. where the time of the loaded reports went, hop by hop (``hops``): acceptance → the
   ReportSubmitted record built by intake's relay → geo-router's decision (its statement's
   start) → the ReportRouted record built by geo-router's relay → the ``assigned`` transition
   in intake. Record times are the relays' own clocks (CreateTime), the same machine's;
6. during the load, each process's time running and waiting runnable for a CPU (schedstat),
   the load generator's own share, and how busy the whole machine was: on a shared machine,
   the wait is what other processes add to every hop.

Each stack runs once per *profile*: ``fixed`` reproduces the consumers' and relays' former
constant polling through their settings, ``adaptive`` runs the defaults, so both are measured
under the same conditions. A second jurisdiction set (``--germany``) measures what loading
Germany's 10,997 municipalities costs each service's memory.

    uv run python bench/footprint.py [--rate 200] [--seconds 20] [--idle-seconds 60]
    uv run python bench/footprint.py --germany   # → footprint-germany.json
    uv run python bench/footprint.py --output latency --idle-seconds 5   # → latency.json

Reads /proc: VmRSS, and user+system CPU time of each process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.common import LOGS, broker, database, free_port, open_loop_post, percentile, report
from bench.resources import cpu_s, database_backends, machine_cpu_s, rss_mib, sched_s
from devstack.processes import ServiceProcess, python_module, service_env, spawn, wait_for_port

SERVICES = ("intake", "geo-router", "notifier")

#: Settings that bring back the constant polling of before (every consumer fetching every
#: 10 ms, relays and sweepers polling every 0.5 s) for a comparison in the same run.
FIXED_POLLING = {
    f"{prefix}_{name}": value
    for prefix in ("INTAKE", "GEO_ROUTER", "NOTIFIER")
    for name, value in {
        "KAFKA_IDLE_FETCH_MAX_WAIT_MS": "10",
        "IDLE_POLL_INTERVAL_S": "0.5",
        "KAFKA_RARE_EVENTS_FETCH_MAX_WAIT_MS": "500",
    }.items()
}
PROFILES: dict[str, dict[str, str]] = {"fixed": FIXED_POLLING, "adaptive": {}}

FORM = "application/x-www-form-urlencoded"
#: As in bench/routing.py's latency part: reports without an e-mail address.
BODY = "api_key=local-dev&service_code=001&lat=51.3397&long=12.3731&description=Schlagloch"
#: Reports to be mailed: the notifier's memory after load includes sending mails.
MAILED_BODY = BODY + "&email=bench%40example.org"
MAIL_RATE, MAIL_SECONDS = 50, 10


async def assigned_latencies(engine: AsyncEngine, since: Any) -> list[float | None]:
    """Acceptance (requested_at) → the ``assigned`` transition of each report since ``since``,
    from intake's own records (None: not assigned)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT extract(epoch FROM h.changed_at - r.requested_at) * 1000 "
                    "FROM intake.reports r LEFT JOIN intake.status_history h "
                    "ON h.report_id = r.id AND h.status = 'assigned' "
                    "WHERE r.requested_at >= :since"
                ),
                {"since": since},
            )
        ).all()
    return [None if ms is None else float(ms) for (ms,) in rows]


async def record_times(kafka: str, topic: str) -> dict[str, float]:
    """Report id → when the relay built its record on ``topic`` (epoch seconds)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        times: dict[str, float] = {}

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for r in records:
                    times.setdefault((r.key or b"").decode(), r.timestamp / 1000)
        return times
    finally:
        await consumer.stop()


async def hop_latencies(kafka: str, engine: AsyncEngine, since: Any, until: Any) -> dict[str, Any]:
    """p50/p99 of each hop of the reports accepted from ``since`` to ``until`` (ms)."""
    submitted = await record_times(kafka, "reports.submitted.v1")
    routed = await record_times(kafka, "reports.routed.v1")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT r.id::text, extract(epoch FROM r.requested_at),"
                    " extract(epoch FROM d.decided_at), extract(epoch FROM h.changed_at)"
                    " FROM intake.reports r"
                    " JOIN geo_router.routing_decisions d ON d.report_id = r.id"
                    " JOIN intake.status_history h ON h.report_id = r.id"
                    " AND h.status = 'assigned'"
                    " WHERE r.requested_at >= :since AND r.requested_at < :until"
                ),
                {"since": since, "until": until},
            )
        ).all()
    hops: dict[str, list[float]] = {
        "accepted_to_submitted_record": [],
        "submitted_record_to_decided": [],
        "decided_to_routed_record": [],
        "routed_record_to_assigned": [],
        "accepted_to_assigned": [],
    }
    for report_id, accepted, decided, assigned in rows:
        if report_id not in submitted or report_id not in routed:
            continue
        moments = [float(accepted), submitted[report_id], float(decided), routed[report_id]]
        for name, start, end in zip(hops, moments, [*moments[1:], float(assigned)], strict=False):
            hops[name].append((end - start) * 1000)
        hops["accepted_to_assigned"].append((float(assigned) - float(accepted)) * 1000)
    return {
        "reports": len(hops["accepted_to_assigned"]),
        **{
            name: {"p50_ms": round(percentile(v, 50), 1), "p99_ms": round(percentile(v, 99), 1)}
            for name, v in hops.items()
        },
    }


async def submit_and_wait_assigned(
    client: httpx.AsyncClient, url: str, engine: AsyncEngine
) -> float:
    """One report; its submit → assigned latency in ms, from intake's records."""
    async with engine.connect() as conn:
        since = await conn.scalar(text("SELECT now()"))
    answer = await client.post(
        url, content=BODY, headers={"content-type": FORM, "X-Acknowledge-Duplicate": "true"}
    )
    assert answer.status_code == 201, answer.text[:300]
    for _ in range(300):
        latencies = await assigned_latencies(engine, since)
        if latencies and latencies[0] is not None:
            return round(latencies[0], 1)
        await asyncio.sleep(0.1)
    raise TimeoutError("the report was not assigned within 30 s")


async def measure(
    services: dict[str, ServiceProcess],
    broker_pid: int,
    database_url: str,
    rate: float,
    seconds: float,
    idle_s: float,
    settle_s: float,
    kafka: str,
) -> dict[str, Any]:
    url = f"{services['intake'].url}/open311/v2/requests.json"
    engine = create_async_engine(database_url)
    pids = {name: s.process.pid for name, s in services.items() if s.process}
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            warm_up_ms = await submit_and_wait_assigned(client, url, engine)
            async with engine.connect() as conn:
                since = await conn.scalar(text("SELECT now()"))
            watched = {name: [pid] for name, pid in pids.items()}
            watched["broker"] = [broker_pid]
            watched["postgres (this database)"] = database_backends(database_url)
            watched["load generator (this process)"] = [os.getpid()]
            sched_before = {name: sched_s(ps) for name, ps in watched.items()}
            machine_before = machine_cpu_s()
            load_started = time.perf_counter()
            http = await open_loop_post(
                url, rate, seconds, FORM, BODY, "X-Acknowledge-Duplicate: true"
            )
            load_elapsed = time.perf_counter() - load_started
            machine_busy, machine_total = (
                after - before
                for after, before in zip(machine_cpu_s(), machine_before, strict=True)
            )
            cpu_under_load: dict[str, Any] = {}
            for name, ps in watched.items():
                ran, waited, slices = (
                    after - before
                    for after, before in zip(sched_s(ps), sched_before[name], strict=True)
                )
                cpu_under_load[name] = {
                    "running": round(ran / load_elapsed * 100, 1),
                    "waiting_for_a_cpu": round(waited / load_elapsed * 100, 1),
                    "mean_wait_per_time_on_a_cpu_ms": round(waited / max(slices, 1) * 1000, 2),
                }
            cpu_under_load["machine_busy_percent_of_all_cores"] = round(
                machine_busy / machine_total * 100, 1
            )
            load_average = os.getloadavg()
            async with engine.connect() as conn:
                until = await conn.scalar(text("SELECT now()"))
            await asyncio.sleep(5)  # the last reports through
            latencies = await assigned_latencies(engine, since)
            mail_http = await open_loop_post(
                url, MAIL_RATE, MAIL_SECONDS, FORM, MAILED_BODY, "X-Acknowledge-Duplicate: true"
            )
            # Until the last report is assigned and mailed, then a little longer.
            await asyncio.sleep(settle_s)
            done = [ms for ms in latencies if ms is not None]
            rss = {name: round(rss_mib(pid), 1) for name, pid in pids.items()}
            cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
            cpu_before["broker"] = cpu_s(broker_pid)
            started = time.perf_counter()
            await asyncio.sleep(idle_s)
            elapsed = time.perf_counter() - started
            idle_cpu = {
                name: round(
                    (cpu_s(broker_pid if name == "broker" else pids[name]) - before)
                    / elapsed
                    * 100,
                    2,
                )
                for name, before in cpu_before.items()
            }
            first_after_quiet_ms = await submit_and_wait_assigned(client, url, engine)
            rss_after_idle = {name: round(rss_mib(pid), 1) for name, pid in pids.items()}
            # Last: reading the topics back costs the broker, not the services measured.
            hops = await hop_latencies(kafka, engine, since, until)
    finally:
        await engine.dispose()
    return {
        "submit_to_assigned": {
            "rate_per_s": rate,
            "seconds": seconds,
            "load_generator": "open loop, evenly spaced",
            "http": http,
            "cpu_percent_of_a_core_under_load": cpu_under_load,  # of the load's wall time
            "load_average_after": [round(x, 2) for x in load_average],
            "reports": len(latencies),
            "assigned": len(done),
            "p50_ms": round(percentile(done, 50), 1),
            "p99_ms": round(percentile(done, 99), 1),
            "max_ms": round(max(done), 1) if done else None,
            "warm_up_report_ms": warm_up_ms,
            "first_report_after_idle_ms": first_after_quiet_ms,
        },
        "mailed_load": {"rate_per_s": MAIL_RATE, "seconds": MAIL_SECONDS, "http": mail_http},
        "rss_mib_after_load": rss,
        "rss_mib_after_idle": rss_after_idle,
        "idle_cpu_percent_of_a_core": {
            "seconds": round(elapsed, 1),
            **idle_cpu,
            "total": round(sum(idle_cpu.values()), 2),
        },
        "submit_to_assigned_hops": hops,
    }


def run_stack(
    jurisdictions: tuple[str, ...],
    overrides: dict[str, str],
    rate: float,
    seconds: float,
    idle_s: float,
    settle_s: float,
) -> dict[str, Any]:
    with broker() as kafka, tempfile.TemporaryDirectory() as home:
        broker_port = int(kafka.rsplit(":", 1)[1])
        broker_pid = next(
            int(pid)
            for pid in os.listdir("/proc")
            if pid.isdigit() and _listens(int(pid), broker_port)
        )
        database_url = database("mangelmelder_footprint", jurisdictions=jurisdictions)
        smtp_port = free_port()
        smtp = spawn(
            f"smtp-{smtp_port}",
            python_module("devstack.mailserver", f"127.0.0.1:{smtp_port}", f"{home}/mail"),
            log_dir=LOGS,
        )
        wait_for_port(smtp_port, what="smtp")
        ports = {name: free_port() for name in SERVICES}
        env = service_env(ports, database_url, kafka, smtp_port)
        env |= {
            "INTAKE_PHOTO_DIR": f"{home}/photos",
            "INTAKE_RATE_LIMIT_PER_ADDRESS": "0",
            "INTAKE_RATE_LIMIT_PER_EMAIL": "0",
            **{f"{n.upper().replace('-', '_')}_LOG_LEVEL": "WARNING" for n in SERVICES},
            **overrides,
        }
        services = {n: ServiceProcess(n, p, env, LOGS) for n, p in ports.items()}
        try:
            for s in services.values():
                s.start()
            for s in services.values():
                s.wait_healthy()
            return asyncio.run(
                measure(services, broker_pid, database_url, rate, seconds, idle_s, settle_s, kafka)
            )
        finally:
            for s in services.values():
                s.stop()
            smtp.terminate()
            smtp.wait(10)


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` is the broker started on ``port`` (by its command line)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg == f"tcp://127.0.0.1:{port}".encode() for arg in cmdline) and any(
        arg.endswith(b"tansu") for arg in cmdline[:1]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--settle-seconds", type=float, default=10)
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--output", help="results file name (default: footprint[-germany])")
    parser.add_argument(
        "--germany", action="store_true", help="also a stack with Leipzig and Germany loaded"
    )
    args = parser.parse_args()
    figures: dict[str, Any] = {"profiles": {}}
    for profile in args.profiles:
        print(f"profile {profile}: Leipzig", flush=True)
        figures["profiles"][profile] = {
            "settings": PROFILES[profile],
            "leipzig": run_stack(
                ("leipzig",),
                PROFILES[profile],
                args.rate,
                args.seconds,
                args.idle_seconds,
                args.settle_seconds,
            ),
        }
    if args.germany:
        profile = args.profiles[-1]
        print(f"profile {profile}: Leipzig and Germany", flush=True)
        with_germany = run_stack(
            ("leipzig", "germany"),
            PROFILES[profile],
            args.rate,
            args.seconds,
            args.idle_seconds,
            args.settle_seconds,
        )
        figures["profiles"][profile]["leipzig_and_germany"] = with_germany
        leipzig = figures["profiles"][profile]["leipzig"]["rss_mib_after_load"]
        figures["germany_costs_mib"] = {
            name: round(with_germany["rss_mib_after_load"][name] - leipzig[name], 1)
            for name in SERVICES
        }
    figures["targets"] = {
        "rss_mib_per_service": 150,
        "idle_cpu_percent_of_a_core_total": 10,
        "submit_to_assigned_ms": {"p50": 30, "p99": 100},
        "first_report_after_idle_ms": 1000,
    }
    figures["load_average_at_the_end"] = [round(x, 2) for x in os.getloadavg()]
    report(args.output or ("footprint-germany" if args.germany else "footprint"), figures)


if __name__ == "__main__":
    main()
