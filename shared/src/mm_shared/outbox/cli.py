"""Argument types shared by the services' command lines that write to their outbox."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def since_time(text: str) -> datetime:
    """A ``reannounce --since`` moment: ISO 8601 (``2026-05-04T10:00Z``; without a zone, UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
