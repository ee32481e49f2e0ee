"""Intake keeps each reporter's contact event for a bounded time (``INTAKE_CONTACT_KEPT_DAYS``),
so that ``intake reannounce`` can publish again a contact a broker lost before the notifier had
it; erased at the reporter's request and after that time.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kept_contacts",
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False, index=True),
        # The ReporterContactSubmitted exactly as published (its JSON), original event id.
        sa.Column("event", pg.JSONB, nullable=False),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False, index=True),
        schema="intake",
    )


def downgrade() -> None:
    op.drop_table("kept_contacts", schema="intake")
