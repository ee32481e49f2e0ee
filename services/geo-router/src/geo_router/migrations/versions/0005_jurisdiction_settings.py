"""A jurisdiction carries what its manifest says beyond areas, offices and rules: its precedence
where jurisdictions overlap, the categories it switched off, its mail sender name and public
holidays, and whether it was retired.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "geo_router"


def upgrade() -> None:
    columns: list[sa.Column[object]] = [
        sa.Column("precedence", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "disabled_service_codes",
            pg.ARRAY(sa.Text),
            nullable=False,
            server_default=sa.text("'{}'::text[]"),
        ),
        sa.Column("mail_sender_name", sa.Text),
        sa.Column("holidays_country", sa.Text),
        sa.Column("holidays_subdivision", sa.Text),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
    ]
    for column in columns:
        op.add_column("jurisdictions", column, schema=SCHEMA)


def downgrade() -> None:
    for name in (
        "retired_at",
        "holidays_subdivision",
        "holidays_country",
        "mail_sender_name",
        "disabled_service_codes",
        "precedence",
    ):
        op.drop_column("jurisdictions", name, schema=SCHEMA)
