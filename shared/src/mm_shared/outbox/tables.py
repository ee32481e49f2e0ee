"""Table factories of the outbox and the inbox, for a service's metadata and its migrations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg


def _outbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", pg.JSONB, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def _inbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def _lease_column() -> sa.Column[Any]:
    return sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True)


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table("outbox", metadata, *_outbox_columns(), _lease_column())


def inbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table("processed_events", metadata, *_inbox_columns())


def create_messaging_tables(op: Any, schema: str, *, with_outbox: bool = True) -> None:
    """For a service's first Alembic migration: its inbox and (if it publishes) outbox tables."""
    op.create_table("processed_events", *_inbox_columns(), schema=schema)
    if with_outbox:
        op.create_table("outbox", *_outbox_columns(), schema=schema)


def add_outbox_lease(op: Any, schema: str) -> None:
    """For the migration that lets a service publish its own rows from memory."""
    op.add_column("outbox", _lease_column(), schema=schema)
