"""What the staff console reads beyond single tickets: the offices' canned responses, the
statistics, and exports that stream (a server-side cursor, a chunk of rows at a time, so
100,000 rows take no more memory than 2,000)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from intake.adapters.db import conditions, metadata, order_by, reports, status_history
from intake.domain import CannedResponse as CannedResponse
from intake.domain import TitleTaken as TitleTaken
from intake.ports import Statistics as Statistics
from intake.ports import TicketFilter
from mm_shared.events import ReportStatus

canned_responses = sa.Table(
    "canned_responses",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("jurisdiction", sa.Text, nullable=False),
    sa.Column("office_code", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("jurisdiction", "office_code", "title"),
)

CLOSED_STATUSES = [
    ReportStatus.RESOLVED.value,
    ReportStatus.REJECTED.value,
    ReportStatus.DUPLICATE.value,
]


@dataclass
class CannedResponses:
    conn: AsyncConnection

    async def of_offices(
        self, jurisdiction: str | None, offices: frozenset[str] | None
    ) -> list[CannedResponse]:
        """Of ``offices`` (None: all) in ``jurisdiction`` (None: every one)."""
        query = sa.select(canned_responses).order_by(
            canned_responses.c.jurisdiction,
            canned_responses.c.office_code,
            canned_responses.c.title,
        )
        if jurisdiction is not None:
            query = query.where(canned_responses.c.jurisdiction == jurisdiction)
        if offices is not None:
            query = query.where(canned_responses.c.office_code.in_(sorted(offices)))
        return [CannedResponse(**r._mapping) for r in await self.conn.execute(query)]

    async def get(self, response_id: int) -> CannedResponse | None:
        row = (
            await self.conn.execute(
                sa.select(canned_responses).where(canned_responses.c.id == response_id)
            )
        ).first()
        return CannedResponse(**row._mapping) if row else None

    async def add(self, response: CannedResponse) -> CannedResponse:
        values = {k: v for k, v in vars(response).items() if k != "id"}
        row = (
            await self.conn.execute(
                pg.insert(canned_responses)
                .values(**values)
                .on_conflict_do_nothing()
                .returning(canned_responses)
            )
        ).first()
        if row is None:
            raise TitleTaken(response.title)
        return CannedResponse(**row._mapping)

    async def replace(self, response: CannedResponse) -> CannedResponse:
        """A new title and text for a response of the same jurisdiction and office."""
        clash = await self.conn.scalar(
            sa.select(canned_responses.c.id).where(
                canned_responses.c.jurisdiction == response.jurisdiction,
                canned_responses.c.office_code == response.office_code,
                canned_responses.c.title == response.title,
                canned_responses.c.id != response.id,
            )
        )
        if clash is not None:
            raise TitleTaken(response.title)
        await self.conn.execute(
            canned_responses.update()
            .where(canned_responses.c.id == response.id)
            .values(
                title=response.title,
                body=response.body,
                updated_by=response.updated_by,
                updated_at=response.updated_at,
            )
        )
        return response

    async def delete(self, response_id: int) -> None:
        await self.conn.execute(
            canned_responses.delete().where(canned_responses.c.id == response_id)
        )


#: Rows fetched per round trip while an export streams.
CHUNK_ROWS = 2000


async def stream_rows(
    engine: AsyncEngine, query: sa.Select[Any]
) -> AsyncIterator[Sequence[sa.Row[Any]]]:
    """The rows of ``query`` in chunks, through a server-side cursor (its own connection, held
    while the caller consumes)."""
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=CHUNK_ROWS))
        async for chunk in result.partitions(CHUNK_ROWS):
            yield chunk


def queue_export(found: TicketFilter, sort: str) -> sa.Select[Any]:
    """The staff queue's tickets, all columns the office needs (no history, no contact)."""
    return (
        sa.select(
            reports.c.id,
            reports.c.jurisdiction,
            reports.c.status,
            reports.c.service_code,
            reports.c.office_code,
            reports.c.areas,
            reports.c.lat,
            reports.c.long,
            reports.c.address,
            reports.c.description,
            reports.c.requested_at,
            reports.c.updated_at,
            reports.c.expected_at,
            reports.c.duplicate_of,
        )
        .where(*conditions(found))
        .order_by(*order_by(sort))
    )


def open_data_export(since: datetime | None) -> sa.Select[Any]:
    """Every report, for anyone: no description, address or attributes (free text a citizen
    wrote may name people or number plates), no notes, nothing of the reporter."""
    query = sa.select(
        reports.c.id,
        reports.c.status,
        reports.c.service_code,
        reports.c.office_name,
        reports.c.areas,
        reports.c.lat,
        reports.c.long,
        reports.c.requested_at,
        reports.c.updated_at,
        reports.c.expected_at,
    ).order_by(reports.c.requested_at, reports.c.id)
    if since is not None:
        query = query.where(reports.c.requested_at >= since)
    return query


async def statistics(
    conn: AsyncConnection,
    jurisdiction: str | None,
    offices: frozenset[str] | None,
    *,
    start: datetime | None,
    end: datetime | None,
    timezone: str,
) -> Statistics:
    """Reports that arrived between ``start`` and ``end`` and now lie with ``offices`` (all
    when None) of ``jurisdiction`` (every one when None)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if jurisdiction is not None:
        conditions.append(reports.c.jurisdiction == jurisdiction)
    if offices is not None:
        conditions.append(reports.c.office_code.in_(sorted(offices)))
    if start is not None:
        conditions.append(reports.c.requested_at >= start)
    if end is not None:
        conditions.append(reports.c.requested_at < end)
    chosen = sa.select(reports).where(*conditions).cte("chosen")

    per_category = await conn.execute(
        sa.select(chosen.c.service_code, sa.func.count())
        .group_by(chosen.c.service_code)
        .order_by(sa.func.count().desc(), chosen.c.service_code)
    )
    area = sa.func.jsonb_array_elements(chosen.c.areas).table_valued("value").alias("area")
    level, code, name = (area.c.value.op("->>")(key) for key in ("level", "code", "name"))
    per_area = await conn.execute(
        sa.select(level, code, name, sa.func.count())
        .select_from(chosen.join(area, sa.true()))
        .group_by(level, code, name)
        .order_by(level, sa.func.count().desc(), code)
    )
    month = sa.func.to_char(sa.func.timezone(timezone, chosen.c.requested_at), "YYYY-MM")
    per_month = await conn.execute(
        sa.select(month, sa.func.count()).group_by(month).order_by(month)
    )
    # When each report was first assigned, and (if closed now) when it was closed last.
    first_assigned = (
        sa.select(sa.func.min(status_history.c.changed_at))
        .where(
            status_history.c.report_id == chosen.c.id,
            status_history.c.status == ReportStatus.ASSIGNED.value,
        )
        .scalar_subquery()
    )
    last_closed = (
        sa.select(sa.func.max(status_history.c.changed_at))
        .where(
            status_history.c.report_id == chosen.c.id,
            status_history.c.status.in_(CLOSED_STATUSES),
            status_history.c.previous_status.is_distinct_from(status_history.c.status),
        )
        .scalar_subquery()
    )
    spans = sa.select(
        chosen.c.requested_at,
        chosen.c.expected_at,
        first_assigned.label("assigned_at"),
        sa.case((chosen.c.status.in_(CLOSED_STATUSES), last_closed)).label("closed_at"),
    ).subquery()

    def median_hours(until: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        seconds = sa.func.extract("epoch", until - spans.c.requested_at)
        return sa.func.percentile_cont(0.5).within_group(seconds) / 3600

    timings = (
        await conn.execute(
            sa.select(
                median_hours(spans.c.assigned_at),
                median_hours(spans.c.closed_at),
                sa.func.count(spans.c.closed_at),
                sa.func.count().filter(spans.c.closed_at <= spans.c.expected_at),
            )
        )
    ).one()
    return Statistics(
        per_category=[(c, int(n)) for c, n in per_category],
        per_area=[(lv, cd, nm, int(n)) for lv, cd, nm, n in per_area],
        per_month=[(m, int(n)) for m, n in per_month],
        median_hours_to_assignment=_rounded(timings[0]),
        median_hours_to_closing=_rounded(timings[1]),
        closed=int(timings[2]),
        closed_within_service_level=int(timings[3]),
    )


def _rounded(hours: Any) -> float | None:
    return None if hours is None else round(float(hours), 2)


@dataclass
class SqlOfficeStatistics:
    """The statistics of :mod:`intake.ports`, over one connection."""

    conn: AsyncConnection

    async def of(
        self,
        jurisdiction: str | None,
        offices: frozenset[str] | None,
        *,
        start: datetime | None,
        end: datetime | None,
        timezone: str,
    ) -> Statistics:
        return await statistics(
            self.conn, jurisdiction, offices, start=start, end=end, timezone=timezone
        )
