"""Store the announced decision as the JSON text that was published, not as JSONB: it is only
ever read back whole, and parsing it into JSONB was the slowest part of routing a batch.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE geo_router.routing_decisions ALTER COLUMN event TYPE text USING event::text"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE geo_router.routing_decisions ALTER COLUMN event TYPE jsonb USING event::jsonb"
    )
