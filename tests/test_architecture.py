"""Dependencies point one way: services → shared. Never back, never sideways."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"intake": "intake", "geo-router": "geo_router", "notifier": "notifier"}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def imported_top_level_modules(package_dir: Path) -> set[str]:
    return set().union(*(imports_of(path) for path in package_dir.rglob("*.py")))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    package = SERVICES[service]
    imports = imported_top_level_modules(ROOT / "services" / service / "src" / package)
    others = set(SERVICES.values()) - {package}
    assert imports & others == set()


def test_shared_imports_no_service() -> None:
    imports = imported_top_level_modules(ROOT / "shared" / "src" / "mm_shared")
    assert imports & set(SERVICES.values()) == set()


@pytest.mark.parametrize("service", SERVICES)
def test_the_domain_does_no_io(service: str) -> None:
    domain = ROOT / "services" / service / "src" / SERVICES[service] / "domain.py"
    io_modules = {"sqlalchemy", "asyncpg", "aiokafka", "faststream", "fastapi", "httpx"}
    assert imports_of(domain) & (io_modules | {"aiosmtplib", "geoalchemy2"}) == set()


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_names_another_services_tables(service: str) -> None:
    package = SERVICES[service]
    source = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (ROOT / "services" / service / "src" / package).rglob("*.py")
    )
    for other_schema in set(SERVICES.values()) - {package}:
        assert not re.search(rf"\b{other_schema}\.[a-z_]+", source), other_schema


def test_web_imports_no_service_package() -> None:
    """Web is a client of the services' public HTTP APIs, like the city's app: it may use the
    shared contracts, never a service's code."""
    imports = imported_top_level_modules(ROOT / "services" / "web" / "src" / "web")
    assert "mm_shared" in imports
    assert imports & set(SERVICES.values()) == set()


def test_web_owns_no_data() -> None:
    """No schema, no broker: web reaches the platform only over HTTP."""
    imports = imported_top_level_modules(ROOT / "services" / "web" / "src" / "web")
    assert imports & {"sqlalchemy", "asyncpg", "aiokafka", "faststream", "alembic"} == set()


def modules_imported_by(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full dotted name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_intakes_handlers_depend_on_abstractions() -> None:
    """Intake's use cases see its repositories and unit of work through ``intake.ports``: no
    SQL, no concrete adapter (bootstrap.py injects those)."""
    handlers = ROOT / "services" / "intake" / "src" / "intake" / "handlers.py"
    imported = modules_imported_by(handlers)
    assert "sqlalchemy" not in imports_of(handlers)
    assert {
        m for m in imported if m == "intake.adapters" or m.startswith("intake.adapters.")
    } == set()
    assert "intake.ports" in imported


@pytest.mark.parametrize("router", ["api", "open311", "staff"])
def test_intakes_http_routes_leave_transactions_to_the_handlers(router: str) -> None:
    """Intake's HTTP routes parse, call a use case and represent its answer: they open no
    unit of work of their own (no SQL, no ``intake.adapters.db``)."""
    module = ROOT / "services" / "intake" / "src" / "intake" / "entrypoints" / f"{router}.py"
    imported = modules_imported_by(module)
    assert "sqlalchemy" not in imports_of(module)
    assert {m for m in imported if m.startswith("intake.adapters.db")} == set()
    assert "intake.handlers" in imported


def test_the_notifiers_handlers_depend_on_ports_not_on_the_database() -> None:
    """The notifier's use cases work through ``notifier.ports``: no SQLAlchemy, no adapter."""
    handlers = ROOT / "services" / "notifier" / "src" / "notifier" / "handlers.py"
    imported = modules_imported_by(handlers)
    assert not {m for m in imported if m.split(".")[0] == "sqlalchemy"}
    assert not {
        m for m in imported if m == "notifier.adapters" or m.startswith("notifier.adapters.")
    }
    assert "notifier.ports" in imported


def test_geo_router_handlers_depend_on_ports_not_on_sql_or_adapters() -> None:
    """The use cases reach the database, the outbox and the routing index through
    geo_router.ports only, so that they run against fakes (services/geo-router/tests/unit)."""
    handlers = ROOT / "services" / "geo-router" / "src" / "geo_router" / "handlers.py"
    imported = modules_imported_by(handlers)
    assert "geo_router.ports" in imported
    forbidden = {
        m
        for m in imported
        if m.split(".")[0] in {"sqlalchemy", "asyncpg", "shapely", "numpy"}
        or m.startswith(("geo_router.adapters", "mm_shared.outbox", "mm_shared.db"))
    }
    assert forbidden == set()
