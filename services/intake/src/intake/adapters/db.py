"""Intake's tables (schema ``intake``) and the unit of work that writes reports with their events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from intake.domain import Report, StatusChange
from mm_shared.events import OfficeRef, ReportStatus
from mm_shared.outbox import Outbox, Transaction, inbox_table, outbox_table

SCHEMA = "intake"
metadata = sa.MetaData(schema=SCHEMA)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("jurisdiction", sa.Text, nullable=False),
    sa.Column("service_code", sa.Text, nullable=False),
    sa.Column("lat", sa.Float, nullable=False),
    sa.Column("long", sa.Float, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("office_code", sa.Text),
    sa.Column("office_name", sa.Text),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

status_history = sa.Table(
    "status_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "report_id", pg.UUID(as_uuid=True), sa.ForeignKey(reports.c.id), nullable=False, index=True
    ),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("previous_status", sa.Text),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("changed_by", sa.Text, nullable=False),
    sa.Column("public_note", sa.Text),
    sa.Column("internal_note", sa.Text),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


def _row_to_report(row: sa.Row[tuple[object, ...]], history: list[StatusChange]) -> Report:
    m = row._mapping
    office = OfficeRef(code=m["office_code"], name=m["office_name"]) if m["office_code"] else None
    return Report(
        id=m["id"],
        jurisdiction=m["jurisdiction"],
        service_code=m["service_code"],
        lat=m["lat"],
        long=m["long"],
        description=m["description"],
        requested_at=m["requested_at"],
        status=ReportStatus(m["status"]),
        office=office,
        updated_at=m["updated_at"],
        history=history,
    )


@dataclass
class ReportRepository:
    conn: AsyncConnection

    async def add(self, report: Report) -> None:
        await self.conn.execute(
            reports.insert().values(
                id=report.id,
                jurisdiction=report.jurisdiction,
                service_code=report.service_code,
                lat=report.lat,
                long=report.long,
                description=report.description,
                status=report.status.value,
                office_code=report.office.code if report.office else None,
                office_name=report.office.name if report.office else None,
                requested_at=report.requested_at,
                updated_at=report.updated_at or report.requested_at,
            )
        )
        await self._add_history(report.id, report.history)

    async def get(self, report_id: UUID, *, for_update: bool = False) -> Report | None:
        query = sa.select(reports).where(reports.c.id == report_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        if row is None:
            return None
        history_rows = await self.conn.execute(
            sa.select(status_history)
            .where(status_history.c.report_id == report_id)
            .order_by(status_history.c.id)
        )
        history = [
            StatusChange(
                status=ReportStatus(h.status),
                previous_status=ReportStatus(h.previous_status) if h.previous_status else None,
                changed_at=h.changed_at,
                changed_by=h.changed_by,
                public_note=h.public_note,
                internal_note=h.internal_note,
            )
            for h in history_rows
        ]
        return _row_to_report(row, history)

    async def save_changes(self, report: Report, new_changes: Sequence[StatusChange]) -> None:
        await self.conn.execute(
            reports.update()
            .where(reports.c.id == report.id)
            .values(
                status=report.status.value,
                office_code=report.office.code if report.office else None,
                office_name=report.office.name if report.office else None,
                updated_at=report.updated_at,
            )
        )
        await self._add_history(report.id, new_changes)

    async def _add_history(self, report_id: UUID, changes: Sequence[StatusChange]) -> None:
        if not changes:
            return
        await self.conn.execute(
            status_history.insert(),
            [
                {
                    "report_id": report_id,
                    "status": c.status.value,
                    "previous_status": c.previous_status.value if c.previous_status else None,
                    "changed_at": c.changed_at,
                    "changed_by": c.changed_by,
                    "public_note": c.public_note,
                    "internal_note": c.internal_note,
                }
                for c in changes
            ],
        )


class UnitOfWork:
    """One transaction over intake's reports, its outbox and its inbox."""

    def __init__(self, tx: Transaction) -> None:
        self.reports = ReportRepository(tx.conn)
        self.publish = tx.publish
        self.first_delivery = tx.first_delivery


@asynccontextmanager
async def unit_of_work(outbox_: Outbox) -> AsyncIterator[UnitOfWork]:
    async with outbox_.transaction() as tx:
        yield UnitOfWork(tx)
