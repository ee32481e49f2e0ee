"""Area levels carry their grammatical article, so explanations read "in der Gemeinde …" as
well as "im Stadtbezirk …".

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
        "area_levels",
        sa.Column("article", sa.Text, nullable=False, server_default="der"),
        schema="geo_router",
    )
    op.create_check_constraint(
        "ck_area_levels_article",
        "area_levels",
        "article IN ('der', 'die', 'das')",
        schema="geo_router",
    )


def downgrade() -> None:
    op.drop_column("area_levels", "article", schema="geo_router")
