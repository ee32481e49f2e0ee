"""Each history entry keeps the event that announced it (with its event id), so that intake
can re-announce what a broker lost (``intake reannounce``) and consumers recognise it.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("status_history", sa.Column("event", pg.JSONB), schema="intake")
    # reannounce reads the history since a moment, in order.
    op.create_index("status_history_changed_at", "status_history", ["changed_at"], schema="intake")


def downgrade() -> None:
    op.drop_index("status_history_changed_at", table_name="status_history", schema="intake")
    op.drop_column("status_history", "event", schema="intake")
