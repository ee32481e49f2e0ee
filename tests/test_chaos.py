"""The fault-injection suite, small: a few hundred reports while every kind of fault happens
twice (shorter outages than ``make chaos``: the broker paused 4 s instead of 20, the mail server
away 5 s instead of 30, a notifier counted dead after 8 s instead of 30, unrouted reports
re-published after 20 s instead of 120), and the faults follow each other without waiting for
the stack to settle. Its own stack, processes and PostgreSQL instance (devstack/chaos.py).
Part of ``make test``: 1.5–5 minutes on this 2-core machine (96 s at load 6, 296 s at load
15); the convergence after the load has one deadline of ``converge_timeout_s`` in all."""

from __future__ import annotations

import json
import os

import pytest

from devstack.chaos import FAULTS, PG_BIN, ChaosConfig, run
from devstack.processes import ROOT

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


@pytest.mark.chaos
@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="needs PostgreSQL 15's initdb")
async def test_nothing_accepted_is_lost_whatever_fails() -> None:
    results = await run(SMALL, ROOT / "var" / "test-chaos.json")
    summary = json.dumps({k: v for k, v in results.items() if k != "config"}, indent=1)

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
