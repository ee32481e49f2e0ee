"""The fault-injection suite: ``python -m devstack.chaos [--reports 10000] [--out FILE]``
(``make chaos``; a small run is ``tests/test_chaos.py``, part of ``make test``).

Its own stack: a PostgreSQL instance of its own (initdb into a temporary folder, on a free port:
the machine's cluster is shared, and this one is stopped with ``-m immediate``), a broker, a
Maildir mail server, and the three services as real processes, so that they can be killed. A
steady load of reports (native JSON, multipart with photos, the Open311 form), each with its own
e-mail address; a share of them get staff transitions. Meanwhile every kind of fault happens
more than once, one after the other at random moments. Afterwards the invariants are checked
and the figures returned (and written as JSON):

- every report answered 2xx is stored and assigned (or routing-failed with its reason);
- every staff transition answered 2xx is stored;
- every reporter gets exactly the mails their preference (every change) asks for, once each
  by Message-ID; duplicates are counted;
- clients see only 2xx, 4xx and 503 (a connection refused while a service is down is counted
  apart: a load balancer would answer it with 503);
- the time until everything accepted before a fault's end is routed and mailed ("converged").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import platform
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from statistics import median
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.pictures import phone_jpeg
from devstack.processes import ROOT, free_port, python_module, service_env, spawn, start_broker
from mm_shared.db import upgrade
from mm_shared.kafka import ensure_topics, wait_for_broker

log = logging.getLogger("chaos")

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVICES = ("intake", "geo-router", "notifier")
FAULTS = (
    "kill_intake",
    "kill_geo_router",
    "kill_notifier",
    "postgres_immediate",
    "broker_pause",
    "broker_lost",
    "smtp_away",
)
API_KEY = "chaos"
#: Categories without required attributes, routed everywhere in Leipzig.
CODES = ("001", "002", "004", "007", "012")
#: Well inside the city (Leipzig's centre and inner districts).
AREA = ((51.31, 51.37), (12.32, 12.42))
PHOTO = phone_jpeg(640, 480)


@dataclass
class ChaosConfig:
    reports: int = 10_000
    rate_per_s: float = 12.0
    #: How often each kind of fault happens.
    repeats: int = 2
    broker_pause_s: float = 20.0
    smtp_away_s: float = 30.0
    postgres_down_s: float = 5.0
    #: Random wait before each fault.
    gap_s: tuple[float, float] = (5.0, 20.0)
    #: Wait until the stack converged before the next fault (clean figures per fault); off,
    #: faults follow each other after the gap alone.
    settle_between_faults: bool = True
    staff_share: float = 0.3
    notifier_dead_after_s: float = 30.0
    notifier_heartbeat_s: float = 5.0
    resubmit_after_s: float = 120.0
    #: How long the stack may take to converge: after each fault when settling between them,
    #: else once for everything after the load.
    converge_timeout_s: float = 300.0
    seed: int = 15
    keep_files: bool = False
    #: Where the processes log (each to ``<name>.log``); None: into the run's temporary folder,
    #: removed with it unless ``keep_files``.
    log_dir: Path | None = None
    service_log_level: str = "WARNING"
    #: Re-announce after a lost broker with the two CLIs (new interpreters), as an operator
    #: would, instead of their functions in this process (see :meth:`Stack.reannounce`).
    reannounce_as_cli: bool = False


# --- The stack ---------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL instance for the suite alone (PostGIS comes with the installed server)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # the server refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.root)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")  # fmt: skip

    def start(self) -> None:
        # fsync off: the suite kills the server, never the machine; the page cache survives.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "120", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@dataclass
class Stack:
    work: Path
    postgres: PrivatePostgres
    kafka_port: int
    smtp_port: int
    ports: dict[str, int]
    config: ChaosConfig
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    broker_started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: Since when the running broker may hold events a consumer has not read yet: its start,
    #: or, once a re-announcement refilled it, that re-announcement's ``since`` (it published
    #: older events into it), until the stack was seen converged. A lost broker is re-announced
    #: from here: from its start alone, a broker lost again before the consumers had read its
    #: refill took the only copy of the older events with it (contacts and mails missing for
    #: good while every service looked healthy).
    broker_holds_since: datetime | None = None

    @property
    def database_url(self) -> str:
        return self.postgres.dsn("chaos").replace("postgresql://", "postgresql+asyncpg://")

    @property
    def maildir(self) -> Path:
        return self.work / "mail"

    @property
    def logs(self) -> Path:
        return self.config.log_dir or self.work / "log"

    def env(self) -> dict[str, str]:
        env = service_env(
            self.ports, self.database_url, f"127.0.0.1:{self.kafka_port}", self.smtp_port
        )
        env["INTAKE_API_KEYS"] = json.dumps([API_KEY])
        for service in self.ports:
            env[service.upper().replace("-", "_") + "_LOG_LEVEL"] = self.config.service_log_level
        c = self.config
        env |= {
            "INTAKE_PHOTO_DIR": str(self.work / "photos"),
            "INTAKE_RESUBMIT_AFTER_S": str(c.resubmit_after_s),
            # Every client of the suite comes from one address.
            "INTAKE_RATE_LIMIT_PER_ADDRESS": "100000000",
            "INTAKE_RATE_LIMIT_PER_EMAIL": "100000000",
            "NOTIFIER_INSTANCE_DEAD_AFTER_S": str(c.notifier_dead_after_s),
            "NOTIFIER_INSTANCE_HEARTBEAT_INTERVAL_S": str(c.notifier_heartbeat_s),
        }
        return env

    def start_service(self, service: str) -> None:
        module = f"{service.replace('-', '_')}.cli"
        self.processes[service] = spawn(
            service, python_module(module, "serve"), self.env(), log_dir=self.logs
        )

    def start_broker(self) -> None:
        self.processes["broker"] = start_broker(self.kafka_port, log_dir=self.logs)
        self.broker_started_at = datetime.now(UTC)
        if self.broker_holds_since is None:
            self.broker_holds_since = self.broker_started_at

    def consumers_caught_up(self) -> None:
        """Everything accepted so far was seen routed and mailed: the running broker holds
        nothing older than its start that a consumer has yet to read."""
        self.broker_holds_since = self.broker_started_at

    def start_smtp(self) -> None:
        self.processes["smtp"] = spawn(
            "smtp",
            python_module("devstack.mailserver", f"127.0.0.1:{self.smtp_port}", str(self.maildir)),
            log_dir=self.logs,
        )

    def signal(self, name: str, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[name].pid, sig)

    def kill(self, name: str) -> None:
        self.signal(name, signal.SIGKILL)
        self.processes[name].wait(30)

    async def healthy(self, service: str, timeout_s: float = 180.0) -> None:
        """Until the service answers /healthz and its consumers have joined their groups."""
        url = f"http://127.0.0.1:{self.ports[service]}/healthz"
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    answer = await client.get(url)
                    if answer.status_code == 200 and answer.json().get("consumers") == "assigned":
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} not healthy within {timeout_s}s")
                await asyncio.sleep(0.3)

    async def topics(self) -> None:
        bootstrap = f"127.0.0.1:{self.kafka_port}"
        await wait_for_broker(bootstrap, timeout_s=60)
        await ensure_topics(bootstrap)

    async def reannounce(self, since: datetime) -> None:
        """The Kafka recovery procedure (docs/operations.md), as the local stack runs it: both
        ``reannounce --since`` commands. By default their functions run in this process (in a
        thread each, with its own event loop), not as new interpreters: under load, starting
        the two CLIs (imports: seconds of CPU each) had been most of the time from a new broker
        to convergence, and it measures the operator's tooling, not the stack's recovery
        (``reannounce_as_cli`` measures it that way)."""

        async def one(service: str) -> None:
            started = time.monotonic()
            # Until it succeeds: with faults overlapping, the database may be away meanwhile.
            while True:
                if self.config.reannounce_as_cli:
                    ok, output = await self._reannounce_cli(service, since)
                else:
                    ok, output = await asyncio.to_thread(self._reannounce_here, service, since)
                log.info(
                    "%s reannounce (%s, %.1fs): %s",
                    service,
                    "done" if ok else "failed",
                    time.monotonic() - started,
                    output[-300:],
                )
                if ok:
                    return
                await asyncio.sleep(1.0)

        await asyncio.gather(one("intake"), one("geo-router"))

    async def _reannounce_cli(self, service: str, since: datetime) -> tuple[bool, str]:
        module = f"{service.replace('-', '_')}.cli"
        process = await asyncio.create_subprocess_exec(
            *python_module(module, "reannounce", "--since", since.isoformat()),
            cwd=ROOT,
            env={**os.environ, **self.env()},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        return process.returncode == 0, output.decode().strip()

    def _reannounce_here(self, service: str, since: datetime) -> tuple[bool, str]:
        """What ``<service> reannounce --since`` runs, with the service's default settings."""
        from geo_router.cli import reannounce as reannounce_decisions
        from intake.cli import _reannounce as reannounce_events
        from intake.settings import IntakeSettings

        try:
            if service == "intake":
                kept = timedelta(days=IntakeSettings.model_fields["contact_kept_days"].default)
                staged = asyncio.run(reannounce_events(self.database_url, since, kept))
                return True, f"{staged} events staged again"
            staged = asyncio.run(reannounce_decisions(self.database_url, since))
            return True, f"{staged} decisions staged again"
        except Exception as exc:
            return False, repr(exc)

    def stop_all(self) -> None:
        for name in [*SERVICES, "smtp", "broker"]:
            if name in self.processes:
                self.signal(name, signal.SIGCONT)
                self.signal(name, signal.SIGKILL)
        with contextlib.suppress(subprocess.CalledProcessError):
            self.postgres.stop("immediate")


async def start_stack(config: ChaosConfig, work: Path) -> Stack:
    stack = Stack(
        work=work,
        postgres=PrivatePostgres(Path(tempfile.mkdtemp(prefix="mm-chaos-pg-")), free_port()),
        kafka_port=free_port(),
        smtp_port=free_port(),
        ports={s: free_port() for s in SERVICES},
        config=config,
    )
    try:
        await asyncio.to_thread(stack.postgres.init)
        await asyncio.to_thread(stack.postgres.start)
        conn = await asyncpg.connect(stack.postgres.dsn())
        await conn.execute('CREATE DATABASE "chaos"')
        await conn.close()
        from geo_router.cli import MIGRATIONS as GEO_ROUTER
        from geo_router.cli import load_jurisdiction
        from intake.cli import MIGRATIONS as INTAKE
        from notifier.cli import MIGRATIONS as NOTIFIER

        for migrations in (INTAKE, GEO_ROUTER, NOTIFIER):
            await asyncio.to_thread(upgrade, migrations, stack.database_url)
        await load_jurisdiction(stack.database_url, ROOT / "data/leipzig/jurisdiction.yaml")
        stack.start_broker()
        await stack.topics()
        stack.start_smtp()
        for service in SERVICES:
            stack.start_service(service)
        for service in SERVICES:
            await stack.healthy(service)
    except BaseException:
        stack.stop_all()
        raise
    return stack


async def staff_token(stack: Stack) -> str:
    from intake.adapters import staff

    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            _, token = await staff.create_account(conn, "chaos-admin", [], is_admin=True)
    finally:
        await engine.dispose()
    return token


# --- The load ---------------------------------------------------------------------------


@dataclass
class Accepted:
    email: str
    kind: str
    at: float


@dataclass
class Load:
    """What the clients did and saw."""

    statuses: Counter[str] = field(default_factory=Counter)
    connection_errors: Counter[str] = field(default_factory=Counter)
    accepted: dict[str, Accepted] = field(default_factory=dict)
    gave_up: int = 0
    transitions: list[tuple[str, str]] = field(default_factory=list)
    transitions_refused: Counter[str] = field(default_factory=Counter)


RETRYABLE = {503}


async def _call(
    load: Load, what: str, send: Callable[[], Awaitable[httpx.Response]], deadline: float
) -> httpx.Response | None:
    """Call until answered with anything but 503 (or a refused connection) or the deadline."""
    while True:
        try:
            answer = await send()
        except httpx.TransportError as exc:
            load.connection_errors[f"{what}:{type(exc).__name__}"] += 1
        else:
            load.statuses[f"{what}:{answer.status_code}"] += 1
            if answer.status_code not in RETRYABLE:
                return answer
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(1.0)


async def submit_one(
    client: httpx.AsyncClient, load: Load, n: int, rng: random.Random
) -> str | None:
    email = f"r{n}@chaos.example"
    lat = round(rng.uniform(*AREA[0]), 6)
    long = round(rng.uniform(*AREA[1]), 6)
    code = rng.choice(CODES)
    fields = {"service_code": code, "lat": lat, "long": long, "email": email,
              "description": f"Chaos {n}"}  # fmt: skip
    kind = ("json", "json", "json", "multipart", "open311", "open311")[n % 6]
    headers = {"X-Acknowledge-Duplicate": "true", "Idempotency-Key": str(uuid4())}

    async def send() -> httpx.Response:
        if kind == "json":
            return await client.post("/api/v1/reports", json=fields, headers=headers)
        if kind == "multipart":
            return await client.post(
                "/api/v1/reports",
                data={k: str(v) for k, v in fields.items()},
                files=[("photos", ("photo.jpg", PHOTO, "image/jpeg"))],
                headers=headers,
            )
        # GeoReport v2 itself knows no retry safety; intake takes the same Idempotency-Key
        # there, so a retry after a lost answer does not file the report twice.
        form = {**{k: str(v) for k, v in fields.items()}, "api_key": API_KEY}
        return await client.post(
            "/open311/v2/requests.json",
            data=form,
            headers={"Idempotency-Key": headers["Idempotency-Key"]},
        )

    answer = await _call(load, kind, send, time.monotonic() + 300)
    if answer is None:
        load.gave_up += 1
        return None
    if answer.status_code // 100 != 2:
        return None
    body = answer.json()
    report_id = body[0]["service_request_id"] if kind == "open311" else body["id"]
    load.accepted[report_id] = Accepted(email, kind, time.time())
    return str(report_id)


async def work_ticket(
    client: httpx.AsyncClient, load: Load, report_id: str, token: str, rng: random.Random
) -> None:
    """Staff take the ticket on and resolve it; a ticket not yet routed is tried again. A 409
    for a transition that had taken place already (its answer was lost with a killed intake)
    counts as done, not as a 2xx."""
    headers = {"Authorization": f"Bearer {token}"}
    for status, note in (("in_progress", None), ("resolved", "Erledigt.")):
        await asyncio.sleep(rng.uniform(2, 8))
        body: dict[str, Any] = {"status": status}
        if note:
            body["public_note"] = note
        deadline = time.monotonic() + 300
        while True:
            answer = await _call(
                load,
                "staff",
                functools.partial(
                    client.post,
                    f"/api/v1/staff/tickets/{report_id}/transitions",
                    json=body,
                    headers=headers,
                ),
                deadline,
            )
            if answer is not None and answer.status_code // 100 == 2:
                load.transitions.append((report_id, status))
                break
            if answer is None or time.monotonic() > deadline:
                load.transitions_refused[f"{status}:gave_up"] += 1
                return
            load.transitions_refused[f"{status}:{answer.status_code}"] += 1
            if answer.status_code not in (404, 409):
                return
            now = await _call(
                load, "status", functools.partial(client.get, f"/api/v1/reports/{report_id}"),
                deadline,
            )  # fmt: skip
            current = (
                now.json().get("status") if now is not None and now.status_code == 200 else None
            )
            if current == status:
                load.transitions_refused[f"{status}:applied_answer_lost"] += 1
                break
            if current not in ("received", None):  # not routed yet: try again
                return
            await asyncio.sleep(2.0)


async def run_load(stack: Stack, load: Load, token: str, rng: random.Random) -> None:
    """Reports at an even rate (open loop: a slow answer does not slow the next one)."""
    c = stack.config
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    base = f"http://127.0.0.1:{stack.ports['intake']}"
    async with httpx.AsyncClient(base_url=base, timeout=15, limits=limits) as client:
        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()

        async def one(n: int) -> None:
            report_id = await submit_one(client, load, n, rng)
            if report_id is not None and rng.random() < c.staff_share:
                await work_ticket(client, load, report_id, token, rng)

        for n in range(c.reports):
            await asyncio.sleep(max(0.0, started + n / c.rate_per_s - time.monotonic()))
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)


# --- Observing ----------------------------------------------------------------------------


@dataclass
class Mailbox:
    """The Maildir as far as read: (recipient, event id) of every mail, in arrival order."""

    folder: Path
    seen: set[str] = field(default_factory=set)
    mails: list[tuple[str, str]] = field(default_factory=list)

    def read(self) -> list[tuple[str, str]]:
        parser = BytesHeaderParser()
        new = self.folder / "new"
        for entry in os.scandir(new) if new.is_dir() else ():
            if entry.name in self.seen:
                continue
            with open(entry.path, "rb") as f:
                headers = parser.parsebytes(f.read(8192))
            self.seen.add(entry.name)
            message_id = str(headers.get("Message-ID", ""))
            # <event id>.<contact id>@maengelmelder
            self.mails.append((str(headers.get("To", "")), message_id.strip("<").split(".")[0]))
        return self.mails


@dataclass
class Snapshot:
    stored: int
    unrouted: int
    expected_mails: set[tuple[str, str]]
    contacts: set[str]


async def snapshot(stack: Stack, load: Load, report_ids: list[str], until: datetime) -> Snapshot:
    conn = await asyncpg.connect(stack.postgres.dsn("chaos"), timeout=5)
    try:
        stored, unrouted = await conn.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE status = 'received')"
            " FROM intake.reports WHERE id = ANY($1::uuid[])",
            report_ids,
        )
        events = await conn.fetch(
            "SELECT report_id::text, event->>'event_id' AS event_id FROM intake.status_history"
            " WHERE report_id = ANY($1::uuid[]) AND event->>'event_type' = 'ReportStatusChanged'"
            " AND changed_at <= $2",
            report_ids,
            until,
        )
        contacts = await conn.fetch(
            "SELECT DISTINCT report_id::text FROM notifier.contacts"
            " WHERE report_id = ANY($1::uuid[])",
            report_ids,
        )
    finally:
        await conn.close()
    return Snapshot(
        stored,
        unrouted,
        {(load.accepted[r["report_id"]].email, r["event_id"]) for r in events},
        {r["report_id"] for r in contacts},
    )


@dataclass
class Observer:
    stack: Stack
    load: Load
    mailbox: Mailbox
    #: Re-announcements still running.
    recoveries: list[asyncio.Task[None]] = field(default_factory=list)

    async def converged(self, until: float) -> dict[str, int] | None:
        """None when everything accepted before ``until`` (epoch s) is stored, routed and
        mailed; else what is still missing. Contacts a lost broker held count too: intake
        re-announces them."""
        ids = [r for r, a in self.load.accepted.items() if a.at <= until]
        try:
            s = await snapshot(self.stack, self.load, ids, datetime.fromtimestamp(until, UTC))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return {"database_unreachable": 1}
        received = set(self.mailbox.read())
        state = {
            "not_stored": len(ids) - s.stored,
            "unrouted": s.unrouted,
            "contacts_missing": sum(1 for r in ids if r not in s.contacts),
            "mails_missing": len(s.expected_mails - received),
        }
        return None if not any(state.values()) else state

    async def wait_converged(self, until: float, deadline: float) -> float | None:
        """Seconds from ``until`` to convergence, None if not by ``deadline`` (monotonic)."""
        while True:
            state = await self.converged(until)
            if state is None:
                return time.time() - until
            if time.monotonic() > deadline:
                log.warning("not converged by the deadline: %s", state)
                return None
            await asyncio.sleep(1.0)


# --- The faults ---------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    started: float
    ended: float = 0.0
    converged_after_s: float | None = None
    #: A lost broker's: how long both re-announcements took, from the new broker's start.
    reannounced_after_s: float | None = None


async def inject(stack: Stack, observer: Observer, kind: str) -> Fault:
    c = stack.config
    fault = Fault(kind, time.time())
    if kind.startswith("kill_"):
        service = kind.removeprefix("kill_").replace("_", "-")
        await asyncio.to_thread(stack.kill, service)
        stack.start_service(service)
    elif kind == "postgres_immediate":
        await asyncio.to_thread(stack.postgres.stop, "immediate")
        await asyncio.sleep(c.postgres_down_s)
        await asyncio.to_thread(stack.postgres.start)
    elif kind == "broker_pause":
        stack.signal("broker", signal.SIGSTOP)
        await asyncio.sleep(c.broker_pause_s)
        stack.signal("broker", signal.SIGCONT)
    elif kind == "broker_lost":
        lost_since = stack.broker_holds_since or stack.broker_started_at
        await asyncio.to_thread(stack.kill, "broker")
        await asyncio.to_thread(stack.start_broker)
        await stack.topics()
        fault.ended = time.time()

        async def reannounce() -> None:
            await stack.reannounce(lost_since)
            fault.reannounced_after_s = time.time() - fault.ended

        recovery = reannounce()
        if c.settle_between_faults:
            await recovery
        else:  # the next faults need not wait for it
            observer.recoveries.append(asyncio.create_task(recovery))
        return fault
    elif kind == "smtp_away":
        await asyncio.to_thread(stack.kill, "smtp")
        await asyncio.sleep(c.smtp_away_s)
        stack.start_smtp()
    else:
        raise ValueError(kind)
    fault.ended = time.time()
    return fault


async def run_faults(stack: Stack, observer: Observer, rng: random.Random) -> list[Fault]:
    c = stack.config
    plan = [kind for kind in FAULTS for _ in range(c.repeats)]
    rng.shuffle(plan)
    faults = []
    for kind in plan:
        await asyncio.sleep(rng.uniform(*c.gap_s))
        fault = await inject(stack, observer, kind)
        log.warning("fault %s: %.1fs", kind, fault.ended - fault.started)
        faults.append(fault)
        if c.settle_between_faults:
            fault.converged_after_s = await observer.wait_converged(
                fault.ended, time.monotonic() + c.converge_timeout_s
            )
            if fault.converged_after_s is not None:
                stack.consumers_caught_up()
    return faults


# --- The run --------------------------------------------------------------------------------


async def run(config: ChaosConfig, out: Path | None = None) -> dict[str, Any]:
    rng = random.Random(config.seed)  # noqa: S311 - a load pattern, no secret
    work = Path(tempfile.mkdtemp(prefix="mm-chaos-"))
    began = time.time()
    stack = await start_stack(config, work)
    try:
        token = await staff_token(stack)
        load = Load()
        observer = Observer(stack, load, Mailbox(stack.maildir))
        load_task = asyncio.create_task(run_load(stack, load, token, rng))
        faults = await run_faults(stack, observer, rng)
        last_fault_end = max(f.ended for f in faults)
        await asyncio.gather(*observer.recoveries)
        await load_task
        load_end = time.time()
        # One deadline for all that is still to converge, however many faults wait for it.
        deadline = time.monotonic() + config.converge_timeout_s
        if not config.settle_between_faults:  # each fault's convergence, measured afterwards
            for fault in faults:
                fault.converged_after_s = await observer.wait_converged(fault.ended, deadline)
        final = await observer.wait_converged(load_end, deadline)
        results = await evaluate(stack, observer, faults, last_fault_end, final, load_end)
    finally:
        stack.stop_all()
        shutil.rmtree(stack.postgres.root, ignore_errors=True)
        if not config.keep_files:
            shutil.rmtree(work, ignore_errors=True)
    results["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    results["duration_s"] = round(time.time() - began, 1)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "python": platform.python_version(),
    }
    if out is not None:
        await asyncio.to_thread(_write_json, out, results)
    return results


def _write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


async def evaluate(
    stack: Stack,
    observer: Observer,
    faults: list[Fault],
    last_fault_end: float,
    final_s: float | None,
    load_end: float,
) -> dict[str, Any]:
    load = observer.load
    ids = list(load.accepted)
    conn = await asyncpg.connect(stack.postgres.dsn("chaos"))
    try:
        reports = {
            str(r["id"]): r
            for r in await conn.fetch(
                "SELECT id, status, (SELECT internal_note FROM intake.status_history h"
                "  WHERE h.report_id = r.id AND h.changed_by = 'geo-router'"
                "  ORDER BY h.id LIMIT 1) AS routing FROM intake.reports r"
                " WHERE id = ANY($1::uuid[])",
                ids,
            )
        }
        history = {
            (str(h["report_id"]), h["status"])
            for h in await conn.fetch(
                "SELECT report_id, status FROM intake.status_history"
                " WHERE report_id = ANY($1::uuid[]) AND changed_by NOT IN ('geo-router', 'citizen')",
                [r for r, _ in load.transitions],
            )
        }
    finally:
        await conn.close()
    snap = await snapshot(stack, load, ids, datetime.now(UTC))
    received = observer.mailbox.read()
    counts = Counter(received)
    lost_contacts = {r for r in ids if r not in snap.contacts}
    expected = snap.expected_mails
    routing_failed = [r for r in reports.values() if r["status"] == "rejected" and r["routing"]
                      and r["routing"].startswith("routing failed")]  # fmt: skip
    server_errors = sum(
        n for key, n in load.statuses.items() if key.endswith(tuple(f":5{d:02d}" for d in range(100)))
        and not key.endswith(":503")
    )  # fmt: skip
    notifier_kills = sum(1 for f in faults if f.kind == "kill_notifier")
    by_kind: dict[str, Any] = {}
    for kind in FAULTS:
        times = [f.converged_after_s for f in faults if f.kind == kind]
        done = [t for t in times if t is not None]
        by_kind[kind] = {
            "times": [round(t, 1) if t is not None else None for t in times],
            "max_s": round(max(done), 1) if done else None,
            "median_s": round(median(done), 1) if done else None,
            "not_converged": len(times) - len(done),
        }
    return {
        "accepted": len(ids),
        "lost": sum(1 for r in ids if r not in reports),
        "unassigned": sum(1 for r in reports.values() if r["status"] == "received"),
        "routing_failed_with_reason": len(routing_failed),
        "accepted_by_kind": dict(Counter(a.kind for a in load.accepted.values())),
        "gave_up": load.gave_up,
        "http_statuses": dict(sorted(load.statuses.items())),
        "server_errors_other_than_503": server_errors,
        "connection_errors": dict(load.connection_errors),
        "staff_transitions": {
            "accepted": len(load.transitions),
            "lost": sum(1 for t in load.transitions if t not in history),
            "refused": dict(load.transitions_refused),
        },
        "mails": {
            "expected": len(expected),
            "delivered": len(set(received) & expected),
            "missing": len(expected - set(received)),
            "duplicates": sum(n - 1 for n in counts.values() if n > 1),
            "duplicate_bound": notifier_kills * 8,
            "unexpected": len(set(received) - snap.expected_mails),
            "reporters_without_contact_at_notifier": len(lost_contacts),
        },
        "time_to_converge_s": by_kind,
        "faults": [
            {
                "kind": f.kind,
                "at_s": round(f.started - faults[0].started, 1),
                "duration_s": round(f.ended - f.started, 1),
                "converged_after_s": None
                if f.converged_after_s is None
                else round(f.converged_after_s, 1),
                **(
                    {"reannounced_after_s": round(f.reannounced_after_s, 1)}
                    if f.reannounced_after_s is not None
                    else {}
                ),
            }
            for f in faults
        ],
        "after_last_fault": {
            # Everything accepted by the end of the last fault routed and mailed this long after.
            "converged_after_s": _rounded(_last(faults).converged_after_s),
            "load_ended_after_last_fault_s": round(load_end - last_fault_end, 1),
            "converged_after_load_end_s": _rounded(final_s),
        },
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _last(faults: list[Fault]) -> Fault:
    return max(faults, key=lambda f: f.ended)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.chaos")
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=12.0, help="reports per second")
    parser.add_argument("--repeats", type=int, default=2, help="times each kind of fault happens")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos.json")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep-files", action="store_true", help="keep logs and Maildir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for chatty in ("httpx", "aiokafka", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    config = ChaosConfig(
        reports=args.reports,
        rate_per_s=args.rate,
        repeats=args.repeats,
        seed=args.seed,
        keep_files=args.keep_files,
    )
    results = asyncio.run(run(config, args.out))
    print(json.dumps({k: v for k, v in results.items() if k not in ("faults", "config")}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
