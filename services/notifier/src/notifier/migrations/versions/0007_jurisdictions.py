"""Each city feels like its own: the notifier keeps each jurisdiction's name (from its
boundary) and mail sender name (from its office directory), and each report's jurisdiction
(from whichever event first names it); an area alert subscription may belong to one.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jurisdictions",
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("sender_name", sa.Text),
        schema="notifier",
    )
    op.create_table(
        "report_jurisdictions",
        sa.Column("report_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("jurisdiction", sa.Text, nullable=False),
        schema="notifier",
    )
    op.add_column("alert_subscriptions", sa.Column("jurisdiction", sa.Text), schema="notifier")


def downgrade() -> None:
    op.drop_column("alert_subscriptions", "jurisdiction", schema="notifier")
    op.drop_table("report_jurisdictions", schema="notifier")
    op.drop_table("jurisdictions", schema="notifier")
