"""The staff console: each report's expected date (its category's service level), the offices'
canned responses, and the indexes the queue needs to answer within 100 ms at 100,000 tickets
(by office and status, sorted by date; areas; search in descriptions and by id prefix).

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "intake"
#: The catalogue's service levels as of this revision (frozen here: a migration must not
#: change its meaning when the catalogue changes later).
SERVICE_LEVEL_DAYS = {
    "001": 14, "002": 14, "003": 10, "004": 3, "005": 7, "006": 3, "007": 30,
    "008": 7, "009": 7, "010": 28, "011": 30, "012": 7, "013": 14,
}  # fmt: skip
DEFAULT_SERVICE_LEVEL_DAYS = 14


def upgrade() -> None:
    op.add_column("reports", sa.Column("expected_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    # Reports made before service levels existed get the catalogue's default promise.
    days = " ".join(f"WHEN '{code}' THEN {d}" for code, d in sorted(SERVICE_LEVEL_DAYS.items()))
    op.execute(
        f"UPDATE {SCHEMA}.reports SET expected_at = requested_at"
        f" + (CASE service_code {days} ELSE {DEFAULT_SERVICE_LEVEL_DAYS} END) * interval '1 day'"
    )
    op.create_table(
        "canned_responses",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("office_code", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("office_code", "title"),
        schema=SCHEMA,
    )
    # The queue: my offices' tickets of some statuses, newest (or oldest, or last changed)
    # first. The (office, status) index of 0003 is a prefix of the first.
    op.drop_index("ix_reports_office_status", table_name="reports", schema=SCHEMA)
    op.create_index(
        "ix_reports_office_status_requested",
        "reports",
        ["office_code", "status", "requested_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_reports_office_requested", "reports", ["office_code", "requested_at"], schema=SCHEMA
    )
    op.create_index(
        "ix_reports_office_updated", "reports", ["office_code", "updated_at"], schema=SCHEMA
    )
    op.create_index(
        "ix_reports_open_expected",
        "reports",
        ["office_code", "expected_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('received', 'assigned', 'in_progress')"),
    )
    # An admin's queue by due date (all offices).
    op.create_index("ix_reports_expected", "reports", ["expected_at"], schema=SCHEMA)
    op.create_index(
        "ix_reports_areas",
        "reports",
        ["areas"],
        schema=SCHEMA,
        postgresql_using="gin",
        postgresql_ops={"areas": "jsonb_path_ops"},
    )
    # Search: words anywhere in the description (trigrams), the start of an id.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        f"CREATE INDEX ix_reports_description_trgm ON {SCHEMA}.reports"
        " USING gin (description gin_trgm_ops)"
    )
    op.execute(
        f"CREATE INDEX ix_reports_id_text ON {SCHEMA}.reports ((CAST(id AS text)) text_pattern_ops)"
    )
    # Statistics: when each report was first assigned and closed.
    op.create_index(
        "ix_status_history_report_status",
        "status_history",
        ["report_id", "status", "changed_at"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_index("ix_status_history_report_status", table_name="status_history", schema=SCHEMA)
    for name in (
        "ix_reports_id_text",
        "ix_reports_description_trgm",
        "ix_reports_areas",
        "ix_reports_expected",
        "ix_reports_open_expected",
        "ix_reports_office_updated",
        "ix_reports_office_requested",
        "ix_reports_office_status_requested",
    ):
        op.drop_index(name, table_name="reports", schema=SCHEMA)
    op.create_index("ix_reports_office_status", "reports", ["office_code", "status"], schema=SCHEMA)
    op.drop_table("canned_responses", schema=SCHEMA)
    op.drop_column("reports", "expected_at", schema=SCHEMA)
