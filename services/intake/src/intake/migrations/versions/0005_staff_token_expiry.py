"""Staff tokens expire and record when they were last used.

Tokens issued before this revision had no expiry: they get one 90 days (the default lifetime)
from the upgrade, so nobody is locked out by the upgrade itself.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "intake"


def upgrade() -> None:
    op.add_column(
        "staff_tokens", sa.Column("expires_at", sa.DateTime(timezone=True)), schema=SCHEMA
    )
    op.add_column(
        "staff_tokens", sa.Column("last_used_at", sa.DateTime(timezone=True)), schema=SCHEMA
    )
    op.execute(
        f"UPDATE {SCHEMA}.staff_tokens SET expires_at = now() + interval '90 days' "
        "WHERE expires_at IS NULL"
    )
    op.alter_column("staff_tokens", "expires_at", nullable=False, schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("staff_tokens", "last_used_at", schema=SCHEMA)
    op.drop_column("staff_tokens", "expires_at", schema=SCHEMA)
