"""``intake migrate`` and ``intake serve``."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from intake.settings import IntakeSettings
from mm_shared.db import upgrade

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def main() -> None:
    parser = argparse.ArgumentParser(prog="intake")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations of intake's schema")
    sub.add_parser("serve", help="run the HTTP API, the consumers and the outbox relay")
    args = parser.parse_args()
    settings = IntakeSettings()
    if args.command == "migrate":
        upgrade(MIGRATIONS, settings.database_url)
    else:
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
