"""Reporters' tokens beside their contacts (their mails link the report with it; erasing their
contact data needs it), area alerts (subscriptions with double opt-in; their mails are
notifications too), and one notification per event × channel × contact or subscription.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "notifier"


def upgrade() -> None:
    op.add_column("contacts", sa.Column("reporter_token", sa.Text), schema=SCHEMA)
    op.create_table(
        "alert_subscriptions",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("locale", sa.Text, nullable=False),
        sa.Column("service_code", sa.Text),
        sa.Column("area_code", sa.Text),
        sa.Column("lat", sa.Float),
        sa.Column("long", sa.Float),
        sa.Column("radius_m", sa.Float),
        sa.Column("confirm_token", sa.Text, nullable=False, unique=True),
        sa.Column("unsubscribe_token", sa.Text, nullable=False, unique=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "(area_code IS NULL) <> (lat IS NULL AND long IS NULL AND radius_m IS NULL)",
            name="one_place",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_alert_subscriptions_area",
        "alert_subscriptions",
        ["area_code"],
        schema=SCHEMA,
        postgresql_where=sa.text("confirmed_at IS NOT NULL"),
    )
    op.add_column(
        "notifications",
        sa.Column(
            "subscription_id",
            sa.BigInteger,
            sa.ForeignKey(f"{SCHEMA}.alert_subscriptions.id", ondelete="CASCADE"),
        ),
        schema=SCHEMA,
    )
    op.execute("DROP INDEX notifier.ux_notifications_delivery")
    op.execute(
        "CREATE UNIQUE INDEX ux_notifications_delivery ON notifier.notifications "
        "(event_id, channel, coalesce(contact_id, 0), coalesce(subscription_id, 0))"
    )


def downgrade() -> None:
    op.execute("DELETE FROM notifier.notifications WHERE subscription_id IS NOT NULL")
    op.execute("DROP INDEX notifier.ux_notifications_delivery")
    op.execute(
        "CREATE UNIQUE INDEX ux_notifications_delivery ON notifier.notifications "
        "(event_id, channel, coalesce(contact_id, 0))"
    )
    op.drop_column("notifications", "subscription_id", schema=SCHEMA)
    op.drop_table("alert_subscriptions", schema=SCHEMA)
    op.drop_column("contacts", "reporter_token", schema=SCHEMA)
