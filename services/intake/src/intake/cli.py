"""``intake migrate | serve | staff-token | revoke-token | reannounce --since TIME``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from intake.settings import IntakeSettings
from mm_shared.db import create_engine, exits_on_database_errors, upgrade
from mm_shared.outbox import since_time

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
T = TypeVar("T")


async def _staff(database_url: str, action: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            return await action(conn)
    finally:
        await engine.dispose()


async def _reannounce(database_url: str, since: datetime, contacts_kept: timedelta) -> int:
    # Imported here: the service's web stack is not needed to stage events, and a recovery
    # after a lost broker waits for this command.
    from intake import handlers
    from intake.adapters import db
    from mm_shared.outbox import Outbox

    engine = create_engine(database_url, pool_size=1)
    try:
        outbox = Outbox.staging_only(engine, db.metadata, "intake")
        return await handlers.reannounce(
            db.SqlUnitOfWorks(outbox), since, contacts_kept=contacts_kept
        )
    finally:
        await engine.dispose()


@exits_on_database_errors
def main() -> None:
    parser = argparse.ArgumentParser(prog="intake")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations of intake's schema")
    sub.add_parser("serve", help="run the HTTP API, the consumers and the outbox relay")
    token = sub.add_parser(
        "staff-token", help="create a staff account (or add offices to one) and print a new token"
    )
    token.add_argument("--office", action="append", default=[], help="office code (repeatable)")
    token.add_argument("--name", help="account name (default: staff-<office>)")
    token.add_argument(
        "--jurisdiction",
        help="where the offices are (default: INTAKE_JURISDICTION; with --admin and without "
        "this: an admin of every jurisdiction)",
    )
    token.add_argument(
        "--admin", action="store_true", help="sees every office's tickets (of --jurisdiction)"
    )
    token.add_argument(
        "--days",
        type=float,
        help="how long the token is valid (default: INTAKE_STAFF_TOKEN_TTL_DAYS, 90)",
    )
    revoke = sub.add_parser("revoke-token", help="revoke a staff token")
    revoke.add_argument("token")
    again = sub.add_parser(
        "reannounce",
        help="publish again, with their original event ids, the submissions, status changes and "
        "kept reporters' contacts since TIME (after a broker lost messages); the running "
        "service's relay sends them",
    )
    again.add_argument(
        "--since", required=True, type=since_time, help="ISO 8601, e.g. 2026-05-04T10:00Z"
    )
    args = parser.parse_args()
    settings = IntakeSettings()
    if args.command == "migrate":
        upgrade(MIGRATIONS, settings.database_url)
    elif args.command == "staff-token":
        from intake.adapters import staff

        if not args.office and not args.admin:
            sys.exit("name at least one --office, or --admin")
        if args.days is not None and args.days <= 0:
            sys.exit("--days must be more than 0")
        jurisdiction = args.jurisdiction or (None if args.admin else settings.jurisdiction)
        # Office codes repeat across jurisdictions: another one's accounts get its code too.
        prefix = "staff-" if jurisdiction in (None, settings.jurisdiction) else f"{jurisdiction}-"
        name = args.name or prefix + "-".join(args.office or ["admin"]).lower()
        expires_at = datetime.now(UTC) + timedelta(days=args.days or settings.staff_token_ttl_days)
        try:
            account_id, new_token = asyncio.run(
                _staff(
                    settings.database_url,
                    lambda c: staff.create_account(
                        c,
                        name,
                        args.office,
                        is_admin=args.admin,
                        expires_at=expires_at,
                        jurisdiction=jurisdiction,
                    ),
                )
            )
        except staff.OtherJurisdiction as other:
            sys.exit(str(other))
        print(
            f"account {name} (id {account_id}), {jurisdiction or 'every jurisdiction'}, "
            f"offices: {', '.join(args.office) or 'all'}"
        )
        print(f"valid until {expires_at:%Y-%m-%d %H:%M} UTC")
        print(new_token)
    elif args.command == "reannounce":
        kept = timedelta(days=settings.contact_kept_days)
        staged = asyncio.run(_reannounce(settings.database_url, args.since, kept))
        print(f"{staged} events staged again")
    elif args.command == "revoke-token":
        from intake.adapters import staff

        if not asyncio.run(_staff(settings.database_url, lambda c: staff.revoke(c, args.token))):
            sys.exit("no such active token")
        print("revoked")
    else:
        import uvicorn

        from intake.bootstrap import MissingReporterTokenSecret, reporter_tokens

        try:
            reporter_tokens(settings)  # said plainly here, not as the app factory's traceback
        except MissingReporterTokenSecret as missing:
            sys.exit(str(missing))
        uvicorn.run(
            "intake.bootstrap:create_app",
            factory=True,
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            # Requests are counted and timed in /metrics; a log line each would cost more.
            access_log=False,
        )


if __name__ == "__main__":
    main()
