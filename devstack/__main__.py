"""``python -m devstack up|down|status``: the local stack behind ``make up`` and ``make down``."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from devstack import processes
from devstack.databases import database_url, ensure_database
from devstack.monitoring import start_prometheus
from devstack.processes import (
    LOGS,
    PIDS,
    ROOT,
    VAR,
    port_open,
    python_module,
    running,
    spawn,
    start_broker,
    stop,
    wait_for_port,
    wait_healthy,
    write_pid,
)
from mm_shared.kafka import ensure_topics, wait_for_broker

DATABASE = os.environ.get("MM_DATABASE", "mangelmelder")
DATABASE_URL = database_url(DATABASE)
KAFKA_PORT = 9092
SMTP_PORT = 1025
SERVICES = {"intake": 8000, "geo-router": 8001, "notifier": 8002}
PROMETHEUS_PORT = 9090
#: Web, the people's front: a client of the three services' HTTP APIs (no database, no broker).
WEB_PORT = 8003
#: What Prometheus scrapes: the services and web.
SCRAPED = {**SERVICES, "web": WEB_PORT}
MAILDIR = VAR / "mail"
#: When the running broker started: what a broker started later lost, it held since then.
BROKER_STARTED = PIDS / "tansu.started"
#: The services that own what travels on the broker and can announce it again.
REANNOUNCING = ("intake", "geo-router")


def memory_maildir() -> Path:
    """Where the local mail server keeps mail: in memory (tmpfs) when the machine has one, as
    the local broker keeps its messages, with ``var/mail`` pointing there. A Maildir costs a
    file creation per mail, and some disks manage only about a thousand a second."""
    shm = Path("/dev/shm")  # noqa: S108 - a folder of the user's own below, mode 700
    if MAILDIR.is_dir() and not MAILDIR.is_symlink():
        return MAILDIR  # a Maildir from before: keep using it
    if not shm.is_dir():
        MAILDIR.mkdir(parents=True, exist_ok=True)
        return MAILDIR
    target = shm / f"mangelmelder-mail-{os.getuid()}"
    target.mkdir(mode=0o700, exist_ok=True)
    if MAILDIR.is_symlink() and MAILDIR.resolve() != target:
        MAILDIR.unlink()
    if not MAILDIR.is_symlink():
        MAILDIR.parent.mkdir(parents=True, exist_ok=True)
        MAILDIR.symlink_to(target)
    return target


def service_env(
    port_of: dict[str, int] = SERVICES,
    database_url: str = DATABASE_URL,
    kafka: str = f"127.0.0.1:{KAFKA_PORT}",
    smtp_port: int = SMTP_PORT,
    web_port: int = WEB_PORT,
) -> dict[str, str]:
    return processes.service_env(port_of, database_url, kafka, smtp_port, web_port)


def web_env(port_of: dict[str, int] = SERVICES, web_port: int = WEB_PORT) -> dict[str, str]:
    """Web's settings: where the services are and where citizens reach web."""
    return {
        "WEB_HTTP_PORT": str(web_port),
        "WEB_INTAKE_URL": f"http://127.0.0.1:{port_of['intake']}",
        "WEB_GEO_ROUTER_URL": f"http://127.0.0.1:{port_of['geo-router']}",
        "WEB_NOTIFIER_URL": f"http://127.0.0.1:{port_of['notifier']}",
        "WEB_PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
    }


def run(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, check=True)


def up() -> None:
    env = service_env()
    asyncio.run(ensure_database(DATABASE))
    print(f"database   {DATABASE_URL}")

    # The local broker keeps its messages in memory: a new one lost what the last one held.
    lost_since = None
    if not port_open(KAFKA_PORT):
        lost_since = BROKER_STARTED.read_text().strip() if BROKER_STARTED.exists() else None
        write_pid("tansu", start_broker(KAFKA_PORT))
        # The new broker is refilled from `lost_since`: should it be lost too before the
        # consumers read it all, the next re-announcement must reach back as far.
        BROKER_STARTED.write_text(lost_since or datetime.now(UTC).isoformat())

    async def topics() -> None:
        await wait_for_broker(f"127.0.0.1:{KAFKA_PORT}")
        await ensure_topics(f"127.0.0.1:{KAFKA_PORT}")

    asyncio.run(topics())
    print(f"broker     127.0.0.1:{KAFKA_PORT} (Tansu, in memory)")

    for service in SERVICES:
        run(python_module(f"{service.replace('-', '_')}.cli", "migrate"), env)
    for city in ("leipzig", "koeln"):
        run(
            python_module("geo_router.cli", "load", "--if-empty", f"data/{city}/jurisdiction.yaml"),
            env,
        )

    if not port_open(SMTP_PORT):
        smtp = spawn(
            "smtp",
            python_module("devstack.mailserver", f"127.0.0.1:{SMTP_PORT}", str(memory_maildir())),
        )
        write_pid("smtp", smtp)
        wait_for_port(SMTP_PORT, what="smtp")
    where = f" (→ {MAILDIR.resolve()})" if MAILDIR.is_symlink() else ""
    print(f"smtp       127.0.0.1:{SMTP_PORT} → Maildir {MAILDIR.relative_to(ROOT)}/{where}")

    for service, port in SERVICES.items():
        if not port_open(port):
            module = f"{service.replace('-', '_')}.cli"
            write_pid(service, spawn(service, python_module(module, "serve"), env))
    for service, port in SERVICES.items():
        health = wait_healthy(port)
        print(
            f"{service:<10} http://127.0.0.1:{port}  (/healthz {health['status']}, /metrics, /docs)"
        )
    if not port_open(WEB_PORT):
        write_pid("web", spawn("web", python_module("web.cli", "serve"), web_env()))
    wait_healthy(WEB_PORT, consumers=False)
    print(f"web        http://127.0.0.1:{WEB_PORT}  (report a defect, map, alerts; /staff/)")
    if not port_open(PROMETHEUS_PORT):
        targets = {name: f"127.0.0.1:{port}" for name, port in SCRAPED.items()}
        prometheus = start_prometheus(PROMETHEUS_PORT, targets, VAR / "prometheus", interval="5s")
        write_pid("prometheus", prometheus)
    print(
        f"prometheus http://127.0.0.1:{PROMETHEUS_PORT}  (/alerts, /targets; data "
        f"{(VAR / 'prometheus').relative_to(ROOT)}/)"
    )
    if lost_since:
        reannounce(lost_since, env)
    print(f"logs       {LOGS.relative_to(ROOT)}/")
    print(
        "try it     curl -s -X POST http://127.0.0.1:8000/open311/v2/requests.json "
        "-d api_key=local-dev -d service_code=001 -d lat=51.3397 -d long=12.3731 "
        "-d description=Schlagloch -d email=you@example.org"
    )
    print("stop       make down")


def reannounce(since: str, env: dict[str, str]) -> None:
    """After a broker restart: the owners publish again what the lost broker may have held
    (the Kafka recovery procedure of docs/operations.md); consumers drop what they have.
    Both at once: neither depends on the other, and the recovery waits for the slower."""
    commands = [
        python_module(f"{service.replace('-', '_')}.cli", "reannounce", "--since", since)
        for service in REANNOUNCING
    ]
    running = [subprocess.Popen(c, cwd=ROOT, env={**os.environ, **env}) for c in commands]
    for command, process in zip(commands, running, strict=True):
        if process.wait() != 0:
            raise subprocess.CalledProcessError(process.returncode, command)


def down() -> None:
    for name in ["prometheus", "web", *reversed(SERVICES), "smtp", "tansu"]:
        if stop(name):
            print(f"stopped {name}")


def status() -> None:
    for name in ["tansu", "smtp", *SERVICES, "web", "prometheus"]:
        print(f"{name:<10} {'running' if running(name) else 'not running'}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["up", "down", "status"])
    command = parser.parse_args().command
    {"up": up, "down": down, "status": status}[command]()


if __name__ == "__main__":
    main()
