"""Notifier instances heartbeat; claims name the instance that holds them, so that a live
instance can take back the claims of a dead one within seconds instead of a 5-minute lease.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        schema="notifier",
    )
    op.add_column("notifications", sa.Column("claimed_by", sa.Text), schema="notifier")
    # The release looks for claims still in flight; few rows are ever 'sending'.
    op.create_index(
        "notifications_sending",
        "notifications",
        ["claimed_by"],
        schema="notifier",
        postgresql_where=sa.text("state = 'sending'"),
    )


def downgrade() -> None:
    op.drop_index("notifications_sending", table_name="notifications", schema="notifier")
    op.drop_column("notifications", "claimed_by", schema="notifier")
    op.drop_table("instances", schema="notifier")
