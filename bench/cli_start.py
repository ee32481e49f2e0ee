"""How long geo-router's command line takes to answer: ``geo-router --help`` and ``geo-router
jurisdictions list`` (against a database with Leipzig loaded), each run as its own process,
as an administrator runs them. Appends the run, under its label (``before``, ``after`` a
change), to those in bench/results/geo_router_cli.json.

    uv run python bench/cli_start.py after
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, python_speed, report
from devstack.databases import fresh_database
from devstack.processes import ROOT

RUNS = 7
COMMANDS = {
    "help": ["--help"],
    "jurisdictions_list": ["jurisdictions", "list"],
}
NAME = "geo_router_cli"


def seconds_per_run(command: list[str], env: dict[str, str]) -> dict[str, float | str]:
    """Wall-clock seconds of each run; the first warms the file cache and is left out."""
    executable = str(Path(sys.executable).parent / "geo-router")
    times = []
    outcome = "ok"
    for _ in range(RUNS + 1):
        started = time.perf_counter()
        done = subprocess.run(
            [executable, *command], env=env, capture_output=True, text=True, check=False
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            outcome = f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-200:]}"
    measured = times[1:]
    return {
        "median_s": round(statistics.median(measured), 3),
        "min_s": round(min(measured), 3),
        "max_s": round(max(measured), 3),
        "outcome": outcome,
    }


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "after"

    async def prepare() -> str:
        from geo_router.cli import load_jurisdiction

        url = await fresh_database("mm_bench_cli_start", ("geo-router",))
        await load_jurisdiction(url, ROOT / "data" / "leipzig" / "jurisdiction.yaml")
        return url

    url = asyncio.run(prepare())
    env = {**os.environ, "GEO_ROUTER_DATABASE_URL": url}
    figures = {name: seconds_per_run(command, env) for name, command in COMMANDS.items()}
    path = RESULTS / f"{NAME}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    # Every run is kept: on this shared machine one run's figures mean little alone.
    runs = previous.get("runs", [])
    run = {
        "label": label,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1m": round(os.getloadavg()[0], 2),
        # Figures of different runs only compare beside the machine's speed at the time.
        "python_loop_million_per_s": python_speed(),
        "runs_per_command": RUNS,
        **figures,
    }
    report(NAME, {"target_s": 1.0, "runs": [*runs, run]})


if __name__ == "__main__":
    main()
