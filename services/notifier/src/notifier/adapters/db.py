"""The notifier's tables (schema ``notifier``): reporter contacts and the notifications queue."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from mm_shared.outbox import inbox_table

SCHEMA = "notifier"
metadata = sa.MetaData(schema=SCHEMA)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("report_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("first_name", sa.Text),
    sa.Column("last_name", sa.Text),
    sa.Column("locale", sa.Text, nullable=False),
    sa.Column("preference", sa.Text, nullable=False),
    sa.Column("unsubscribe_token", sa.Text, nullable=False, unique=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    #: The status-change event this notification announces: one notification per event.
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("event", pg.JSONB, nullable=False),
    #: pending → sent | skipped | parked
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column(
        "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("last_error", sa.Text),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
)

inbox = inbox_table(metadata)
