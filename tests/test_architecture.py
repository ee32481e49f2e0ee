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


def test_geo_router_handlers_depend_on_ports_not_on_sql_or_adapters() -> None:
    """The use cases reach the database, the outbox and the routing index through
    geo_router.ports only, so that they run against fakes (services/geo-router/tests/unit)."""
    handlers = ROOT / "services" / "geo-router" / "src" / "geo_router" / "handlers.py"
    tree = ast.parse(handlers.read_text(encoding="utf-8"))
    modules = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert "geo_router.ports" in modules
    forbidden = {
        m
        for m in modules
        if m.split(".")[0] in {"sqlalchemy", "asyncpg", "shapely", "numpy"}
        or m.startswith(("geo_router.adapters", "mm_shared.outbox", "mm_shared.db"))
    }
    assert forbidden == set()
