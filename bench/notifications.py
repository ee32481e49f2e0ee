"""Notifier figures (issue 5), in one run on this machine:

1. notifications/s delivered to the local SMTP server (``devstack.mailserver``: aiosmtpd
   storing a Maildir, as in the local stack) for a backlog of status changes, with the Maildir
   in memory and on the disk (whose own file rate is measured too);
2. status change → message in the Maildir, p50/p99, at a fixed 100 changes/s;
3. what a bare SMTP client (aiosmtplib, as many connections as the notifier has workers, a
   message of the notifier's own) reaches against the same server and Maildir in the same run,
   for as many messages as the backlog, right before and right after the notifier's backlog
   (the load of a shared machine drifts), and the notifier's share of their mean. The load
   average is recorded beside each;
4. the CPU each part spent per mail in both (the scheduler's own accounting: the notifier, the
   PostgreSQL backends of its database, the SMTP server; the bare client and the server), how
   busy the whole machine was, and the share that this CPU per mail allows on this machine's
   cores: the server runs on one core, everything else shares the rest with it.

    uv run python bench/notifications.py [--backlog 8000] [--rate 100] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import email
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiosmtplib
from aiokafka import AIOKafkaProducer

from bench.common import LOGS, broker, database, free_port, percentile, report, service, service_env
from bench.resources import database_backends, machine_cpu_s, sched_s
from devstack.processes import python_module, spawn, wait_for_port
from mm_shared.events import (
    OfficeRef,
    ReporterContactSubmitted,
    ReportStatus,
    ReportStatusChanged,
)
from notifier.adapters.senders import mime_message
from notifier.domain import Claimed
from notifier.mails import Mails
from notifier.settings import NotifierSettings


def change(report_id: UUID) -> ReportStatusChanged:
    return ReportStatusChanged(
        report_id=report_id,
        service_code="005",
        previous_status=ReportStatus.RECEIVED,
        status=ReportStatus.ASSIGNED,
        office=OfficeRef(code="SRL", name="Stadtreinigung Leipzig"),
        changed_by="bench",
    )


async def send(producer: AIOKafkaProducer, *events: object) -> None:
    acks = [
        await producer.send(e.topic.value, e.model_dump_json().encode(), key=e.key)  # type: ignore[attr-defined]
        for e in events
    ]
    await asyncio.gather(*acks)


def delivered(maildir: Path) -> list[Path]:
    return list((maildir / "new").iterdir())


def files_per_s(folder: Path, n: int = 2000) -> int:
    """Maildir deliveries the file system itself manages: create, write 4 kB, rename."""
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    (folder / "new").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i in range(n):
        (folder / "tmp" / str(i)).write_bytes(b"x" * 4096)
        os.replace(folder / "tmp" / str(i), folder / "new" / str(i))
    rate = n / (time.perf_counter() - started)
    shutil.rmtree(folder)
    return round(rate)


class CpuMeter:
    """CPU seconds the watched processes (by name: a pid list, or a function giving it at
    each reading, for PostgreSQL's backends that come and go) and the whole machine spend
    between ``start()`` and ``per_mail()``."""

    def __init__(self, parts: dict[str, Callable[[], list[int]]]) -> None:
        self._parts = parts
        self._start: dict[str, dict[int, float]] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)

    def _read(self) -> dict[str, dict[int, float]]:
        """CPU seconds by part and pid, of the processes there now (one gone between listing
        and reading is left out rather than read as zero). A PostgreSQL backend that exits
        within the window takes its CPU with it: the notifier keeps its pool's connections."""
        return {
            name: {pid: sched_s([pid])[0] for pid in pids() if Path(f"/proc/{pid}").exists()}
            for name, pids in self._parts.items()
        }

    def start(self) -> None:
        self._start, self._machine = self._read(), machine_cpu_s()

    def per_mail(self, mails: int) -> dict[str, Any]:
        """Milliseconds of CPU per mail by part (a process born meanwhile counts from zero),
        and how busy the machine was (1.0: every core, every moment)."""
        end, machine = self._read(), machine_cpu_s()
        spent = {
            name: sum(ran - self._start[name].get(pid, 0.0) for pid, ran in pids.items())
            for name, pids in end.items()
        }
        busy, total = (after - before for after, before in zip(machine, self._machine, strict=True))
        return {
            "cpu_ms_per_mail": {name: round(1000 * s / mails, 3) for name, s in spent.items()},
            "machine_busy": round(busy / total, 2) if total else None,
        }


def share_cpu_allows(
    notifier: dict[str, float], bare: dict[str, float], cores: int
) -> float | None:
    """The notifier's share of the bare client that CPU per mail alone allows: each side's
    rate is what its parts' CPU per mail fits into ``cores``, the SMTP server (one process,
    one event loop) being held to one core."""

    def rate(parts: dict[str, float]) -> float:
        server = parts["smtp_server"]
        return min(1000 / server, 1000 * cores / sum(parts.values()))

    if not (notifier["smtp_server"] > 0 and bare["smtp_server"] > 0):
        return None  # the server's CPU could not be read
    return round(rate(notifier) / rate(bare), 3)


async def bare_smtp_client(port: int, template: bytes, messages: int, connections: int) -> int:
    """Messages/s of a bare SMTP client sending ``template`` ``messages`` times over
    ``connections`` connections at once (each one message after another, as the notifier's
    senders do), with no database, no rendering and no queue."""
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) for _ in range(connections)
    ]
    for client in clients:
        await client.connect()
    counter = iter(range(messages))

    async def send(client: aiosmtplib.SMTP) -> None:
        for i in counter:
            await client.sendmail("noreply@example.org", [f"bare{i}@example.org"], template)

    started = time.perf_counter()
    await asyncio.gather(*(send(c) for c in clients))
    rate = messages / (time.perf_counter() - started)
    for client in clients:
        await client.quit()
    return round(rate)


def load() -> list[float]:
    """The 1, 5 and 15 minutes' load averages (as ``uptime`` shows them)."""
    return [round(x, 2) for x in os.getloadavg()]


def a_notifier_message() -> bytes:
    """A status mail as the notifier writes one (before the notifier ran in this run)."""
    settings = NotifierSettings()
    event = change(uuid4())
    recipient = Claimed(
        id=1,
        channel="email",
        event=event.model_dump(mode="json"),
        contact_id=1,
        email="bare@example.org",
        locale="de",
        preference="every_change",
        unsubscribe_token="t" * 32,
    )
    mail = Mails(settings.public_base_url, settings.tracking_base_url).status_changed(
        event, recipient
    )
    return mime_message(settings.mail_from, mail)


def a_delivered_message(maildir: Path) -> bytes:
    """One of the notifier's messages as the server received it (without the line the
    server added; with SMTP's line ends again)."""
    stored = next(iter(delivered(maildir))).read_bytes()
    return stored.split(b"\n", 1)[1].replace(b"\n", b"\r\n")


async def fixed_rate(
    producer: AIOKafkaProducer, maildir: Path, already: int, rate: float, seconds: float
) -> dict[str, object]:
    """Contacts first (as intake publishes them at submission), then one status change every
    1/rate s; latency from the event's time to the file."""
    total = int(rate * seconds)
    live = [uuid4() for _ in range(total)]
    await send(
        producer,
        *(
            ReporterContactSubmitted(report_id=r, email=f"l{i}@example.org")
            for i, r in enumerate(live)
        ),
    )
    changed_at: dict[str, float] = {}
    start = time.monotonic()
    for i, r in enumerate(live):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        event = change(r)
        changed_at[str(event.event_id)] = event.occurred_at.timestamp()
        await producer.send(event.topic.value, event.model_dump_json().encode(), key=event.key)
    await producer.flush()
    deadline = time.monotonic() + 60
    while len(delivered(maildir)) < already + total and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    latencies = []
    for path in delivered(maildir):
        message = email.message_from_bytes(path.read_bytes())
        event_id = (message["Message-ID"] or "").strip("<>").split(".")[0]
        if event_id in changed_at:
            latencies.append((path.stat().st_mtime - changed_at[event_id]) * 1000)
    return {
        "rate_per_s": rate,
        "changes": total,
        "delivered": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


async def run(
    bootstrap: str,
    database_url: str,
    maildir: Path,
    backlog: int,
    rate: float | None,
    seconds: float,
) -> dict[str, object]:
    (maildir / "new").mkdir(parents=True, exist_ok=True)
    smtp_port, port = free_port(), free_port()
    smtp = spawn(
        f"smtp-{smtp_port}",
        python_module("devstack.mailserver", f"127.0.0.1:{smtp_port}", str(maildir)),
        log_dir=LOGS,
    )
    wait_for_port(smtp_port, what="smtp")
    env = service_env("NOTIFIER", database_url, bootstrap, port, smtp_port=str(smtp_port))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    figures: dict[str, object] = {}
    try:
        connections = NotifierSettings().workers
        # The bare client first, with a message the notifier's own code writes; its files are
        # cleared before the notifier's are counted.
        bare_meter = CpuMeter({"client": lambda: [os.getpid()], "smtp_server": lambda: [smtp.pid]})
        bare_meter.start()
        bare_before = await bare_smtp_client(smtp_port, a_notifier_message(), backlog, connections)
        bare_cpu = bare_meter.per_mail(backlog)
        load_before = load()
        for path in delivered(maildir):
            path.unlink()
        # Backlog: contacts and status changes already waiting when the notifier starts.
        reports = [uuid4() for _ in range(backlog)]
        await send(
            producer,
            *(
                ReporterContactSubmitted(report_id=r, email=f"b{i}@example.org")
                for i, r in enumerate(reports)
            ),
        )
        await send(producer, *(change(r) for r in reports))
        async with service("notifier", "notifier.cli", port, env) as notifier:
            meter = CpuMeter(
                {
                    "notifier": lambda: [notifier.pid],
                    "postgres": lambda: database_backends(database_url),
                    "smtp_server": lambda: [smtp.pid],
                }
            )
            deadline = time.monotonic() + 600
            first = last = 0.0
            cpu: dict[str, Any] = {}
            while time.monotonic() < deadline:
                count = len(delivered(maildir))
                now = time.monotonic()
                if count and not first:
                    first, first_count = now, count
                    meter.start()
                if count >= backlog:
                    last = now
                    if count > first_count:
                        cpu = meter.per_mail(count - first_count)
                    break
                await asyncio.sleep(0.2)
            sent = len(delivered(maildir))
            figures["backlog"] = {
                "notifications": backlog,
                "delivered": sent,
                "per_s": round((sent - first_count) / (last - first)) if last > first else None,
                "load_average": load(),
                **cpu,
            }
            template = a_delivered_message(maildir)
            # The notifier idles now: the same server and Maildir, for the bare client again
            # with the notifier's message as it arrived.
            bare_meter.start()
            bare_after = await bare_smtp_client(smtp_port, template, backlog, connections)
            bare_cpu_after = bare_meter.per_mail(backlog)
            load_after = load()
            for path in delivered(maildir):
                path.unlink()
            if rate is not None:
                figures["fixed_rate"] = await fixed_rate(producer, maildir, 0, rate, seconds)
        notifier_rate = figures["backlog"]["per_s"]  # type: ignore[index]
        bare = (bare_before + bare_after) / 2
        figures["bare_smtp_client"] = {
            "messages": backlog,
            "connections": connections,
            "message_bytes": len(template),
            "per_s_before": bare_before,
            "load_average_before": load_before,
            "per_s_after": bare_after,
            "load_average_after": load_after,
            "per_s": round(bare),
            "before": bare_cpu,
            "after": bare_cpu_after,
        }
        figures["notifier_share_of_bare"] = (
            round(notifier_rate / bare, 3) if notifier_rate else None
        )
        if cpu:
            bare_ms = {
                part: (bare_cpu["cpu_ms_per_mail"][part] + bare_cpu_after["cpu_ms_per_mail"][part])
                / 2
                for part in ("client", "smtp_server")
            }
            figures["share_cpu_per_mail_allows"] = share_cpu_allows(
                cpu["cpu_ms_per_mail"], bare_ms, len(os.sched_getaffinity(0))
            )
    finally:
        await producer.stop()
        smtp.terminate()
        smtp.wait(10)
        shutil.rmtree(maildir, ignore_errors=True)
    return figures


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=8000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    #: Helpers sharing a database server each give their own.
    parser.add_argument("--database", default="mangelmelder_bench")
    args = parser.parse_args()
    # The Maildir costs a file creation and a rename per mail; where the project's disk manages
    # about a thousand of those a second, the disk, not the notifier, would be measured. So the
    # headline run keeps the Maildir in memory (tmpfs), as the local stack does; a second run on
    # the disk and the disk's own rate are reported beside it.
    memory = Path("/dev/shm") if Path("/dev/shm").is_dir() else LOGS
    on_memory, on_disk = memory / f"maildir-{os.getpid()}", LOGS / f"maildir-{os.getpid()}"
    figures: dict[str, object] = {
        "uptime_at_start": uptime(),
        "maildir_files_per_s": {
            "memory": files_per_s(memory / f"files-{os.getpid()}"),
            "disk": files_per_s(LOGS / f"files-{os.getpid()}"),
        },
    }
    database_url = database(args.database, jurisdictions=())
    with broker() as bootstrap:
        figures["maildir_in_memory"] = asyncio.run(
            run(bootstrap, database_url, on_memory, args.backlog, args.rate, args.seconds)
        )
    figures["uptime_before_disk_run"] = uptime()
    with broker() as bootstrap:
        figures["maildir_on_disk"] = asyncio.run(
            run(bootstrap, database_url, on_disk, args.backlog // 2, None, args.seconds)
        )
    figures["uptime_at_end"] = uptime()
    figures["targets"] = {
        "notifications_per_s": 1000,
        "p99_ms_at_100_per_s": 1000,
        "notifier_share_of_bare_smtp_client": 0.8,
    }
    report("notifications", figures)


if __name__ == "__main__":
    main()
