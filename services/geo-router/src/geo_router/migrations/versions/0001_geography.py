"""Jurisdictions, area levels, areas (PostGIS), offices, rules, routing decisions.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql as pg

from mm_shared.outbox import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "geo_router"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "jurisdictions",
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "area_levels",
        sa.Column(
            "jurisdiction", sa.Text, sa.ForeignKey(f"{SCHEMA}.jurisdictions.code"), primary_key=True
        ),
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "areas",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("jurisdiction", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column(
            "valid_from", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
        sa.CheckConstraint("ST_IsValid(geom)", name="areas_geom_valid"),
        schema=SCHEMA,
    )
    op.create_index("ix_areas_geom", "areas", ["geom"], schema=SCHEMA, postgresql_using="gist")
    op.create_index(
        "ux_areas_current_code",
        "areas",
        ["jurisdiction", "level", "code"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_table(
        "offices",
        sa.Column(
            "jurisdiction", sa.Text, sa.ForeignKey(f"{SCHEMA}.jurisdictions.code"), primary_key=True
        ),
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("public_name", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "rules",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("jurisdiction", sa.Text, nullable=False),
        sa.Column("service_code", sa.Text, nullable=False),
        sa.Column("area_level", sa.Text),
        sa.Column("area_code", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("office_code", sa.Text, nullable=False),
        sa.Column(
            "valid_from", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["jurisdiction", "office_code"],
            [f"{SCHEMA}.offices.jurisdiction", f"{SCHEMA}.offices.code"],
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_rules_lookup", "rules", ["jurisdiction", "service_code"], schema=SCHEMA)
    op.create_table(
        "routing_decisions",
        sa.Column("report_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("event", pg.JSONB, nullable=False),
        sa.Column(
            "decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )
    create_messaging_tables(op, SCHEMA)


def downgrade() -> None:
    for table in (
        "routing_decisions",
        "rules",
        "offices",
        "areas",
        "area_levels",
        "jurisdictions",
        "outbox",
        "processed_events",
    ):
        op.drop_table(table, schema=SCHEMA)
