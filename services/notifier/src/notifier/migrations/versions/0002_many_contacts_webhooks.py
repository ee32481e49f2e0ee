"""Several contacts per report (followers, merged duplicates), status events kept for contacts
who arrive after them, one notification per event × contact × channel (webhooks too).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "notifier"


def upgrade() -> None:
    op.execute("ALTER TABLE notifier.contacts DROP CONSTRAINT contacts_pkey")
    op.execute(
        "ALTER TABLE notifier.contacts ADD COLUMN id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    )
    op.add_column(
        "contacts",
        sa.Column(
            "subscribed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ux_contacts_report_email", "contacts", ["report_id", "email"], unique=True, schema=SCHEMA
    )
    op.create_table(
        "status_events",
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", pg.JSONB, nullable=False),
        schema=SCHEMA,
    )
    op.execute(
        "INSERT INTO notifier.status_events (event_id, report_id, occurred_at, event) "
        "SELECT event_id, report_id, coalesce((event->>'occurred_at')::timestamptz, created_at), "
        "event FROM notifier.notifications WHERE jsonb_typeof(event) = 'object' "
        "ON CONFLICT DO NOTHING"
    )
    op.add_column(
        "notifications",
        sa.Column("contact_id", sa.BigInteger, sa.ForeignKey("notifier.contacts.id")),
        schema=SCHEMA,
    )
    op.execute(
        "UPDATE notifier.notifications n SET contact_id = c.id FROM notifier.contacts c "
        "WHERE c.report_id = n.report_id"
    )
    op.execute("ALTER TABLE notifier.notifications DROP CONSTRAINT notifications_event_id_key")
    op.execute(
        "CREATE UNIQUE INDEX ux_notifications_delivery ON notifier.notifications "
        "(event_id, channel, coalesce(contact_id, 0))"
    )


def downgrade() -> None:
    raise NotImplementedError("notifier 0002 is not reversible")
