"""The container images (no Docker engine here): each Dockerfile installs exactly the lock
(`uv sync --frozen --no-dev --package …`, never `uv pip install`), runs as an unprivileged user
and has a HEALTHCHECK on the service's /healthz; and its `uv sync` line, run as written on a copy
of the workspace, gives an environment that has every module the service imports (from its own
declared dependencies, not from the development environment)."""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.processes import ROOT

IMAGES = {
    "intake": (ROOT / "services/intake/Dockerfile", ["intake"], 8000),
    "geo-router": (ROOT / "services/geo-router/Dockerfile", ["geo_router"], 8001),
    "notifier": (ROOT / "services/notifier/Dockerfile", ["notifier"], 8002),
    "web": (ROOT / "services/web/Dockerfile", ["web"], 8003),
    "migrate": (ROOT / "deploy/migrate/Dockerfile", ["intake", "geo_router", "notifier"], None),
}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def sync_command(dockerfile: Path) -> list[str]:
    runs = [arg for op, arg in instructions(dockerfile) if op == "RUN" and "uv sync" in arg]
    assert len(runs) == 1, dockerfile
    return shlex.split(runs[0])


@pytest.mark.parametrize("image", IMAGES)
def test_the_image_installs_the_lock_and_runs_unprivileged(image: str) -> None:
    dockerfile, modules, port = IMAGES[image]
    steps = instructions(dockerfile)
    assert "uv pip" not in dockerfile.read_text()
    command = sync_command(dockerfile)
    assert {"--frozen", "--no-dev"} <= set(command)
    packages = {command[i + 1] for i, arg in enumerate(command) if arg == "--package"}
    assert packages == {f"mangelmelder-{m.replace('_', '-')}" for m in modules}
    final_stage = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    users = [arg for op, arg in final_stage if op == "USER"]
    assert users, "the final stage names its user"
    assert users[-1] not in {"root", "0"}
    checks = [arg for op, arg in final_stage if op == "HEALTHCHECK"]
    assert len(checks) == 1
    if port is None:
        assert checks[0] == "NONE"  # a one-off job: its exit code is its health
    else:
        assert f"127.0.0.1:{port}/healthz" in checks[0]


# The migration image installs the three packages together; each alone is the stricter test.
@pytest.mark.parametrize("image", ["intake", "geo-router", "notifier"])
def test_the_locked_environment_starts_the_service(image: str, tmp_path: Path) -> None:
    dockerfile, modules, _ = IMAGES[image]
    workspace = tmp_path / "src"
    for part in ("pyproject.toml", "uv.lock", "shared", "services"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, workspace / part, ignore=shutil.ignore_patterns("tests"))
        else:
            workspace.mkdir(exist_ok=True)
            shutil.copy(source, workspace / part)
    venv = tmp_path / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_LINK_MODE": "hardlink",  # fast from the warm cache; the image copies
        "UV_OFFLINE": "1",
        "UV_COMPILE_BYTECODE": "0",
    }
    env.pop("VIRTUAL_ENV", None)
    command = [*sync_command(dockerfile), "--python", sys.executable, "-q"]
    subprocess.run(command, cwd=workspace, env=env, check=True, timeout=300)
    # Every module the service's and shared's code import is found in that environment
    # (found, not imported: importing would compile every dependency, minutes on a busy machine).
    wanted = sorted(set().union(*(imported_modules(m) for m in modules)))
    probe = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, *wanted],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [], f"missing from the image of {image}"


def imported_modules(package: str) -> set[str]:
    """Top-level modules imported anywhere in a service package and in shared (not stdlib)."""
    sources = [*(ROOT / "services").glob(f"*/src/{package}"), ROOT / "shared" / "src"]
    found = set()
    for source in sources:
        for path in source.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__"}
