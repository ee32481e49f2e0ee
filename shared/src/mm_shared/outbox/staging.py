"""The outbox's one writer: events staged in the caller's transaction, with the changes that
imply them."""

from __future__ import annotations

import functools
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


@dataclass(frozen=True)
class MessageRows:
    """The messages to stage, as a query yielding the columns ``topic, key, payload, headers``
    (it may read the CTEs of the :class:`Writes` staged along with them) with its bound
    parameters, and the :class:`Message` of each row, matched by key: for a writer whose
    changes and messages read one input, so that no payload travels twice."""

    query: str
    parameters: Mapping[str, Any]
    messages: Sequence[Message]

    @classmethod
    def of(cls, messages: Sequence[Message], *, stage_for: str | None = None) -> MessageRows:
        """The messages as arrays, one parameter per column. ``stage_for``: see :class:`Writes`."""
        # One statement over arrays: far cheaper than a many-row VALUES list or executemany.
        return cls(
            "SELECT topic, key, payload, headers"
            " FROM ROWS FROM (unnest(CAST(:topics AS text[])), unnest(CAST(:keys AS bytea[])),"
            " unnest(CAST(:payloads AS bytea[])), jsonb_array_elements(CAST(:headers AS jsonb)))"
            " AS m(topic, key, payload, headers)"
            + (
                f" WHERE key IN (SELECT convert_to(id::text, 'UTF8') FROM {stage_for})"
                if stage_for
                else ""
            ),
            {
                "topics": [m.topic for m in messages],
                "keys": [m.key for m in messages],
                "payloads": [m.payload for m in messages],
                "headers": json.dumps([m.headers for m in messages]),
            },
            messages,
        )


@functools.lru_cache(maxsize=256)
def statement(sql: str) -> sa.TextClause:
    """``sa.text(sql)``, built once per text: a writer stages with a handful of texts, and
    building one (it parses out the bound parameters) cost every write as much as a row."""
    return sa.text(sql)


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
    rows = MessageRows.of(messages, stage_for=along_with.stage_for if along_with else None)
    return await stage_rows(conn, outbox, rows, lease=lease, along_with=along_with)


async def stage_rows(
    conn: AsyncConnection,
    outbox: sa.Table,
    rows: MessageRows,
    *,
    lease: timedelta | None = None,
    along_with: Writes | None = None,
) -> list[StagedRow]:
    """Like :func:`stage`, for messages given as a query: the one statement that inserts into
    the outbox table, whoever stages."""
    result = await conn.execute(
        statement(
            (f"WITH {along_with.ctes} " if along_with else "")
            + f"INSERT INTO {outbox.schema}.{outbox.name} (topic, key, payload, headers, lease_until)"
            " SELECT topic, key, payload, headers, now() + CAST(:lease AS interval)"
            f" FROM ({rows.query}) AS staged"
            " RETURNING id, key"
        ),
        {**(along_with.parameters if along_with else {}), **rows.parameters, "lease": lease},
    )
    # RETURNING follows the order of the rows the query produced, skipping those filtered.
    by_key: dict[bytes | None, list[Message]] = {}
    for m in reversed(rows.messages):
        by_key.setdefault(m.key, []).append(m)
    staged = [StagedRow(row.id, by_key[row.key].pop()) for row in result]
    return staged if lease else []
