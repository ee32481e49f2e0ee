"""What the notifier's consumer costs per event, without broker or mail: the CPU of this process
and of its PostgreSQL backend while ``handlers.record_batch`` stores batches as the broker
delivers them after a backlog (contacts of new reports, then their status changes).

    uv run python bench/notifier_ingest.py [--rounds 40] [--batch 500]
    uv run python bench/notifier_ingest.py --baseline-root /work/main

Each variant runs in its own process (``--worker``), against its own fresh database, with one
pooled connection: PostgreSQL's CPU is that backend's (``/proc/<pid>/stat``; PostgreSQL on this
machine). ``--baseline-root``: the notifier and shared sources of that checkout, put first on
PYTHONPATH, run in turns with this checkout's, a round each, so that a change is compared
with the code before it under the same load (the machine's speed drifts within seconds).
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


async def worker(database_url: str, batch: int) -> None:
    """Stores one round per line read (``round``; ``analyze`` runs VACUUM ANALYZE), printing
    its figures as a line of JSON, until ``end``."""
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

    rounds = 0
    while (command := (await asyncio.to_thread(sys.stdin.readline)).strip()) != "end":
        if command == "analyze":
            async with engine.connect() as conn:
                # What autovacuum does within a minute of a live system (this machine's
                # PostgreSQL runs without it): statistics, so that the plans are the
                # production ones rather than those for the empty tables of a fresh database.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text("VACUUM ANALYZE"))
            print("{}", flush=True)
            continue
        raw_contacts, raw_changes = records(batch)
        started = time.process_time()
        contacts = [ReporterContactSubmitted.model_validate_json(r) for r in raw_contacts]
        changes = [ReportStatusChanged.model_validate_json(r) for r in raw_changes]
        figures: dict[str, float] = {"decode_cpu_s": time.process_time() - started}
        batches: tuple[
            tuple[str, Sequence[ReporterContactSubmitted | ReportStatusChanged]], ...
        ] = (("contacts", contacts), ("changes", changes))
        for kind, batch_events in batches:
            before = statements[0]
            pg_before, wall_before = backend_cpu_s(backend), time.perf_counter()
            started = time.process_time()
            await handlers.record_batch(unit_of_work, batch_events, with_webhook=False)
            figures[f"{kind}_cpu_s"] = time.process_time() - started
            figures[f"{kind}_wall_s"] = time.perf_counter() - wall_before
            figures[f"{kind}_pg_cpu_s"] = backend_cpu_s(backend) - pg_before
            figures[f"{kind}_statements"] = statements[0] - before
        rounds += 1
        print(json.dumps(figures), flush=True)

    async with engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT pg_backend_pid()")) == backend, "one backend"
        queued = await conn.scalar(sa.text("SELECT count(*) FROM notifier.notifications"))
        stored = await conn.scalar(sa.text("SELECT count(*) FROM notifier.contacts"))
    await engine.dispose()
    assert queued == stored == rounds * batch, (queued, stored, rounds)


class Variant:
    """A worker process running ``source``'s notifier and shared code on a fresh database."""

    def __init__(self, name: str, source: Path, batch: int) -> None:
        from devstack.databases import fresh_database

        suffix = os.environ.get("MM_BENCH_DATABASE_SUFFIX", "")
        url = asyncio.run(
            fresh_database(f"mangelmelder_bench_ingest_{name}{suffix}", ("notifier",))
        )
        path = [str(source / "services" / "notifier" / "src"), str(source / "shared" / "src")]
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join([*path, *filter(None, [os.environ.get("PYTHONPATH")])])
        }
        self.name = name
        self.rounds: list[dict[str, float]] = []
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--worker", url, "--batch", str(batch)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def ask(self, command: str) -> dict[str, float]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name} worker failed")
        return dict(json.loads(line))

    def end(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write("end\n")
        self._process.stdin.flush()
        if self._process.wait(60):
            raise SystemExit(f"{self.name} worker failed")

    def summary(self, batch: int) -> dict[str, Any]:
        """Per event, over all rounds (PostgreSQL's CPU comes in clock ticks of 10 ms: a
        round's own figure is coarse)."""

        def per_event(key: str, events: int = batch) -> float:
            return round(1e6 * statistics.fmean(r[key] for r in self.rounds) / events, 1)

        last = self.rounds[-1]
        return {
            "rounds": len(self.rounds),
            "decode_cpu_us_per_event": per_event("decode_cpu_s", 2 * batch),
            **{
                f"{kind}_{what}_us_per_event": per_event(f"{kind}_{what}_s")
                for kind in ("contacts", "changes")
                for what in ("cpu", "pg_cpu", "wall")
            },
            "statements_per_batch": {
                "contacts": int(last["contacts_statements"]),
                "changes": int(last["changes_statements"]),
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40, help="measured rounds of each")
    parser.add_argument("--warmup", type=int, default=10, help="rounds before measuring")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (consumer's)")
    parser.add_argument("--baseline-root", type=Path, help="another checkout to compare with")
    parser.add_argument("--out", default="notifier_ingest", help="bench/results/<out>.json")
    parser.add_argument("--worker", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.batch))
        return

    from bench.common import report

    sources = {"this": ROOT} | ({"baseline": args.baseline_root} if args.baseline_root else {})
    variants = [Variant(name, source, args.batch) for name, source in sources.items()]
    for i in range(args.warmup + args.rounds):
        if i == args.warmup:
            for variant in variants:
                variant.ask("analyze")
        # In turns, one round each, each first every other time: the machine's speed drifts
        # within seconds here (other work on its two cores).
        for variant in variants[:: 1 if i % 2 == 0 else -1]:
            figures = variant.ask("round")
            if i >= args.warmup:
                variant.rounds.append(figures)
    for variant in variants:
        variant.end()
    results: dict[str, Any] = {
        "batch": args.batch,
        "what": "record_batch of a batch of contacts of new reports, then of a status change "
        "of each; decode: model_validate_json of each record; PostgreSQL: its backend's CPU",
        **{v.name: v.summary(args.batch) for v in variants},
    }
    if args.baseline_root:
        results["baseline_root"] = str(args.baseline_root)
        results["this_of_baseline"] = {
            key: round(results["this"][key] / results["baseline"][key], 3)
            for key in results["this"]
            if key.endswith("cpu_us_per_event")
        }
    report(args.out, results)


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    main()
