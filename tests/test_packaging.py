"""Each package installs and starts alone, as its image does: a workspace puts every member's
dependencies into one environment, so a module importing something only another member (or the
dev group) declares works here and fails in the image (intake's httpx did: `intake serve`
stopped at start-up with ModuleNotFoundError).

For every package under ``services/`` and for ``shared``: install it with its dependencies from
the lock (``uv sync --frozen --no-dev --no-editable --package``) into a fresh environment,
import every module of it (migrations included) with nothing else on the path, and run each of
its commands with ``--help``. While no Docker engine runs here this stands in for building the
images. Run it alone with ``pytest -m packaging``."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.packaging
ROOT = Path(__file__).resolve().parent.parent

#: Imports every module of the package named in argv[1] (and its migrations, which only
#: alembic loads, by file), reporting every failure, not just the first.
IMPORT_ALL = """
import importlib, importlib.util, pathlib, pkgutil, sys, traceback
package = importlib.import_module(sys.argv[1])
failures = []
names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".",
                                               onerror=failures.append)]
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        failures.append(traceback.format_exc())
for path in pathlib.Path(package.__path__[0]).glob("migrations/versions/*.py"):
    try:
        spec = importlib.util.spec_from_file_location(f"_migration_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except Exception:
        failures.append(traceback.format_exc())
print(len(names), "modules")
sys.exit("\\n".join(map(str, failures)) or None)
"""


@dataclass(frozen=True)
class Package:
    directory: Path
    name: str
    import_name: str
    commands: tuple[str, ...]
    #: Distribution names of the declared dependencies, normalised.
    dependencies: frozenset[str]

    @classmethod
    def at(cls, directory: Path) -> Package:
        project = tomllib.loads((directory / "pyproject.toml").read_text())
        [source] = [p.parent for p in directory.glob("src/*/__init__.py")]
        return cls(
            directory,
            project["project"]["name"],
            source.name,
            tuple(project["project"].get("scripts", {})),
            frozenset(_normalised(Requirement(r).name) for r in project["project"]["dependencies"]),
        )

    @property
    def source(self) -> Path:
        return self.directory / "src" / self.import_name

    def imported_distributions(self) -> dict[str, set[str]]:
        """Third-party distributions the package's modules import, each with where."""
        distributions = packages_distributions()
        found: dict[str, set[str]] = {}
        for path in self.source.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.partition(".")[0]
                    if top in sys.stdlib_module_names or top in FIRST_PARTY:
                        continue
                    for distribution in distributions.get(top, [top]):
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        found.setdefault(_normalised(distribution), set()).add(where)
        return found


def _normalised(name: str) -> str:
    return str(canonicalize_name(name))


def packages() -> list[Package]:
    """shared and every service, the ones added later (services/web) included."""
    found = [ROOT / "shared", *sorted(p.parent for p in ROOT.glob("services/*/pyproject.toml"))]
    return [Package.at(directory) for directory in found]


SHARED = Package.at(ROOT / "shared")
FIRST_PARTY = {"__future__", *(p.import_name for p in packages())}


@pytest.mark.parametrize("package", packages(), ids=lambda p: p.name)
def test_each_package_declares_what_it_imports(package: Package) -> None:
    """A service built on shared may use what shared, its platform, declares (FastAPI, FastStream,
    SQLAlchemy, ...); anything else it imports it declares itself, and so does shared. Found
    statically, this also catches a module that only another dependency happens to pull in."""
    uses_shared = SHARED.name in package.dependencies
    allowed = package.dependencies | (SHARED.dependencies if uses_shared else frozenset())
    undeclared = {
        distribution: sorted(where)
        for distribution, where in package.imported_distributions().items()
        if distribution not in allowed
    }
    assert not undeclared, f"{package.name} imports, without declaring them: {undeclared}"


def _run(command: list[str | Path], *, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        shown = " ".join(str(part) for part in command)
        raise AssertionError(f"`{shown}` failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result.stdout


def _install_and_start(package: Package, into: Path) -> None:
    # Nothing of this checkout may leak in: no virtualenv of the workspace, no PYTHONPATH.
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("UV_")
    }
    environment = into / "venv"
    # Built afresh from the checkout: uv's cache keeps a first-party wheel across edits of its
    # modules (its key is the pyproject file), which would test an older state of the code.
    rebuilt = [arg for p in packages() for arg in ("--reinstall-package", p.name)]
    _run(
        [
            "uv",
            "sync",
            "--frozen",
            "--no-dev",
            "--no-editable",
            "--package",
            package.name,
            "-q",
            *rebuilt,
        ],
        cwd=ROOT,
        env={**clean, "UV_PROJECT_ENVIRONMENT": str(environment)},
    )
    # -I: neither the working directory nor the user's site-packages are on the path.
    imported = _run(
        [environment / "bin" / "python", "-I", "-c", IMPORT_ALL, package.import_name],
        cwd=into,
        env=clean,
    )
    assert int(imported.split()[0]) > 1, f"found no modules of {package.import_name}: {imported}"
    for command in package.commands:
        help_text = _run([environment / "bin" / command, "--help"], cwd=into, env=clean)
        assert "usage:" in help_text.lower(), help_text


@pytest.fixture(scope="module")
def installations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[None]]]:
    """All packages at once, in threads: most of the time is spent waiting for uv and imports."""
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2))) as pool:
        yield {
            p.name: pool.submit(_install_and_start, p, tmp_path_factory.mktemp(p.import_name))
            for p in packages()
        }


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX virtualenv layout")
@pytest.mark.parametrize("package", packages(), ids=lambda p: p.name)
async def test_each_package_installs_alone_imports_and_starts(
    package: Package, installations: dict[str, Future[None]]
) -> None:
    # Awaited, not blocked on: the session's event loop keeps serving the test stack's
    # consumers meanwhile (blocked for minutes, their fetches had timed out).
    await asyncio.wrap_future(installations[package.name])
