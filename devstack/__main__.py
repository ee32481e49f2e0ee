"""``python -m devstack up|down|status``: the local stack behind ``make up`` and ``make down``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from devstack.databases import database_url, ensure_database
from devstack.processes import (
    LOGS,
    ROOT,
    VAR,
    port_open,
    python_module,
    running,
    spawn,
    start_broker,
    stop,
    wait_for_port,
    write_pid,
)
from mm_shared.kafka import ensure_topics, wait_for_broker

DATABASE = os.environ.get("MM_DATABASE", "mangelmelder")
DATABASE_URL = database_url(DATABASE)
KAFKA_PORT = 9092
SMTP_PORT = 1025
SERVICES = {"intake": 8000, "geo-router": 8001, "notifier": 8002}
#: Web, the people's front: a client of the three services' HTTP APIs (no database, no broker).
WEB_PORT = 8003
MAILDIR = VAR / "mail"


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
    env: dict[str, str] = {}
    for service, port in port_of.items():
        prefix = service.upper().replace("-", "_") + "_"
        env[prefix + "DATABASE_URL"] = database_url
        env[prefix + "KAFKA_BOOTSTRAP_SERVERS"] = kafka
        env[prefix + "HTTP_PORT"] = str(port)
        env[prefix + "PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    # The api_key "local-dev" exists only in this local stack.
    env["INTAKE_API_KEYS"] = '["local-dev"]'
    # Like the api_key: only for the local stack, never for a deployment.
    env["INTAKE_REPORTER_TOKEN_SECRET"] = "local-dev-reporter-tokens-not-for-production"  # noqa: S105
    env["NOTIFIER_SMTP_PORT"] = str(smtp_port)
    # Mails link to web's report page, and the notifier's own pages wear web's look.
    web = f"http://127.0.0.1:{web_port}"
    env["NOTIFIER_TRACKING_BASE_URL"] = f"{web}/reports"
    env["NOTIFIER_STYLESHEET_URL"] = f"{web}/static/site.css"
    # Web forwards each citizen's address; intake believes it only from there.
    env["INTAKE_TRUSTED_PROXIES"] = '["127.0.0.1"]'
    return env


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


def wait_healthy(port: int, timeout_s: float = 60.0, consumers: bool = True) -> dict[str, object]:
    """Until the service is healthy and (``consumers``) its consumers have joined their groups
    (so that the first report flows through at once)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                health = dict(json.load(r))
            if health.get("consumers") == "assigned" or (
                not consumers and health.get("status") == "ok"
            ):
                return health
            last = health
        except Exception as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"service on port {port} not healthy after {timeout_s}s: {last}")


def up() -> None:
    env = service_env()
    asyncio.run(ensure_database(DATABASE))
    print(f"database   {DATABASE_URL}")

    if not port_open(KAFKA_PORT):
        write_pid("tansu", start_broker(KAFKA_PORT))

    async def topics() -> None:
        await wait_for_broker(f"127.0.0.1:{KAFKA_PORT}")
        await ensure_topics(f"127.0.0.1:{KAFKA_PORT}")

    asyncio.run(topics())
    print(f"broker     127.0.0.1:{KAFKA_PORT} (Tansu, in memory)")

    for service in SERVICES:
        run(python_module(f"{service.replace('-', '_')}.cli", "migrate"), env)
    run(
        python_module("geo_router.cli", "load", "--if-empty", "data/leipzig/jurisdiction.yaml"),
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
    print(f"logs       {LOGS.relative_to(ROOT)}/")
    print(
        "try it     curl -s -X POST http://127.0.0.1:8000/open311/v2/requests.json "
        "-d api_key=local-dev -d service_code=001 -d lat=51.3397 -d long=12.3731 "
        "-d description=Schlagloch -d email=you@example.org"
    )
    print("stop       make down")


def down() -> None:
    for name in ["web", *reversed(SERVICES), "smtp", "tansu"]:
        if stop(name):
            print(f"stopped {name}")


def status() -> None:
    for name in ["tansu", "smtp", *SERVICES, "web"]:
        print(f"{name:<10} {'running' if running(name) else 'not running'}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["up", "down", "status"])
    command = parser.parse_args().command
    {"up": up, "down": down, "status": status}[command]()


if __name__ == "__main__":
    main()
