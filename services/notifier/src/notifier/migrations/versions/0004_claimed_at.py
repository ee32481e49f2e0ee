"""Notifications are claimed in batches (state ``sending``); ``claimed_at`` lets a restarted
instance take back claims that were left behind.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "notifications", sa.Column("claimed_at", sa.DateTime(timezone=True)), schema="notifier"
    )


def downgrade() -> None:
    op.drop_column("notifications", "claimed_at", schema="notifier")
