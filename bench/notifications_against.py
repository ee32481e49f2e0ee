"""The notification figures of this tree against an earlier commit's, in one run.

``bench/notifications.py`` compares the notifier with a bare SMTP client in the same run; this
compares two versions of the notifier the same way, since this machine's speed varies up to
threefold between days: the earlier commit is checked out into a temporary git worktree with
its own locked environment, and each round runs that commit's own ``bench/notifications.py``,
then this tree's. Each side's bare client uses as many connections as its own notifier has
workers.

    uv run python bench/notifications_against.py --baseline f322680 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.common import clean_env, in_turns, report, this_commit

RESULT = Path("bench") / "results" / "notifications.json"


def one_round(tree: Path, backlog: int) -> dict[str, Any]:
    """One run of the tree's own notification bench; the tree's committed result file is
    left as it was."""
    path = tree / RESULT
    committed = path.read_bytes() if path.exists() else None
    command = ["uv", "run", "--locked", "python", "bench/notifications.py",
               "--backlog", str(backlog)]  # fmt: skip
    try:
        subprocess.run(command, cwd=tree, env=clean_env(), check=True, stdout=subprocess.DEVNULL)
        figures = json.loads(path.read_text())
    finally:
        if committed is not None:
            path.write_bytes(committed)
    memory, disk = figures["maildir_in_memory"], figures["maildir_on_disk"]
    return {
        "python_loop_million_per_s": figures["machine"]["python_loop_million_per_s"],
        "delivered_all": memory["backlog"]["delivered"] == memory["backlog"]["notifications"],
        "mails_per_s": memory["backlog"]["per_s"],
        "bare_per_s": memory["bare_smtp_client"]["per_s"],
        "bare_connections": memory["bare_smtp_client"]["connections"],
        "share_of_bare": memory["notifier_share_of_bare"],
        "cpu_ms_per_mail": memory["backlog"].get("cpu_ms_per_mail"),
        "on_disk_mails_per_s": disk["backlog"]["per_s"],
        "on_disk_share_of_bare": disk["notifier_share_of_bare"],
        "at_100_per_s_p50_ms": memory["fixed_rate"]["p50_ms"],
        "at_100_per_s_p99_ms": memory["fixed_rate"]["p99_ms"],
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str) -> float | None:
        """Of the rounds that have the figure (a run that did not deliver everything in
        time has no rate)."""
        figures = [r[key] for r in rounds if r[key] is not None]
        return round(float(statistics.median(figures)), 3) if figures else None

    return {
        "median_of_rounds": {
            key: median(key)
            for key in (
                "mails_per_s",
                "bare_per_s",
                "share_of_bare",
                "on_disk_mails_per_s",
                "on_disk_share_of_bare",
                "at_100_per_s_p50_ms",
                "at_100_per_s_p99_ms",
            )
        },
        "every_mail_delivered": all(r["delivered_all"] for r in rounds),
        "bare_connections": sorted({r["bare_connections"] for r in rounds}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="f322680", help="commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=4000)
    parser.add_argument("--out", default="notifications-against-baseline")
    args = parser.parse_args()
    baseline, this_tree = in_turns(
        args.baseline, args.rounds, lambda tree: one_round(tree, args.backlog)
    )
    before, after = summary(baseline), summary(this_tree)
    ratio = {
        key: round(after["median_of_rounds"][key] / before["median_of_rounds"][key], 2)
        if after["median_of_rounds"][key] and before["median_of_rounds"][key]
        else None
        for key in ("mails_per_s", "share_of_bare", "on_disk_mails_per_s")
    }
    report(
        args.out,
        {
            "what": "bench/notifications.py of each version (backlog in memory and on disk, "
            "bare SMTP client before and after, 100 changes/s), rounds alternating; each "
            "side's bare client has as many connections as its own notifier's workers "
            "(bare_connections), so a change of that default moves both sides' figures",
            "backlog": args.backlog,
            "baseline": {"commit": args.baseline, "rounds": baseline, **before},
            "this_tree": {"commit": this_commit(), "rounds": this_tree, **after},
            "this_tree_over_baseline": ratio,
            "targets": {"notifier_share_of_bare_smtp_client": 0.8},
        },
    )


if __name__ == "__main__":
    main()
