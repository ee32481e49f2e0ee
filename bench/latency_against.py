"""Submit → assigned at 200 reports/s, this tree against an earlier commit, in one run.

Issue 17 asks to cut idle CPU "without losing the submit → assigned latency under load" that
``bench/results/geo_router.json`` recorded (``bench/routing.py --parts latency``: intake and
geo-router as processes, their own broker and database). This machine's speed varies up to
threefold between days, so that file's absolute figures only compare with a run of both
versions on the same machine, in turns: the earlier commit is checked out into a temporary git
worktree with its own locked environment, and each round runs that commit's own
``bench/routing.py`` latency part, then this tree's.

    uv run python bench/latency_against.py --baseline 48670ec --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.common import clean_env, in_turns, report, this_commit

ROUND_OUT = "latency-against-round"


def one_round(tree: Path, rate: float, seconds: float) -> dict[str, Any]:
    command = ["uv", "run", "--locked", "python", "bench/routing.py", "--parts", "latency",
               "--rate", str(rate), "--seconds", str(seconds)]  # fmt: skip
    help_text = subprocess.run(
        [*command[:5], "--help"], cwd=tree, env=clean_env(), capture_output=True, text=True
    ).stdout
    # Earlier versions wrote their one fixed file; it is a scratch worktree's copy then.
    out = ROUND_OUT if "--out" in help_text else "geo_router"
    if out == ROUND_OUT:
        command += ["--out", ROUND_OUT]
    subprocess.run(command, cwd=tree, env=clean_env(), check=True, stdout=subprocess.DEVNULL)
    path = tree / "bench" / "results" / f"{out}.json"
    figures = json.loads(path.read_text())
    if out == ROUND_OUT:
        path.unlink()
    latency = figures["submit_to_assigned"]
    return {
        "python_loop_million_per_s": figures["machine"]["python_loop_million_per_s"],
        "reports": latency["reports"],
        "assigned": latency["assigned"],
        "http_p50_ms": latency["http"]["p50_ms"],
        "http_p99_ms": latency["http"]["p99_ms"],
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "max_ms": latency["max_ms"],
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "p50_ms_median_of_rounds": round(statistics.median(r["p50_ms"] for r in rounds), 1),
        "p99_ms_median_of_rounds": round(statistics.median(r["p99_ms"] for r in rounds), 1),
        "every_report_assigned": all(r["assigned"] == r["reports"] for r in rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="48670ec", help="commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", default="latency-against-baseline")
    args = parser.parse_args()
    baseline, this_tree = in_turns(
        args.baseline, args.rounds, lambda tree: one_round(tree, args.rate, args.seconds)
    )
    before, after = summary(baseline), summary(this_tree)
    report(
        args.out,
        {
            "what": "submit -> assigned (intake's requested_at -> its 'assigned' transition), "
            "bench/routing.py --parts latency of each version, rounds alternating",
            "rate_per_s": args.rate,
            "seconds_per_round": args.seconds,
            "baseline": {"commit": args.baseline, "rounds": baseline, **before},
            "this_tree": {
                "commit": this_commit(),
                "rounds": this_tree,
                **after,
            },
            "this_tree_over_baseline": {
                "p50": round(
                    after["p50_ms_median_of_rounds"] / before["p50_ms_median_of_rounds"], 2
                ),
                "p99": round(
                    after["p99_ms_median_of_rounds"] / before["p99_ms_median_of_rounds"], 2
                ),
            },
            "targets": {"submit_to_assigned_ms": {"p50": 30, "p99": 100}},
        },
    )


if __name__ == "__main__":
    main()
