"""``geo-router migrate | serve | load MANIFEST | import-areas FILE | reannounce --since TIME |
jurisdictions list | show CODE | retire CODE``.

The command line starts in well under a second: the GIS libraries, SQLAlchemy, the web server
and the service's frame are imported inside the commands that use them, not here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from geo_router.adapters.refusal import InvalidImport

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class UnknownJurisdiction(LookupError):
    pass


async def load_jurisdiction(
    database_url: str,
    manifest: Path,
    *,
    dry_run: bool = False,
    if_empty: bool = False,
    progress: bool = False,
) -> str:
    """Import a jurisdiction's settings, areas, offices and rules in one transaction, changing
    only what differs from what is loaded; returns a summary (with warnings)."""
    from geo_router.adapters import db, importer
    from geo_router.adapters.manifest import warnings as manifest_warnings
    from mm_shared.db import create_engine
    from mm_shared.events import RoutingConfigChanged
    from mm_shared.outbox import stage

    spec = importer.read_manifest(manifest)
    lines = [f"{spec.name} ({spec.code})"]
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            if if_empty and await importer.has_areas(conn, spec.code):
                await transaction.rollback()
                return f"{lines[0]}: already loaded, left as it is"
            geography = db.Geography(conn)
            before = await geography.version(spec.code)
            await importer.apply_manifest_settings(conn, spec)
            for level in spec.levels:
                features, repaired = importer.read_areas(
                    manifest.parent / level.file,
                    level.code_property,
                    level.name_property,
                    source_crs=level.source_crs,
                    progress=progress,
                )
                changes = await importer.replace_areas(
                    conn,
                    spec.code,
                    level.code,
                    features,
                    level_name=level.name,
                    rank=level.rank,
                    article=level.article,
                )
                lines.append(f"  {len(features)} areas of level {level.code} ({changes.summary()})")
                lines += [f"    repaired: {r}" for r in repaired]
            rule_changes = await importer.replace_offices_and_rules(conn, spec)
            lines.append(f"  {len(spec.offices)} offices, {rule_changes.summary()}")
            if await geography.version(spec.code) != before:
                # Running geo-router instances reload when the relay publishes this, i.e. after
                # commit: routing switches from the old set to the new one at once.
                await stage(conn, db.outbox, [RoutingConfigChanged(jurisdiction=spec.code)])
            else:
                lines.append("  nothing changed: no reload, rule ids and area versions kept")
            lines += [f"  warning: {w}" for w in manifest_warnings(spec)]
            if dry_run:
                await transaction.rollback()
                lines.append("  dry run: nothing was changed")
            else:
                await transaction.commit()
    finally:
        await engine.dispose()
    return "\n".join(lines)


async def import_areas(
    database_url: str,
    path: Path,
    *,
    jurisdiction: str,
    jurisdiction_name: str | None,
    level: str,
    level_name: str | None,
    rank: int | None,
    code_property: str,
    name_property: str,
    source_crs: str | None = None,
    article: str | None = None,
    dry_run: bool = False,
    progress: bool = False,
) -> str:
    """Replace one level of a jurisdiction's areas from a GeoJSON, GeoPackage or Shapefile, in
    one transaction, changing only the areas that differ."""
    from geo_router.adapters import db, importer
    from mm_shared.db import create_engine
    from mm_shared.events import RoutingConfigChanged
    from mm_shared.outbox import stage

    features, repaired = importer.read_areas(
        path, code_property, name_property, source_crs=source_crs, progress=progress
    )
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            geography = db.Geography(conn)
            before = await geography.version(jurisdiction)
            await importer.ensure_jurisdiction(conn, jurisdiction, jurisdiction_name)
            changes = await importer.replace_areas(
                conn,
                jurisdiction,
                level,
                features,
                level_name=level_name,
                rank=rank,
                article=article,
            )
            if await geography.version(jurisdiction) != before:
                await stage(conn, db.outbox, [RoutingConfigChanged(jurisdiction=jurisdiction)])
            lines = [f"{len(features)} areas of {jurisdiction} level {level} ({changes.summary()})"]
            lines += [f"  repaired: {r}" for r in repaired]
            if dry_run:
                await transaction.rollback()
                lines.append("dry run: nothing was changed")
            else:
                await transaction.commit()
    finally:
        await engine.dispose()
    return "\n".join(lines)


async def reannounce(database_url: str, since: datetime) -> int:
    from geo_router import handlers
    from geo_router.adapters import db
    from geo_router.adapters.index import History
    from mm_shared.db import create_engine
    from mm_shared.outbox import Outbox

    engine = create_engine(database_url, pool_size=2)
    try:
        outbox = Outbox.staging_only(engine, db.metadata, "geo-router")
        return await handlers.reannounce(db.unit_of_work_factory(outbox), History(engine), since)
    finally:
        await engine.dispose()


async def retire_jurisdiction(database_url: str, code: str) -> str:
    """Mark a jurisdiction retired and announce it (an empty outline, ``retired``): intake
    accepts no more reports there and routing refuses them. Its areas, offices and rules stay
    (past decisions stay explainable); loading its manifest again brings it back."""
    from geo_router import handlers
    from geo_router.adapters import db, importer
    from mm_shared.db import create_engine
    from mm_shared.events import RoutingConfigChanged
    from mm_shared.outbox import stage

    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            found = await db.Geography(conn).jurisdiction(code)
            if found is None:
                raise UnknownJurisdiction(code)
            already = found.retired_at is not None
            await importer.retire(conn, code)
            await stage(
                conn,
                db.outbox,
                [handlers.retirement(code, found.name), RoutingConfigChanged(jurisdiction=code)],
            )
    finally:
        await engine.dispose()
    if already:
        return f"{found.name} ({code}) was retired already; its retirement was announced again"
    return f"{found.name} ({code}) retired: no more reports are accepted or routed there"


def list_text(database_url: str) -> str:
    from geo_router.adapters import catalogue

    listed = asyncio.run(catalogue.list_jurisdictions(database_url))
    if not listed:
        return "no jurisdiction loaded"
    rows = [("code", "name", "status", "precedence", "areas", "offices", "rules")]
    rows += [
        (
            j.code,
            j.name,
            f"retired {j.retired_at:%Y-%m-%d}" if j.retired_at else "active",
            str(j.precedence),
            str(j.areas),
            str(j.offices),
            str(j.rules),
        )
        for j in listed
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def show_text(database_url: str, code: str) -> str:
    from geo_router.adapters import catalogue

    shown = asyncio.run(catalogue.show_jurisdiction(database_url, code))
    if shown is None:
        raise UnknownJurisdiction(code)
    j = shown.listed
    holidays = (
        "/".join(p for p in (shown.holidays_country, shown.holidays_subdivision) if p)
        or "(the service's default)"
    )
    lines = [
        f"{j.name} ({j.code})",
        f"  status: {f'retired since {j.retired_at:%Y-%m-%d %H:%M} UTC' if j.retired_at else 'active'}",
        f"  precedence: {j.precedence}",
        f"  categories switched off: {', '.join(shown.disabled_service_codes) or 'none'}",
        f"  mail sender name: {shown.mail_sender_name or '(the notifier default)'}",
        f"  public holidays: {holidays}",
        "  levels:",
    ]
    lines += [
        f"    {lv.rank}. {lv.code} ({lv.article} {lv.name}): {lv.areas} areas, version {lv.version}"
        for lv in shown.levels
    ] or ["    none"]
    lines.append(f"  offices ({len(shown.offices)}), {j.rules} rules:")
    lines += [
        f"    {o.code}: {o.public_name} <{o.email}>, {o.rules} rule{'' if o.rules == 1 else 's'}"
        for o in shown.offices
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geo-router")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations of geo-router's schema")
    sub.add_parser("serve", help="run the explain API and the routing consumer")
    load = sub.add_parser(
        "load",
        help="import a jurisdiction manifest (settings, areas, offices, rules); an unchanged "
        "manifest changes nothing",
    )
    load.add_argument("manifest", type=Path)
    load.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and report what would change, with warnings; change nothing",
    )
    load.add_argument(
        "--if-empty", action="store_true", help="do nothing if the jurisdiction has areas already"
    )
    again = sub.add_parser(
        "reannounce",
        help="publish again, with their original event ids, the routing decisions since TIME and "
        "every outline and office directory (after a broker lost messages); the running "
        "service's relay sends them",
    )
    again.add_argument(
        "--since", required=True, type=_since_time, help="ISO 8601, e.g. 2026-05-04T10:00Z"
    )
    areas = sub.add_parser(
        "import-areas", help="replace one level of areas from a GeoJSON, GeoPackage or Shapefile"
    )
    areas.add_argument("file", type=Path)
    areas.add_argument("--jurisdiction", required=True)
    areas.add_argument("--jurisdiction-name")
    areas.add_argument("--level", required=True, help="e.g. ortsteil")
    areas.add_argument("--level-name", help="e.g. Ortsteil (kept as it is when not given)")
    areas.add_argument(
        "--level-article",
        choices=["der", "die", "das"],
        help="for explanations: der Ortsteil, die Gemeinde (kept as it is when not given)",
    )
    areas.add_argument("--rank", type=int, help="1 = coarsest level (kept as it is when not given)")
    areas.add_argument("--code-property", required=True, help="feature property with the code")
    areas.add_argument("--name-property", required=True, help="feature property with the name")
    areas.add_argument("--source-crs", help="CRS when the file does not say, e.g. EPSG:25833")
    areas.add_argument("--dry-run", action="store_true", help="validate and report, change nothing")
    places = sub.add_parser("jurisdictions", help="list, show or retire loaded jurisdictions")
    what = places.add_subparsers(dest="action", required=True)
    what.add_parser("list", help="every jurisdiction: status, precedence, areas, offices, rules")
    show = what.add_parser("show", help="one jurisdiction's settings, levels and offices")
    show.add_argument("code")
    retire = what.add_parser(
        "retire",
        help="take no more reports there: announces it retired (intake refuses, routing "
        "refuses); areas, offices and rules are kept, and loading the manifest again brings "
        "it back",
    )
    retire.add_argument("code")
    return parser


def _since_time(text: str) -> datetime:
    from mm_shared.outbox import since_time

    return since_time(text)


def _is_database_error(exc: BaseException) -> bool:
    """Unreachable, missing or refusing database, from whichever driver layer the command used
    (only those already imported are asked)."""
    if isinstance(exc, (ConnectionError, socket.gaierror, TimeoutError)):
        return True
    kinds: list[type[BaseException]] = []
    if (asyncpg := sys.modules.get("asyncpg")) is not None:
        kinds += [asyncpg.PostgresError, asyncpg.InterfaceError]
    if (sqlalchemy_exc := sys.modules.get("sqlalchemy.exc")) is not None:
        kinds.append(sqlalchemy_exc.DBAPIError)
    return isinstance(exc, tuple(kinds))


def _database_error_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return f"database error: {cause.__class__.__name__}: {cause}".splitlines()[0]


def main() -> None:
    args = parser().parse_args()
    try:
        if args.command == "jurisdictions" and args.action in {"list", "show"}:
            print(_jurisdictions(args, _database_url_for_a_glance()))
        else:
            # Settings are read after parsing: `--help` needs none of them.
            from geo_router.settings import GeoRouterSettings

            settings = GeoRouterSettings()
            _run(args, settings.database_url, settings)
    except InvalidImport as invalid:
        sys.exit(f"import refused:\n{invalid}")
    except UnknownJurisdiction as unknown:
        sys.exit(f"unknown jurisdiction {unknown.args[0]!r} (geo-router jurisdictions list)")
    except Exception as exc:
        if _is_database_error(exc):
            sys.exit(_database_error_line(exc))
        raise


def _database_url_for_a_glance() -> str:
    """The database of a listing. Importing pydantic-settings costs more than the rest of a
    listing together: the variable as deployments set it is read directly, and only without it
    do the settings decide (their default, other spellings)."""
    return os.environ.get("GEO_ROUTER_DATABASE_URL") or _settings_database_url()


def _settings_database_url() -> str:
    from geo_router.settings import GeoRouterSettings

    return GeoRouterSettings().database_url


def _run(args: argparse.Namespace, database_url: str, settings: Any) -> None:
    commands: dict[str, Callable[[], object]] = {
        "migrate": lambda: _migrate(database_url),
        "serve": lambda: _serve(settings),
        "reannounce": lambda: print(
            f"{asyncio.run(reannounce(database_url, args.since))} decisions staged again"
        ),
        "import-areas": lambda: print(
            asyncio.run(
                import_areas(
                    database_url,
                    args.file,
                    jurisdiction=args.jurisdiction,
                    jurisdiction_name=args.jurisdiction_name,
                    level=args.level,
                    level_name=args.level_name,
                    rank=args.rank,
                    code_property=args.code_property,
                    name_property=args.name_property,
                    source_crs=args.source_crs,
                    article=args.level_article,
                    dry_run=args.dry_run,
                    progress=sys.stderr.isatty(),
                )
            )
        ),
        "load": lambda: print(
            asyncio.run(
                load_jurisdiction(
                    database_url,
                    args.manifest,
                    dry_run=args.dry_run,
                    if_empty=args.if_empty,
                    progress=sys.stderr.isatty(),
                )
            )
        ),
        "jurisdictions": lambda: print(_jurisdictions(args, database_url)),
    }
    commands[args.command]()


def _jurisdictions(args: argparse.Namespace, database_url: str) -> str:
    if args.action == "list":
        return list_text(database_url)
    if args.action == "show":
        return show_text(database_url, args.code)
    return asyncio.run(retire_jurisdiction(database_url, args.code))


def _migrate(database_url: str) -> None:
    from mm_shared.db import upgrade

    upgrade(MIGRATIONS, database_url)


def _serve(settings: Any) -> None:
    import uvicorn

    uvicorn.run(
        "geo_router.bootstrap:create_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        # Requests are counted and timed in /metrics; a log line each would cost more.
        access_log=False,
    )


if __name__ == "__main__":
    main()
