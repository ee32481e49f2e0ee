"""Intake's tables (schema ``intake``) and the unit of work that writes reports with their events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from intake.domain import Report, StatusChange
from mm_shared.events import Event, OfficeRef, ReportStatus
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
        await self.add_many([report])

    async def add_many(self, new_reports: Sequence[Report]) -> None:
        await self.conn.execute(
            reports.insert(),
            [
                {
                    "id": r.id,
                    "jurisdiction": r.jurisdiction,
                    "service_code": r.service_code,
                    "lat": r.lat,
                    "long": r.long,
                    "description": r.description,
                    "status": r.status.value,
                    "office_code": r.office.code if r.office else None,
                    "office_name": r.office.name if r.office else None,
                    "requested_at": r.requested_at,
                    "updated_at": r.updated_at or r.requested_at,
                }
                for r in new_reports
            ],
        )
        await self._add_history_many([(r.id, r.history) for r in new_reports])

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

    async def get_many_for_update(self, report_ids: Sequence[UUID]) -> dict[UUID, Report]:
        """Current state of several reports, locked, without their history (for batches that
        only append to it)."""
        if not report_ids:
            return {}
        rows = await self.conn.execute(
            sa.select(reports)
            .where(reports.c.id.in_(report_ids))
            .order_by(reports.c.id)
            .with_for_update()
        )
        return {row.id: _row_to_report(row, []) for row in rows}

    async def save_changes(self, report: Report, new_changes: Sequence[StatusChange]) -> None:
        await self.save_many([(report, new_changes)])

    async def save_many(self, changed: Sequence[tuple[Report, Sequence[StatusChange]]]) -> None:
        """Write the new state and the new history entries of several reports."""
        if not changed:
            return
        await self.conn.execute(
            reports.update()
            .where(reports.c.id == sa.bindparam("report_id"))
            .values(
                status=sa.bindparam("new_status"),
                office_code=sa.bindparam("new_office_code"),
                office_name=sa.bindparam("new_office_name"),
                updated_at=sa.bindparam("new_updated_at"),
            ),
            [
                {
                    "report_id": r.id,
                    "new_status": r.status.value,
                    "new_office_code": r.office.code if r.office else None,
                    "new_office_name": r.office.name if r.office else None,
                    "new_updated_at": r.updated_at,
                }
                for r, _ in changed
            ],
        )
        await self._add_history_many([(r.id, changes) for r, changes in changed])

    async def _add_history_many(
        self, changes_by_report: Sequence[tuple[UUID, Sequence[StatusChange]]]
    ) -> None:
        rows = [
            {
                "report_id": report_id,
                "status": c.status.value,
                "previous_status": c.previous_status.value if c.previous_status else None,
                "changed_at": c.changed_at,
                "changed_by": c.changed_by,
                "public_note": c.public_note,
                "internal_note": c.internal_note,
            }
            for report_id, changes in changes_by_report
            for c in changes
        ]
        if rows:
            await self.conn.execute(status_history.insert(), rows)


class UnitOfWork:
    """One transaction over intake's reports, its outbox and its inbox."""

    def __init__(self, tx: Transaction) -> None:
        self.reports = ReportRepository(tx.conn)
        self.publish = tx.publish
        self.first_delivery = tx.first_delivery
        self.first_deliveries = tx.first_deliveries


@asynccontextmanager
async def unit_of_work(outbox_: Outbox) -> AsyncIterator[UnitOfWork]:
    async with outbox_.transaction() as tx:
        yield UnitOfWork(tx)


@dataclass
class _PendingSubmission:
    report: Report
    events: Sequence[Event]
    done: asyncio.Future[None]


class SubmissionWriter:
    """Group commit for new reports: concurrent submissions share one transaction.

    Under load, one BEGIN … COMMIT (a few round trips) carries hundreds of reports instead of
    one each; alone, a submission is written at once, as before. A request is answered only
    after its transaction committed, so "accepted" still means "durable".
    """

    def __init__(self, outbox: Outbox, max_batch: int = 500) -> None:
        self._outbox = outbox
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_PendingSubmission] = asyncio.Queue()

    async def write(self, report: Report, events: Sequence[Event]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_PendingSubmission(report, events, done))
        await done

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._outbox.transaction() as tx:
                    await ReportRepository(tx.conn).add_many([p.report for p in batch])
                    await tx.publish(*(e for p in batch for e in p.events))
            except Exception as exc:
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(exc)
                continue
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_result(None)
