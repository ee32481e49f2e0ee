"""The fault-injection suite, small: a few hundred reports while every kind of fault happens
twice (shorter outages than ``make chaos``: the broker paused 4 s instead of 20, the mail server
away 5 s instead of 30, a notifier counted dead after 8 s instead of 30, unrouted reports
re-published after 20 s instead of 120), and the faults follow each other without waiting for
the stack to settle. Its own stack, processes and PostgreSQL instance (devstack/chaos.py).
Part of ``make test`` (its duration by the machine's load: README.md); the convergence after the
load has one deadline of ``converge_timeout_s`` in all. And one fault sequence the random one
meets only sometimes, run on purpose: a broker lost twice before the notifier read what the
first re-announcement put on it."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest

from devstack.chaos import (
    FAULTS,
    PG_BIN,
    ChaosConfig,
    Load,
    Mailbox,
    Observer,
    Stack,
    inject,
    run,
    start_stack,
    submit_one,
)
from devstack.processes import ROOT
from devstack.testing import eventually

SMALL = ChaosConfig(
    reports=int(os.environ.get("MM_CHAOS_REPORTS", "300")),
    rate_per_s=5.0,
    repeats=2,
    broker_pause_s=4.0,
    smtp_away_s=5.0,
    postgres_down_s=2.0,
    gap_s=(1.0, 3.0),
    settle_between_faults=False,
    notifier_dead_after_s=8.0,
    notifier_heartbeat_s=2.0,
    resubmit_after_s=20.0,
    converge_timeout_s=180.0,
)
#: Where each test's processes log, kept after it (the run's own folder is removed): a failure's
#: traces are there, at the services' WARNING level.
LOGS = ROOT / "var" / "test-chaos-log"


def fresh_log_dir(test: str) -> Path:
    folder = LOGS / test
    shutil.rmtree(folder, ignore_errors=True)
    return folder


@pytest.mark.chaos
@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="needs PostgreSQL 15's initdb")
async def test_nothing_accepted_is_lost_whatever_fails() -> None:
    config = replace(SMALL, log_dir=fresh_log_dir("whatever-fails"))
    results = await run(config, ROOT / "var" / "test-chaos.json")
    summary = json.dumps({k: v for k, v in results.items() if k != "config"}, indent=1)
    summary += f"\nthe processes' logs: {config.log_dir}"

    assert results["accepted"] >= SMALL.reports * 0.95, summary
    assert results["gave_up"] == 0, summary
    assert results["lost"] == 0, summary
    assert results["unassigned"] == 0, summary
    assert results["server_errors_other_than_503"] == 0, summary
    assert results["staff_transitions"]["accepted"] > 0, summary
    assert results["staff_transitions"]["lost"] == 0, summary
    mails = results["mails"]
    assert mails["expected"] > results["accepted"], summary  # assigned, and some worked on
    assert mails["missing"] == 0, summary
    assert mails["reporters_without_contact_at_notifier"] == 0, summary
    assert mails["duplicates"] <= mails["duplicate_bound"], summary
    assert {f["kind"] for f in results["faults"]} == set(FAULTS), summary
    for kind, times in results["time_to_converge_s"].items():
        assert times["not_converged"] == 0, (kind, summary)
    assert results["after_last_fault"]["converged_after_s"] is not None, summary
    assert results["after_last_fault"]["converged_after_load_end_s"] is not None, summary


async def _outbox_drained(stack: Stack) -> bool:
    conn = await asyncpg.connect(stack.postgres.dsn("chaos"), timeout=5)
    try:
        pending = await conn.fetchval(
            "SELECT (SELECT count(*) FROM intake.outbox) + (SELECT count(*) FROM geo_router.outbox)"
        )
    finally:
        await conn.close()
    return bool(pending == 0)


@pytest.mark.chaos
@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="needs PostgreSQL 15's initdb")
async def test_a_broker_lost_again_before_its_reannouncement_was_read() -> None:
    """The broker is lost, the re-announcement fills the new one, and that one is lost too
    before the notifier (paused meanwhile) read it. The second re-announcement must reach back
    as far as the first: the lost broker held the older events it had been refilled with. Before,
    it began at the lost broker's start, and the contacts and status changes of the reports
    taken while the notifier was away never reached it."""
    config = replace(
        SMALL,
        reports=0,
        settle_between_faults=True,
        converge_timeout_s=120.0,
        log_dir=fresh_log_dir("lost-again"),
    )
    work = Path(tempfile.mkdtemp(prefix="mm-chaos-twice-"))
    stack = await start_stack(config, work)
    try:
        load = Load()
        observer = Observer(stack, load, Mailbox(stack.maildir))
        rng = random.Random(config.seed)
        base = f"http://127.0.0.1:{stack.ports['intake']}"
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:
            stack.signal("notifier", signal.SIGSTOP)  # away: reads none of what follows
            for n in range(20):
                assert await submit_one(client, load, n, rng) is not None, load.statuses
        await eventually(lambda: _outbox_drained(stack), timeout_s=60, interval_s=0.5)
        await inject(stack, observer, "broker_lost")  # settles: waits for the re-announcement
        await eventually(lambda: _outbox_drained(stack), timeout_s=60, interval_s=0.5)
        await inject(stack, observer, "broker_lost")
        stack.signal("notifier", signal.SIGCONT)
        converged = await observer.wait_converged(
            time.time(), time.monotonic() + config.converge_timeout_s
        )
        missing = await observer.converged(time.time())
        assert converged is not None, f"{missing}; the processes' logs: {config.log_dir}"
    finally:
        stack.stop_all()
        shutil.rmtree(stack.postgres.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
