"""``web serve``."""

from __future__ import annotations

import argparse

import uvicorn

from web.settings import WebSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="web")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the citizen pages and the staff console")
    parser.parse_args()
    settings = WebSettings()
    uvicorn.run(
        "web.bootstrap:create_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        # Requests are counted and timed in /metrics; a log line each would cost more.
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
