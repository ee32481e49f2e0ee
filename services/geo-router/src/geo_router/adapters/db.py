"""Geo-router's tables (schema ``geo_router``) and queries: areas, offices, rules, decisions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from geo_router.domain import Rule
from geo_router.ports import Announcement, PreparedDecisions, UnitOfWorkFactory
from mm_shared.events import (
    Event,
    MatchedArea,
    OfficeRef,
    ReportRouted,
    ReportRoutingFailed,
    Topic,
)
from mm_shared.outbox import (
    Message,
    MessageRows,
    Outbox,
    Transaction,
    Writes,
    inbox_table,
    outbox_table,
)

SCHEMA = "geo_router"


class MultiPolygon4326(sa.types.UserDefinedType[Any]):
    """PostGIS ``geometry(MULTIPOLYGON, 4326)``. Every query reads and writes it through
    explicit PostGIS functions (ST_AsBinary, ST_GeomFromWKB, ST_Covers), so the serving process
    needs no GeoAlchemy2 (and the Alembic it imports); the migrations use GeoAlchemy2."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "geometry(MULTIPOLYGON,4326)"


metadata = sa.MetaData(schema=SCHEMA)

jurisdictions = sa.Table(
    "jurisdictions",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    #: Where jurisdictions overlap, the higher precedence takes a report (then the smaller area).
    sa.Column("precedence", sa.Integer, nullable=False, server_default="0"),
    #: Categories of the shared catalogue this jurisdiction does not take.
    sa.Column(
        "disabled_service_codes",
        pg.ARRAY(sa.Text),
        nullable=False,
        server_default=sa.text("'{}'::text[]"),
    ),
    #: None: the notifier's default sender name, the service's default holidays.
    sa.Column("mail_sender_name", sa.Text),
    sa.Column("holidays_country", sa.Text),
    sa.Column("holidays_subdivision", sa.Text),
    #: A retired jurisdiction keeps its areas and rules (past decisions stay explainable) but
    #: takes no more reports; loading its manifest again brings it back.
    sa.Column("retired_at", sa.DateTime(timezone=True)),
)

area_levels = sa.Table(
    "area_levels",
    metadata,
    sa.Column("jurisdiction", sa.Text, sa.ForeignKey(jurisdictions.c.code), primary_key=True),
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    #: Coarse levels first (Stadtbezirk 1, Ortsteil 2): the order areas are reported in.
    sa.Column("rank", sa.Integer, nullable=False),
    #: "der", "die" or "das": explanations say "im Stadtbezirk …" but "in der Gemeinde …".
    sa.Column("article", sa.Text, nullable=False, server_default="der"),
)

areas = sa.Table(
    "areas",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("jurisdiction", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("geom", MultiPolygon4326(), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column(
        "valid_from", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    #: Replaced areas are kept with an end date, never deleted: history stays explainable.
    sa.Column("valid_to", sa.DateTime(timezone=True)),
)

offices = sa.Table(
    "offices",
    metadata,
    sa.Column("jurisdiction", sa.Text, sa.ForeignKey(jurisdictions.c.code), primary_key=True),
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("public_name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
)

rules = sa.Table(
    "rules",
    metadata,
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
)

routing_decisions = sa.Table(
    "routing_decisions",
    metadata,
    sa.Column("report_id", pg.UUID(as_uuid=True), primary_key=True),
    #: The event that announced the decision; re-announcing it reuses the id, so downstream
    #: inboxes recognise it.
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column(
        "decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


@dataclass
class Geography:
    """Read side of areas, offices and rules valid now."""

    conn: AsyncConnection

    async def version(self, jurisdiction: str) -> str:
        """A fingerprint of what routing and the announcements read (the jurisdiction's
        settings, levels, current areas and rules, offices): equal fingerprints mean an index
        built from either is the same, and so are the announcements."""
        return str(
            await self.conn.scalar(
                sa.text(
                    "SELECT md5(concat_ws('|',"
                    " (SELECT concat_ws(':', name, precedence, disabled_service_codes::text,"
                    "    mail_sender_name, holidays_country, holidays_subdivision, retired_at)"
                    "    FROM geo_router.jurisdictions WHERE code = :j),"
                    " (SELECT string_agg(concat_ws(':', code, rank, name, article), ','"
                    "    ORDER BY rank, code)"
                    "    FROM geo_router.area_levels WHERE jurisdiction = :j),"
                    " (SELECT string_agg(id::text, ',' ORDER BY id)"
                    "    FROM geo_router.areas WHERE jurisdiction = :j AND valid_to IS NULL),"
                    " (SELECT string_agg(id::text, ',' ORDER BY id)"
                    "    FROM geo_router.rules WHERE jurisdiction = :j AND valid_to IS NULL),"
                    " (SELECT string_agg(concat_ws(':', code, public_name, email), ','"
                    "    ORDER BY code) FROM geo_router.offices WHERE jurisdiction = :j)))"
                ),
                {"j": jurisdiction},
            )
        )

    async def jurisdiction(self, code: str) -> sa.Row[Any] | None:
        """The jurisdiction's row (settings, ``retired_at``), or None when there is none."""
        result = await self.conn.execute(
            sa.select(jurisdictions).where(jurisdictions.c.code == code)
        )
        return result.first()

    async def jurisdictions(self) -> list[sa.Row[Any]]:
        result = await self.conn.execute(sa.select(jurisdictions).order_by(jurisdictions.c.code))
        return list(result)

    async def level_order(self, jurisdiction: str) -> list[str]:
        result = await self.conn.execute(
            sa.select(area_levels.c.code)
            .where(area_levels.c.jurisdiction == jurisdiction)
            .order_by(area_levels.c.rank)
        )
        return list(result.scalars())

    async def areas_at(self, jurisdiction: str, lat: float, long: float) -> list[MatchedArea]:
        point = sa.func.ST_SetSRID(sa.func.ST_MakePoint(long, lat), 4326)
        result = await self.conn.execute(
            sa.select(areas.c.level, areas.c.code, areas.c.name).where(
                areas.c.jurisdiction == jurisdiction,
                areas.c.valid_to.is_(None),
                sa.func.ST_Covers(areas.c.geom, point),
            )
        )
        return [MatchedArea(level=r.level, code=r.code, name=r.name) for r in result]

    async def rules(self, jurisdiction: str, service_code: str | None = None) -> list[Rule]:
        query = (
            sa.select(
                rules,
                offices.c.public_name,
                area_levels.c.name.label("area_level_name"),
                area_levels.c.article.label("area_level_article"),
                areas.c.name.label("area_name"),
            )
            .join(
                offices,
                sa.and_(
                    offices.c.jurisdiction == rules.c.jurisdiction,
                    offices.c.code == rules.c.office_code,
                ),
            )
            .outerjoin(
                area_levels,
                sa.and_(
                    area_levels.c.jurisdiction == rules.c.jurisdiction,
                    area_levels.c.code == rules.c.area_level,
                ),
            )
            .outerjoin(
                areas,
                sa.and_(
                    areas.c.jurisdiction == rules.c.jurisdiction,
                    areas.c.level == rules.c.area_level,
                    areas.c.code == rules.c.area_code,
                    areas.c.valid_to.is_(None),
                ),
            )
            .where(rules.c.jurisdiction == jurisdiction, rules.c.valid_to.is_(None))
            .order_by(rules.c.id)
        )
        if service_code is not None:
            query = query.where(rules.c.service_code == service_code)
        return [
            Rule(
                id=r.id,
                service_code=r.service_code,
                office=OfficeRef(code=r.office_code, name=r.public_name),
                priority=r.priority,
                area_level=r.area_level,
                area_code=r.area_code,
                area_level_name=r.area_level_name,
                area_level_article=r.area_level_article or "der",
                area_name=r.area_name,
            )
            for r in await self.conn.execute(query)
        ]

    async def areas_geojson(
        self, jurisdiction: str, level: str | None = None, code: str | None = None
    ) -> list[dict[str, Any]]:
        """Current areas as GeoJSON features (geometry from PostGIS, WGS84)."""
        query = (
            sa.select(
                areas.c.level,
                areas.c.code,
                areas.c.name,
                areas.c.version,
                areas.c.valid_from,
                sa.func.ST_AsGeoJSON(areas.c.geom, 6).label("geometry"),
            )
            .where(areas.c.jurisdiction == jurisdiction, areas.c.valid_to.is_(None))
            .order_by(areas.c.level, areas.c.code)
        )
        if level is not None:
            query = query.where(areas.c.level == level)
        if code is not None:
            query = query.where(areas.c.code == code)
        return [
            {
                "type": "Feature",
                "id": f"{r.level}/{r.code}",
                "properties": {
                    "level": r.level,
                    "code": r.code,
                    "name": r.name,
                    "version": r.version,
                    "valid_from": r.valid_from.isoformat(timespec="seconds"),
                },
                "geometry": json.loads(r.geometry),
            }
            for r in await self.conn.execute(query)
        ]

    async def office(self, jurisdiction: str, code: str) -> OfficeRef | None:
        row = (
            await self.conn.execute(
                sa.select(offices.c.code, offices.c.public_name).where(
                    offices.c.jurisdiction == jurisdiction, offices.c.code == code
                )
            )
        ).first()
        return OfficeRef(code=row.code, name=row.public_name) if row else None

    async def offices(self, jurisdiction: str) -> list[dict[str, Any]]:
        result = await self.conn.execute(
            sa.select(offices)
            .where(offices.c.jurisdiction == jurisdiction)
            .order_by(offices.c.code)
        )
        return [dict(r._mapping) for r in result]


@dataclass
class Decisions:
    """The routing decision per report, as the event that announced it (its exact JSON)."""

    conn: AsyncConnection

    async def get_many(
        self, report_ids: Sequence[UUID]
    ) -> dict[UUID, ReportRouted | ReportRoutingFailed]:
        if not report_ids:
            return {}
        rows = await self.conn.execute(
            sa.select(
                routing_decisions.c.report_id, routing_decisions.c.topic, routing_decisions.c.event
            ).where(routing_decisions.c.report_id.in_(report_ids))
        )
        return {
            r.report_id: (
                ReportRouted if r.topic == Topic.REPORT_ROUTED else ReportRoutingFailed
            ).model_validate_json(r.event)
            for r in rows
        }

    async def record(self, announced: Sequence[Announcement]) -> None:
        """Store (report id, event id, message) decisions; a later one for the same report (a
        staff override) replaces it."""
        if not announced:
            return
        # One statement over arrays: a 1,000-row VALUES list or executemany cost more in
        # compiling and binding than the database spent on the rows.
        await self.conn.execute(
            sa.text(
                "INSERT INTO geo_router.routing_decisions (report_id, event_id, topic, event)"
                " SELECT * FROM unnest(CAST(:reports AS uuid[]), CAST(:events AS uuid[]),"
                " CAST(:topics AS text[]), CAST(:payloads AS text[]))"
                " ON CONFLICT (report_id) DO UPDATE SET event_id = excluded.event_id,"
                " topic = excluded.topic, event = excluded.event, decided_at = now()"
            ),
            {
                "reports": [report_id for report_id, _, _ in announced],
                "events": [event_id for _, event_id, _ in announced],
                "topics": [m.topic for _, _, m in announced],
                "payloads": [m.payload.decode() for _, _, m in announced],
            },
        )


async def decisions_since(
    conn: AsyncConnection, moment: datetime, page: int = 1000
) -> AsyncIterator[list[ReportRouted | ReportRoutingFailed]]:
    """The decisions taken from ``moment`` on, oldest first, in pages (one streamed query: no
    index on decided_at needed)."""
    d = routing_decisions
    result = await conn.stream(
        sa.select(d.c.topic, d.c.event)
        .where(d.c.decided_at >= moment)
        .order_by(d.c.decided_at)
        .execution_options(yield_per=page)
    )
    async for rows in result.partitions(page):
        yield [
            (
                ReportRouted if r.topic == Topic.REPORT_ROUTED else ReportRoutingFailed
            ).model_validate_json(r.event)
            for r in rows
        ]


class UnitOfWork:
    """:class:`geo_router.ports.UnitOfWork` on one database transaction of the outbox."""

    def __init__(self, tx: Transaction) -> None:
        self.geography = Geography(tx.conn)
        self.decisions = Decisions(tx.conn)
        self._tx = tx

    async def publish(self, *events: Event | Message) -> None:
        await self._tx.publish(*events)

    async def first_delivery(self, event_id: UUID) -> bool:
        return await self._tx.first_delivery(event_id)

    async def decide_once(self, rows: PreparedDecisions) -> set[UUID]:
        """Store the decisions of reports not decided yet and stage their announcements, in
        one statement; returns the reports decided now. A report decided before (a redelivery,
        or a duplicate in flight) keeps its first decision and is not announced again.

        Decisions and outbox rows read one input (the announcements travel to PostgreSQL once),
        the outbox rows being those of the decisions that took place."""
        if not isinstance(rows, DecisionRows):
            raise TypeError(f"decisions prepared by DecisionRows.of, not {type(rows).__name__}")
        if not rows.by_key:
            return set()
        staged = await self._tx.publish_rows(
            MessageRows(_ANNOUNCE_DECIDED, {}, [m for _, m in rows.by_key.values()]),
            along_with=Writes(_DECIDE_ONCE, rows.parameters),
        )
        return {rows.by_key[row.message.key][0] for row in staged}


_DECIDE_ONCE = (
    "input AS (SELECT * FROM ROWS FROM ("
    " unnest(CAST(:reports AS uuid[])), unnest(CAST(:events AS uuid[])),"
    " unnest(CAST(:topics AS text[])), unnest(CAST(:payloads AS bytea[])),"
    " jsonb_array_elements(CAST(:headers AS jsonb)))"
    " AS i(report_id, event_id, topic, payload, headers)),"
    " decided AS (INSERT INTO geo_router.routing_decisions"
    " (report_id, event_id, topic, event)"
    " SELECT report_id, event_id, topic, convert_from(payload, 'UTF8') FROM input"
    " ON CONFLICT (report_id) DO NOTHING RETURNING report_id)"
)
_ANNOUNCE_DECIDED = (
    "SELECT i.topic, convert_to(i.report_id::text, 'UTF8') AS key, i.payload, i.headers"
    " FROM input i JOIN decided d USING (report_id)"
)


@dataclass(frozen=True)
class DecisionRows:
    """A batch's decisions as the parameters of one statement: built while the previous batch
    is being written, so that the write itself only sends them."""

    parameters: dict[str, Any]
    by_key: dict[bytes | None, tuple[UUID, Message]]

    @classmethod
    def of(cls, announced: Sequence[Announcement]) -> DecisionRows:
        """:class:`geo_router.ports.PrepareDecisions` for :meth:`UnitOfWork.decide_once`."""
        return cls(
            {
                "reports": [report_id for report_id, _, _ in announced],
                "events": [event_id for _, event_id, _ in announced],
                "topics": [m.topic for _, _, m in announced],
                "payloads": [m.payload for _, _, m in announced],  # bytes: no decoding twice
                "headers": json.dumps([m.headers for _, _, m in announced]),
            },
            {m.key: (report_id, m) for report_id, _, m in announced},
        )


@asynccontextmanager
async def unit_of_work(outbox_: Outbox, *, autocommit: bool = False) -> AsyncIterator[UnitOfWork]:
    async with outbox_.transaction(autocommit=autocommit) as tx:
        yield UnitOfWork(tx)


def unit_of_work_factory(outbox_: Outbox) -> UnitOfWorkFactory:
    """:class:`geo_router.ports.UnitOfWorkFactory` over ``outbox_``'s database."""

    def open_unit(*, autocommit: bool = False) -> AbstractAsyncContextManager[UnitOfWork]:
        return unit_of_work(outbox_, autocommit=autocommit)

    return open_unit
