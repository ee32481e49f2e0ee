"""``geo-router migrate | serve | load MANIFEST | import-areas FILE | reannounce --since TIME``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

import uvicorn

from geo_router import handlers
from geo_router.adapters import db
from geo_router.adapters.index import RoutingCache
from geo_router.settings import GeoRouterSettings
from mm_shared.db import create_engine, exits_on_database_errors, upgrade
from mm_shared.events import RoutingConfigChanged
from mm_shared.outbox import Outbox, since_time, stage

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


async def load_jurisdiction(
    database_url: str,
    manifest: Path,
    *,
    dry_run: bool = False,
    if_empty: bool = False,
    progress: bool = False,
) -> str:
    """Import a jurisdiction's areas, offices and rules in one transaction; returns a summary."""
    from geo_router.adapters import importer  # GIS file libraries: never in the serving process

    spec = importer.read_manifest(manifest)
    lines = [f"{spec.name} ({spec.code})"]
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            if if_empty and await importer.has_areas(conn, spec.code):
                await transaction.rollback()
                return f"{lines[0]}: already loaded, left as it is"
            await importer.ensure_jurisdiction(conn, spec.code, spec.name)
            for level in spec.levels:
                features, repaired = importer.read_areas(
                    manifest.parent / level.file,
                    level.code_property,
                    level.name_property,
                    source_crs=level.source_crs,
                    progress=progress,
                )
                version = await importer.replace_areas(
                    conn,
                    spec.code,
                    level.code,
                    features,
                    level_name=level.name,
                    rank=level.rank,
                    article=level.article,
                )
                lines.append(f"  {len(features)} areas of level {level.code} (version {version})")
                lines += [f"    repaired: {r}" for r in repaired]
            count = await importer.replace_offices_and_rules(conn, spec)
            lines.append(f"  {len(spec.offices)} offices, {count} rules")
            # Running geo-router instances reload when the relay publishes this, i.e. after
            # commit: routing switches from the old set to the new one at once.
            await stage(conn, db.outbox, [RoutingConfigChanged(jurisdiction=spec.code)])
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
    one transaction."""
    from geo_router.adapters import importer  # GIS file libraries: never in the serving process

    features, repaired = importer.read_areas(
        path, code_property, name_property, source_crs=source_crs, progress=progress
    )
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await importer.ensure_jurisdiction(conn, jurisdiction, jurisdiction_name)
            version = await importer.replace_areas(
                conn,
                jurisdiction,
                level,
                features,
                level_name=level_name,
                rank=rank,
                article=article,
            )
            await stage(conn, db.outbox, [RoutingConfigChanged(jurisdiction=jurisdiction)])
            lines = [f"{len(features)} areas of {jurisdiction} level {level} (version {version})"]
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
    engine = create_engine(database_url, pool_size=2)
    try:
        outbox = Outbox.staging_only(engine, db.metadata, "geo-router")
        return await handlers.reannounce(outbox, RoutingCache(engine), since)
    finally:
        await engine.dispose()


@exits_on_database_errors
def main() -> None:
    parser = argparse.ArgumentParser(prog="geo-router")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations of geo-router's schema")
    sub.add_parser("serve", help="run the explain API and the routing consumer")
    load = sub.add_parser("load", help="import a jurisdiction manifest (areas, offices, rules)")
    load.add_argument("manifest", type=Path)
    load.add_argument("--dry-run", action="store_true", help="validate and report, change nothing")
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
        "--since", required=True, type=since_time, help="ISO 8601, e.g. 2026-05-04T10:00Z"
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
    args = parser.parse_args()
    settings = GeoRouterSettings()
    if args.command in ("import-areas", "load"):
        from geo_router.adapters.importer import InvalidImport
    if args.command == "migrate":
        upgrade(MIGRATIONS, settings.database_url)
    elif args.command == "reannounce":
        print(
            f"{asyncio.run(reannounce(settings.database_url, args.since))} decisions staged again"
        )
    elif args.command == "import-areas":
        try:
            print(
                asyncio.run(
                    import_areas(
                        settings.database_url,
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
            )
        except InvalidImport as invalid:
            sys.exit(f"import refused:\n{invalid}")
    elif args.command == "load":
        try:
            summary = load_jurisdiction(
                settings.database_url,
                args.manifest,
                dry_run=args.dry_run,
                if_empty=args.if_empty,
                progress=sys.stderr.isatty(),
            )
            print(asyncio.run(summary))
        except InvalidImport as invalid:
            sys.exit(f"import refused:\n{invalid}")
    else:
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
