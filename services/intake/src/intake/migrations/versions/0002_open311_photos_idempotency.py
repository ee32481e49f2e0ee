"""Open311 details (address, media, attributes, token), photos, idempotency keys, jurisdiction
boundaries, resubmission bookkeeping.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "intake"


def upgrade() -> None:
    op.add_column("reports", sa.Column("address", sa.Text), schema=SCHEMA)
    op.add_column("reports", sa.Column("media_url", sa.Text), schema=SCHEMA)
    op.add_column(
        "reports",
        sa.Column("attributes", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=SCHEMA,
    )
    op.add_column("reports", sa.Column("token", sa.Text), schema=SCHEMA)
    op.add_column("reports", sa.Column("resubmitted_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.create_index("ux_reports_token", "reports", ["token"], unique=True, schema=SCHEMA)
    op.create_index("ix_reports_nearby", "reports", ["service_code", "lat"], schema=SCHEMA)
    op.create_index(
        "ix_reports_unrouted",
        "reports",
        ["requested_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'received'"),
    )
    op.create_table(
        "photos",
        sa.Column(
            "report_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.reports.id"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "jurisdiction_boundaries",
        sa.Column("jurisdiction", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("boundary", sa.Text, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("jurisdiction_boundaries", schema=SCHEMA)
    op.drop_table("idempotency_keys", schema=SCHEMA)
    op.drop_table("photos", schema=SCHEMA)
    for index in ("ix_reports_unrouted", "ix_reports_nearby", "ux_reports_token"):
        op.drop_index(index, table_name="reports", schema=SCHEMA)
    for column in ("resubmitted_at", "token", "attributes", "media_url", "address"):
        op.drop_column("reports", column, schema=SCHEMA)
