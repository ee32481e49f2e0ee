"""What the notifier's consumer costs per event, without broker or mail: the CPU of this process
and of its PostgreSQL backend while ``handlers.record_batch`` stores batches as the broker
delivers them after a backlog (contacts of new reports, then their status changes).

    uv run python bench/notifier_ingest.py [--rounds 20] [--batch 500]
    uv run python bench/notifier_ingest.py --baseline-root /work/main

Each variant runs in its own process (``--worker``), against its own fresh database, with one
pooled connection: PostgreSQL's CPU is that backend's (``/proc/<pid>/stat``; PostgreSQL on this
machine). ``--baseline-root``: the notifier and shared sources of that checkout, put first on
PYTHONPATH, run in alternation with this checkout's, so that a change is compared with the
code before it in the same run (the machine's speed drifts within minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu_s(pid: int) -> float:
    """User and system CPU of a process on this machine, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def records(batch: int) -> tuple[list[bytes], list[bytes]]:
    """One round: the contacts of ``batch`` new reports and a status change of each, as the
    producers serialise them."""
    from mm_shared.events import OfficeRef, ReporterContactSubmitted, ReportStatus
    from mm_shared.events import ReportStatusChanged as Changed

    reports = [uuid4() for _ in range(batch)]
    contacts = [
        ReporterContactSubmitted(
            report_id=r,
            jurisdiction="leipzig",
            email=f"reporter{i}@example.org",
            first_name="Erika",
            last_name="Mustermann",
            reporter_token=uuid4().hex,
        )
        for i, r in enumerate(reports)
    ]
    changes = [
        Changed(
            report_id=r,
            jurisdiction="leipzig",
            service_code="005",
            previous_status=ReportStatus.RECEIVED,
            status=ReportStatus.ASSIGNED,
            office=OfficeRef(code="SRL", name="Stadtreinigung Leipzig"),
            public_note="Wird bearbeitet.",
            changed_by="bench",
        )
        for r in reports
    ]
    return (
        [e.model_dump_json().encode() for e in contacts],
        [e.model_dump_json().encode() for e in changes],
    )


async def worker(database_url: str, rounds: int, batch: int, warmup: int) -> dict[str, Any]:
    import sqlalchemy as sa
    from sqlalchemy import event

    from mm_shared.db import create_engine
    from mm_shared.events import ReporterContactSubmitted, ReportStatusChanged
    from notifier import handlers
    from notifier.adapters.db import SqlUnitOfWorkFactory

    engine = create_engine(database_url)
    unit_of_work = SqlUnitOfWorkFactory(engine)
    statements: list[int] = [0]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def count(*_: Any) -> None:
        statements[0] += 1

    async with engine.connect() as conn:
        backend = int(await conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)

    cpu = {"decode": 0.0, "contacts": 0.0, "changes": 0.0}
    pg = {"contacts": 0.0, "changes": 0.0}
    wall = {"contacts": 0.0, "changes": 0.0}
    per_batch = {"contacts": 0, "changes": 0}
    measured = 0
    for round_ in range(warmup + rounds):
        counting = round_ >= warmup
        raw_contacts, raw_changes = records(batch)
        started = time.process_time()
        contacts = [ReporterContactSubmitted.model_validate_json(r) for r in raw_contacts]
        changes = [ReportStatusChanged.model_validate_json(r) for r in raw_changes]
        if counting:
            cpu["decode"] += time.process_time() - started
        batches: tuple[
            tuple[str, Sequence[ReporterContactSubmitted | ReportStatusChanged]], ...
        ] = (
            ("contacts", contacts),
            ("changes", changes),
        )
        for kind, batch_events in batches:
            before = statements[0]
            pg_before, wall_before = backend_cpu_s(backend), time.perf_counter()
            started = time.process_time()
            await handlers.record_batch(unit_of_work, batch_events, with_webhook=False)
            if counting:
                cpu[kind] += time.process_time() - started
                wall[kind] += time.perf_counter() - wall_before
                pg[kind] += backend_cpu_s(backend) - pg_before
                per_batch[kind] = statements[0] - before
        measured += counting
        if round_ + 1 == warmup:
            async with engine.connect() as conn:
                # What autovacuum does within a minute of a live system (this machine's
                # PostgreSQL runs without it): statistics, so that the plans are the
                # production ones rather than those for the empty tables of a fresh database.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text("VACUUM ANALYZE"))

    async with engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT pg_backend_pid()")) == backend, "one backend"
        queued = await conn.scalar(sa.text("SELECT count(*) FROM notifier.notifications"))
        stored = await conn.scalar(sa.text("SELECT count(*) FROM notifier.contacts"))
    await engine.dispose()
    events = measured * batch
    assert queued == stored == (warmup + rounds) * batch, (queued, stored)
    return {
        "events_per_kind": events,
        "decode_cpu_us_per_event": 1e6 * cpu["decode"] / (2 * events),
        **{f"{k}_cpu_us_per_event": 1e6 * cpu[k] / events for k in ("contacts", "changes")},
        **{f"{k}_pg_cpu_us_per_event": 1e6 * pg[k] / events for k in pg},
        **{f"{k}_wall_us_per_event": 1e6 * wall[k] / events for k in wall},
        **{f"{k}_statements_per_batch": per_batch[k] for k in per_batch},
    }


def run_variant(source: Path, database: str, args: argparse.Namespace) -> dict[str, Any]:
    """One worker process with ``source``'s notifier and shared code, on a fresh database."""
    from devstack.databases import fresh_database

    url = asyncio.run(fresh_database(database, ("notifier",)))
    path = [str(source / "services" / "notifier" / "src"), str(source / "shared" / "src")]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([*path, *filter(None, [os.environ.get("PYTHONPATH")])])
    }
    out = subprocess.run(
        [
            *(sys.executable, __file__, "--worker", url),
            *("--rounds", str(args.rounds), "--batch", str(args.batch)),
            *("--warmup", str(args.warmup)),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return dict(json.loads(out.splitlines()[-1]))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs, and each run's figures."""
    keys = [k for k in runs[0] if k.endswith("_per_event")]
    return {
        **{k: round(statistics.median(r[k] for r in runs), 1) for k in keys},
        "total_cpu_us_per_event": round(
            statistics.median(
                r["decode_cpu_us_per_event"]
                + (r["contacts_cpu_us_per_event"] + r["changes_cpu_us_per_event"]) / 2
                for r in runs
            ),
            1,
        ),
        "total_pg_cpu_us_per_event": round(
            statistics.median(
                (r["contacts_pg_cpu_us_per_event"] + r["changes_pg_cpu_us_per_event"]) / 2
                for r in runs
            ),
            1,
        ),
        **{k: runs[0][k] for k in runs[0] if k.endswith("_per_batch")},
        "runs": [{k: round(v, 1) for k, v in r.items()} for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds per run")
    parser.add_argument("--warmup", type=int, default=10, help="rounds before measuring")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (consumer's)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant, alternating")
    parser.add_argument("--baseline-root", type=Path, help="another checkout to compare with")
    parser.add_argument("--out", default="notifier_ingest", help="bench/results/<out>.json")
    parser.add_argument("--worker", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        figures = asyncio.run(worker(args.worker, args.rounds, args.batch, args.warmup))
        print(json.dumps(figures))
        return

    from bench.common import report

    suffix = os.environ.get("MM_BENCH_DATABASE_SUFFIX", "")
    variants = {"this": ROOT} | ({"baseline": args.baseline_root} if args.baseline_root else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for i in range(args.runs):
        for name, source in variants.items():
            figures = run_variant(source, f"mangelmelder_bench_ingest_{name}{suffix}", args)
            print(name, i, json.dumps({k: round(v, 1) for k, v in figures.items()}), flush=True)
            runs[name].append(figures)
    results: dict[str, Any] = {
        "batch": args.batch,
        "rounds_per_run": args.rounds,
        "what": "record_batch of a batch of contacts, then of their reports' status changes; "
        "decode: model_validate_json of each record; PostgreSQL: its backend's CPU",
        **{name: summary(r) for name, r in runs.items()},
    }
    if args.baseline_root:
        results["baseline_root"] = str(args.baseline_root)
    report(args.out, results)


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    main()
