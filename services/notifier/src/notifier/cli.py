"""``notifier migrate`` and ``notifier serve``."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from mm_shared.db import exits_on_database_errors, upgrade
from notifier.settings import NotifierSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@exits_on_database_errors
def main() -> None:
    parser = argparse.ArgumentParser(prog="notifier")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations of the notifier's schema")
    sub.add_parser("serve", help="run the consumers, the mail dispatcher and the unsubscribe link")
    args = parser.parse_args()
    settings = NotifierSettings()
    if args.command == "migrate":
        upgrade(MIGRATIONS, settings.database_url)
    else:
        uvicorn.run(
            "notifier.bootstrap:create_app",
            factory=True,
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            # Requests are counted and timed in /metrics; a log line each would cost more.
            access_log=False,
        )


if __name__ == "__main__":
    main()
