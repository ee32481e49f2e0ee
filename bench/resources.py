"""Memory and CPU of each service as its own process, idle and under a steady load of
submissions (every one routed and mailed), for the Kubernetes requests and limits
(deploy/kubernetes/base/*/deployment.yaml, docs/operations.md).

    uv run python bench/resources.py [--rate 100] [--seconds 30]
    uv run python bench/resources.py --jurisdictions leipzig germany   # → resources-germany.json

Reads /proc: VmRSS (resident memory) sampled every 0.2 s, and user+system CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from sqlalchemy import make_url

from bench.common import LOGS, broker, database, free_port, open_loop_post, report
from devstack.processes import ServiceProcess, python_module, service_env, spawn, wait_for_port

TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def machine_cpu_s() -> tuple[float, float]:
    """Busy and total CPU time of the whole machine (all cores, every process: other users'
    too), from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields[:8])  # without guest time, already counted in user
    return (total - idle) / TICKS, total / TICKS


def sched_s(pids: list[int]) -> tuple[float, float, int]:
    """Seconds the threads of ``pids`` ran on a CPU, seconds they waited runnable for one, and
    how many times they were put on a CPU (the scheduler's own accounting,
    /proc/<pid>/task/<tid>/schedstat). The wait is what a busy machine adds to every hop: the
    process had work and no core to do it on."""
    ran = waited = slices = 0
    for pid in pids:
        with suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with suppress(OSError, ValueError):
                    fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
                    ran += int(fields[0])
                    waited += int(fields[1])
                    slices += int(fields[2])
    return ran / 1e9, waited / 1e9, slices


def database_backends(database_url: str) -> list[int]:
    """The PostgreSQL backends serving ``database_url``'s database (by their process title)."""
    name = make_url(database_url).database or ""
    backends = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with suppress(OSError):
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
                if title.startswith(b"postgres: ") and f" {name} ".encode() in title:
                    backends.append(int(pid))
    return backends


async def measure(
    services: dict[str, ServiceProcess], rate: float, seconds: float
) -> dict[str, object]:
    pids = {name: s.process.pid for name, s in services.items() if s.process}
    idle = {name: round(rss_mib(pid), 1) for name, pid in pids.items()}
    peak = dict(idle)
    cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
    started = time.perf_counter()

    async def sample() -> None:
        while True:
            for name, pid in pids.items():
                peak[name] = max(peak[name], round(rss_mib(pid), 1))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    body = (
        "api_key=local-dev&service_code=001&lat=51.3397&long=12.3731"
        "&description=Schlagloch&email=bench%40example.org"
    )
    load = await open_loop_post(
        f"{services['intake'].url}/open311/v2/requests.json",
        rate,
        seconds,
        "application/x-www-form-urlencoded",
        body,
        "X-Acknowledge-Duplicate: true",
    )
    await asyncio.sleep(5)  # the tail of routing and mail after the last submission
    sampler.cancel()
    elapsed = time.perf_counter() - started
    return {
        "load": {"rate_per_s": rate, "seconds": seconds, **load},
        "services": {
            name: {
                "rss_idle_mib": idle[name],
                "rss_peak_mib": peak[name],
                "cpu_cores_under_load": round((cpu_s(pid) - cpu_before[name]) / elapsed, 3),
            }
            for name, pid in pids.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--jurisdictions", nargs="+", default=["leipzig"])
    args = parser.parse_args()
    with broker() as kafka, tempfile.TemporaryDirectory() as home:
        database_url = database(jurisdictions=tuple(args.jurisdictions))
        smtp_port = free_port()
        smtp = spawn(
            f"smtp-{smtp_port}",
            python_module("devstack.mailserver", f"127.0.0.1:{smtp_port}", f"{home}/mail"),
            log_dir=LOGS,
        )
        wait_for_port(smtp_port, what="smtp")
        ports = {name: free_port() for name in ("intake", "geo-router", "notifier")}
        env = service_env(ports, database_url, kafka, smtp_port)
        env |= {"INTAKE_PHOTO_DIR": f"{home}/photos", "INTAKE_RATE_LIMIT_PER_ADDRESS": "1000000"}
        services = {n: ServiceProcess(n, p, env, LOGS) for n, p in ports.items()}
        try:
            for s in services.values():
                s.start()
            for s in services.values():
                s.wait_healthy()
            figures = asyncio.run(measure(services, args.rate, args.seconds))
        finally:
            for s in services.values():
                s.stop()
            smtp.terminate()
            smtp.wait(10)
    figures["jurisdictions"] = args.jurisdictions
    extra = [j for j in args.jurisdictions if j != "leipzig"]
    report("-".join(["resources", *extra]), figures)


if __name__ == "__main__":
    main()
