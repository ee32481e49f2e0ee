"""One deployment, many jurisdictions: office codes are unique per jurisdiction only, so staff
accounts, canned responses and the reminders' daily claim name theirs; intake's copy of each
outline keeps its name, precedence and switched-off categories.

Existing rows belong to the configured default jurisdiction (``INTAKE_JURISDICTION``, else
leipzig), the only one a deployment served before; existing admins stay deployment-wide
(jurisdiction NULL), as they saw every ticket before.

Revision ID: 0009
"""

import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = "intake"


def _default_jurisdiction() -> str:
    return os.environ.get("INTAKE_JURISDICTION") or "leipzig"


def upgrade() -> None:
    default = sa.literal(_default_jurisdiction()).compile(compile_kwargs={"literal_binds": True})
    op.add_column("staff_accounts", sa.Column("jurisdiction", sa.Text), schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.staff_accounts SET jurisdiction = {default} WHERE NOT is_admin")
    for table in ("canned_responses", "reminder_runs"):
        op.add_column(
            table,
            sa.Column(
                "jurisdiction", sa.Text, nullable=False, server_default=sa.text(str(default))
            ),
            schema=SCHEMA,
        )
        op.alter_column(table, "jurisdiction", server_default=None, schema=SCHEMA)
    op.drop_constraint("canned_responses_office_code_title_key", "canned_responses", schema=SCHEMA)
    op.create_unique_constraint(
        "canned_responses_jurisdiction_office_code_title_key",
        "canned_responses",
        ["jurisdiction", "office_code", "title"],
        schema=SCHEMA,
    )
    op.drop_constraint("reminder_runs_pkey", "reminder_runs", schema=SCHEMA)
    op.create_primary_key(
        "reminder_runs_pkey", "reminder_runs", ["jurisdiction", "day"], schema=SCHEMA
    )
    op.add_column("jurisdiction_boundaries", sa.Column("name", sa.Text), schema=SCHEMA)
    op.add_column(
        "jurisdiction_boundaries",
        sa.Column("precedence", sa.Integer, nullable=False, server_default=sa.text("0")),
        schema=SCHEMA,
    )
    op.add_column(
        "jurisdiction_boundaries",
        sa.Column(
            "disabled_service_codes",
            pg.ARRAY(sa.Text),
            nullable=False,
            server_default=sa.text("'{}'::text[]"),
        ),
        schema=SCHEMA,
    )
    # The public map and Open311's lists by jurisdiction.
    op.create_index(
        "ix_reports_jurisdiction_requested",
        "reports",
        ["jurisdiction", "requested_at"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_index("ix_reports_jurisdiction_requested", table_name="reports", schema=SCHEMA)
    for column in ("disabled_service_codes", "precedence", "name"):
        op.drop_column("jurisdiction_boundaries", column, schema=SCHEMA)
    op.drop_constraint("reminder_runs_pkey", "reminder_runs", schema=SCHEMA)
    op.execute(
        f"DELETE FROM {SCHEMA}.reminder_runs r USING {SCHEMA}.reminder_runs o"
        " WHERE r.day = o.day AND r.jurisdiction > o.jurisdiction"
    )
    op.create_primary_key("reminder_runs_pkey", "reminder_runs", ["day"], schema=SCHEMA)
    op.drop_constraint(
        "canned_responses_jurisdiction_office_code_title_key", "canned_responses", schema=SCHEMA
    )
    op.create_unique_constraint(
        "canned_responses_office_code_title_key",
        "canned_responses",
        ["office_code", "title"],
        schema=SCHEMA,
    )
    for table in ("reminder_runs", "canned_responses", "staff_accounts"):
        op.drop_column(table, "jurisdiction", schema=SCHEMA)
