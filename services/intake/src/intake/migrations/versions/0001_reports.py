"""Reports, their status history, outbox and inbox.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from mm_shared.outbox import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "intake"


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("jurisdiction", sa.Text, nullable=False),
        sa.Column("service_code", sa.Text, nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("long", sa.Float, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("office_code", sa.Text),
        sa.Column("office_name", sa.Text),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_reports_requested_at", "reports", ["requested_at"], schema=SCHEMA)
    op.create_table(
        "status_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "report_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.reports.id"),
            nullable=False,
        ),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("previous_status", sa.Text),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.Text, nullable=False),
        sa.Column("public_note", sa.Text),
        sa.Column("internal_note", sa.Text),
        schema=SCHEMA,
    )
    op.create_index("ix_status_history_report_id", "status_history", ["report_id"], schema=SCHEMA)
    create_messaging_tables(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("status_history", schema=SCHEMA)
    op.drop_table("reports", schema=SCHEMA)
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("processed_events", schema=SCHEMA)
