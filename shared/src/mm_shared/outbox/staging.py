"""The outbox's one writer: events staged in the caller's transaction, with the changes that
imply them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mm_shared.events import Event
from mm_shared.kafka.message import Message


@dataclass(frozen=True, slots=True)
class StagedRow:
    """An outbox row written under a lease: the relay publishes it from memory after commit."""

    id: int
    message: Message


@dataclass(frozen=True)
class Writes:
    """A service's own changes as data-modifying CTEs (``name AS (INSERT …)``, comma-separated)
    with their bound parameters, to run in the statement that stages their events.
    ``stage_for``: the name of a CTE with an ``id`` column; then only events whose key is the
    text of one of those ids are staged (those of the changes that took place)."""

    ctes: str
    parameters: Mapping[str, Any]
    stage_for: str | None = None


async def stage(
    conn: AsyncConnection,
    outbox: sa.Table,
    events: Sequence[Event | Message],
    *,
    lease: timedelta | None = None,
    along_with: Writes | None = None,
) -> list[StagedRow]:
    """Write events to a service's outbox in the caller's transaction, together with the
    changes ``along_with`` that imply them: one statement, one round trip. Any writer may
    stage (a CLI too: no lease, the service's relay polls for them). With a lease, the rows are
    returned for the caller's relay to publish from memory once the transaction committed."""
    if not events and along_with is None:
        return []
    messages = [e if isinstance(e, Message) else Message.of(e) for e in events]
    # One statement over arrays: far cheaper than a many-row VALUES list or executemany.
    rows = await conn.execute(
        sa.text(
            (f"WITH {along_with.ctes} " if along_with else "")
            + f"INSERT INTO {outbox.schema}.{outbox.name} (topic, key, payload, headers, lease_until)"
            " SELECT topic, key, payload, headers, now() + CAST(:lease AS interval)"
            " FROM ROWS FROM (unnest(CAST(:topics AS text[])), unnest(CAST(:keys AS bytea[])),"
            " unnest(CAST(:payloads AS bytea[])), jsonb_array_elements(CAST(:headers AS jsonb)))"
            " AS m(topic, key, payload, headers)"
            + (
                f" WHERE key IN (SELECT convert_to(id::text, 'UTF8') FROM {along_with.stage_for})"
                if along_with and along_with.stage_for
                else ""
            )
            + " RETURNING id, key"
        ),
        {
            **(along_with.parameters if along_with else {}),
            "topics": [m.topic for m in messages],
            "keys": [m.key for m in messages],
            "payloads": [m.payload for m in messages],
            "headers": json.dumps([m.headers for m in messages]),
            "lease": lease,
        },
    )
    # RETURNING follows the order of the rows produced by ROWS FROM, skipping those filtered.
    by_key: dict[bytes | None, list[Message]] = {}
    for m in reversed(messages):
        by_key.setdefault(m.key, []).append(m)
    staged = [StagedRow(row.id, by_key[row.key].pop()) for row in rows]
    return staged if lease else []
