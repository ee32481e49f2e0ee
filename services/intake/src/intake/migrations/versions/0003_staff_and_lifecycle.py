"""Staff accounts, their offices and hashed tokens; the areas a report lies in and the report a
duplicate was merged into; one row per day the office reminders went out.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "intake"


def upgrade() -> None:
    op.create_table(
        "staff_accounts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "staff_offices",
        sa.Column(
            "account_id",
            sa.BigInteger,
            sa.ForeignKey(f"{SCHEMA}.staff_accounts.id"),
            primary_key=True,
        ),
        sa.Column("office_code", sa.Text, primary_key=True),
        schema=SCHEMA,
    )
    op.create_table(
        "staff_tokens",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "account_id",
            sa.BigInteger,
            sa.ForeignKey(f"{SCHEMA}.staff_accounts.id"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.add_column(
        "reports",
        sa.Column("areas", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        schema=SCHEMA,
    )
    op.add_column("reports", sa.Column("duplicate_of", pg.UUID(as_uuid=True)), schema=SCHEMA)
    op.create_index("ix_reports_office_status", "reports", ["office_code", "status"], schema=SCHEMA)
    op.create_table(
        "reminder_runs",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column(
            "ran_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("reminder_runs", schema=SCHEMA)
    op.drop_index("ix_reports_office_status", table_name="reports", schema=SCHEMA)
    op.drop_column("reports", "duplicate_of", schema=SCHEMA)
    op.drop_column("reports", "areas", schema=SCHEMA)
    op.drop_table("staff_tokens", schema=SCHEMA)
    op.drop_table("staff_offices", schema=SCHEMA)
    op.drop_table("staff_accounts", schema=SCHEMA)
