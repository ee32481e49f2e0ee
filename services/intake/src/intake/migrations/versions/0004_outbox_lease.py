"""Outbox rows carry a lease: the process that staged them publishes them from memory.

Revision ID: 0004
"""

from alembic import op

from mm_shared.outbox import add_outbox_lease

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_outbox_lease(op, "intake")


def downgrade() -> None:
    op.drop_column("outbox", "lease_until", schema="intake")
