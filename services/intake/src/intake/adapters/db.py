"""Intake's tables (schema ``intake``) and the unit of work that writes reports with their events."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from intake.domain import Photo, Report, StatusChange, distance_m
from intake.ports import ReportSearch, UsedKey
from intake.ports import TicketFilter as TicketFilter
from mm_shared.events import (
    Event,
    MatchedArea,
    OfficeRef,
    ReporterContactSubmitted,
    ReportStatus,
    ReportStatusChanged,
    ReportSubmitted,
)
from mm_shared.outbox import (
    Message,
    Outbox,
    StagedRow,
    Transaction,
    Writes,
    inbox_table,
    outbox_table,
)

if TYPE_CHECKING:
    from intake.adapters.console import CannedResponses, SqlOfficeStatistics
    from intake.adapters.staff import SqlStaffAccounts

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
    sa.Column("address", sa.Text),
    sa.Column("media_url", sa.Text),
    sa.Column("attributes", pg.JSONB, nullable=False),
    sa.Column("token", sa.Text),
    sa.Column("resubmitted_at", sa.DateTime(timezone=True)),
    sa.Column("areas", pg.JSONB, nullable=False),
    sa.Column("duplicate_of", pg.UUID(as_uuid=True)),
    sa.Column("expected_at", sa.DateTime(timezone=True)),
)

photos = sa.Table(
    "photos",
    metadata,
    sa.Column("report_id", pg.UUID(as_uuid=True), sa.ForeignKey(reports.c.id), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

reminder_runs = sa.Table(
    "reminder_runs",
    metadata,
    sa.Column("jurisdiction", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

jurisdiction_boundaries = sa.Table(
    "jurisdiction_boundaries",
    metadata,
    sa.Column("jurisdiction", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("boundary", sa.Text, nullable=False),
    sa.Column(
        "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("name", sa.Text),
    sa.Column("precedence", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column(
        "disabled_service_codes",
        pg.ARRAY(sa.Text),
        nullable=False,
        server_default=sa.text("'{}'::text[]"),
    ),
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
    #: The event that announced this entry, exactly (ReportSubmitted for the first,
    #: ReportStatusChanged after); NULL for internal notes and entries from before 0008.
    sa.Column("event", pg.JSONB),
)

#: Reporters' contact events as published, kept for ``INTAKE_CONTACT_KEPT_DAYS`` so that a
#: contact a broker lost before the notifier had it can be re-announced (migration 0011).
kept_contacts = sa.Table(
    "kept_contacts",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("event", pg.JSONB, nullable=False),
    sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False, index=True),
    schema="intake",
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


OPEN_STATUSES = [
    ReportStatus.RECEIVED.value,
    ReportStatus.ASSIGNED.value,
    ReportStatus.IN_PROGRESS.value,
]

#: The queue's sort keys (``-`` first: descending).
SORT_KEYS = ("requested_at", "updated_at", "expected_at", "status", "service_code")
_UUID_PREFIX = re.compile(r"[0-9a-f-]{4,36}")


def conditions(found: TicketFilter, *, with_status: bool = True) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions of what ``found`` selects (``with_status``: its statuses too)."""
    conds: list[sa.ColumnElement[bool]] = []
    if found.jurisdiction is not None:
        conds.append(reports.c.jurisdiction == found.jurisdiction)
    if found.offices is not None:
        conds.append(reports.c.office_code.in_(sorted(found.offices)))
    if with_status and found.statuses:
        conds.append(reports.c.status.in_([s.value for s in found.statuses]))
    if found.service_codes:
        conds.append(reports.c.service_code.in_(found.service_codes))
    if found.area:
        conds.append(_in_area(found.area))
    if found.older_than:
        conds.append(reports.c.requested_at < found.older_than)
    if found.newer_than:
        conds.append(reports.c.requested_at >= found.newer_than)
    if found.overdue is not None:
        late = sa.and_(reports.c.status.in_(OPEN_STATUSES), reports.c.expected_at < found.now)
        conds.append(late if found.overdue else sa.not_(late))
    if found.q and found.q.strip():
        conds.append(_matching(found.q.strip()))
    return conds


def _matching(q: str) -> sa.ColumnElement[bool]:
    """Words in the description (all of them, any case; a trigram index serves it), or, for
    something shaped like one, the start of a report id."""
    words = [w for w in q.split() if w]
    text = sa.and_(
        *(reports.c.description.ilike(f"%{_like_escaped(w)}%", escape="\\") for w in words)
    )
    if _UUID_PREFIX.fullmatch(q.lower()):
        return sa.or_(
            sa.cast(reports.c.id, sa.Text).like(f"{q.lower()}%"),
            text,
        )
    return text


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def order_by(sort: str) -> list[sa.UnaryExpression[Any]]:
    """``sort`` is one of :data:`SORT_KEYS`, ``-`` first for descending; the id breaks ties
    so that pages do not overlap."""
    column = reports.c[sort.lstrip("-")]
    return [column.desc() if sort.startswith("-") else column.asc(), reports.c.id.asc()]


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
        address=m["address"],
        media_url=m["media_url"],
        attributes=m["attributes"] or {},
        token=m["token"] or "",
        areas=[MatchedArea.model_validate(a) for a in m["areas"] or []],
        duplicate_of=m["duplicate_of"],
        expected_at=m["expected_at"],
    )


def _in_area(area: str) -> sa.ColumnElement[bool]:
    """Reports routed into an area, named by its code or its name (any level)."""
    return sa.or_(
        reports.c.areas.contains([{"code": area}]), reports.c.areas.contains([{"name": area}])
    )


@dataclass
class ReportRepository:
    """Reports with their history and photos (:class:`intake.ports.Reports`), in one
    transaction; writes stage their events in the same statement."""

    tx: Transaction

    @property
    def conn(self) -> AsyncConnection:
        return self.tx.conn

    async def add(self, new_reports: Sequence[Report], events: Sequence[Event]) -> None:
        await self.tx.publish(*events, along_with=added(new_reports, contacts_among(events)))

    async def save(
        self,
        changed: Sequence[tuple[Report, Sequence[StatusChange]]],
        events: Sequence[Event],
        *,
        new_photos: Sequence[tuple[UUID, int, Photo]] = (),
    ) -> None:
        await self.tx.publish(*events, along_with=saved(changed, new_photos=new_photos))

    async def save_unless_changed(
        self,
        changed: Sequence[tuple[Report, Sequence[StatusChange]]],
        events: Sequence[ReportStatusChanged],
        *,
        read_updated_at: Mapping[UUID, datetime | None],
        deliveries: Sequence[tuple[UUID, UUID]],
    ) -> set[UUID]:
        staged = await self.tx.publish(
            *events,
            along_with=saved(changed, unless_changed_since=read_updated_at, deliveries=deliveries),
        )
        # Only the events of saved reports are staged, keyed by report id.
        done = {row.message.key for row in staged}
        return {r.id for r, _ in changed if str(r.id).encode() in done}

    async def get(self, report_id: UUID, *, for_update: bool = False) -> Report | None:
        query = sa.select(reports).where(reports.c.id == report_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        if row is None:
            return None
        report = _row_to_report(row, [])
        await self._add_details({report.id: report})
        return report

    async def _add_details(self, found: dict[UUID, Report]) -> None:
        """Fill in the history and photos of already loaded reports (two queries in all)."""
        if not found:
            return
        for h in await self.conn.execute(
            sa.select(status_history)
            .where(status_history.c.report_id.in_(list(found)))
            .order_by(status_history.c.id)
        ):
            found[h.report_id].history.append(
                StatusChange(
                    status=ReportStatus(h.status),
                    previous_status=ReportStatus(h.previous_status) if h.previous_status else None,
                    changed_at=h.changed_at,
                    changed_by=h.changed_by,
                    public_note=h.public_note,
                    internal_note=h.internal_note,
                )
            )
        for p in await self.conn.execute(
            sa.select(photos).where(photos.c.report_id.in_(list(found))).order_by(photos.c.position)
        ):
            found[p.report_id].photos.append(Photo(p.digest, p.content_type, p.width, p.height))

    async def id_for_token(self, token: str) -> UUID | None:
        found: UUID | None = await self.conn.scalar(
            sa.select(reports.c.id).where(reports.c.token == token)
        )
        return found

    async def search(self, criteria: ReportSearch) -> list[Report]:
        """Reports by the Open311 filters, a bounding box or an area (code or name), newest
        first, with their history and photos."""
        c = criteria
        query = sa.select(reports).order_by(reports.c.requested_at.desc()).limit(c.limit)
        if c.ids:
            query = query.where(reports.c.id.in_(c.ids))
        else:
            if c.service_codes:
                query = query.where(reports.c.service_code.in_(c.service_codes))
            if c.start:
                query = query.where(reports.c.requested_at >= c.start)
            if c.end:
                query = query.where(reports.c.requested_at <= c.end)
            if c.statuses:
                query = query.where(reports.c.status.in_([s.value for s in c.statuses]))
            if c.bbox:
                min_long, min_lat, max_long, max_lat = c.bbox
                query = query.where(
                    reports.c.lat.between(min_lat, max_lat),
                    reports.c.long.between(min_long, max_long),
                )
            if c.area:
                query = query.where(_in_area(c.area))
        if c.jurisdiction:
            query = query.where(reports.c.jurisdiction == c.jurisdiction)
        rows = (await self.conn.execute(query)).all()
        found = {row.id: _row_to_report(row, []) for row in rows}
        await self._add_details(found)
        return [found[row.id] for row in rows]

    async def page(
        self, found: TicketFilter, *, sort: str = "-requested_at", offset: int = 0, limit: int = 50
    ) -> list[Report]:
        """One page of the tickets ``found`` selects, sorted."""
        rows = await self.conn.execute(
            sa.select(reports)
            .where(*conditions(found))
            .order_by(*order_by(sort))
            .offset(offset)
            .limit(limit)
        )
        return [_row_to_report(r, []) for r in rows]

    async def status_counts(self, found: TicketFilter) -> dict[str, int]:
        """How many tickets ``found`` selects per status, its status filter aside (the
        queue's tabs)."""
        counts = await self.conn.execute(
            sa.select(reports.c.status, sa.func.count())
            .where(*conditions(found, with_status=False))
            .group_by(reports.c.status)
        )
        return {status: n for status, n in counts}

    async def open_tickets(self) -> list[Report]:
        rows = await self.conn.execute(
            sa.select(reports).where(
                reports.c.status.in_([ReportStatus.ASSIGNED.value, ReportStatus.IN_PROGRESS.value])
            )
        )
        return [_row_to_report(r, []) for r in rows]

    async def open_by_office(self) -> list[tuple[str, str, int, datetime]]:
        """(jurisdiction, office, open tickets, oldest request)."""
        rows = await self.conn.execute(
            sa.select(
                reports.c.jurisdiction,
                reports.c.office_code,
                sa.func.count(),
                sa.func.min(reports.c.requested_at),
            )
            .where(reports.c.status.in_(OPEN_STATUSES), reports.c.office_code.is_not(None))
            .group_by(reports.c.jurisdiction, reports.c.office_code)
        )
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]

    async def claim_reminder_day(self, jurisdiction: str, day: date) -> bool:
        claimed = await self.conn.scalar(
            pg.insert(reminder_runs)
            .values(jurisdiction=jurisdiction, day=day)
            .on_conflict_do_nothing()
            .returning(reminder_runs.c.day)
        )
        return claimed is not None

    async def open_nearby(
        self, service_code: str, lat: float, long: float, radius_m: float
    ) -> list[Report]:
        """Open reports of a category within ``radius_m``: candidates by a bounding box on the
        (service_code, lat) index, then the exact distance."""
        dlat = radius_m / 111_320
        dlong = radius_m / (111_320 * max(math.cos(math.radians(lat)), 0.01))
        rows = await self.conn.execute(
            sa.select(reports).where(
                reports.c.service_code == service_code,
                reports.c.lat.between(lat - dlat, lat + dlat),
                reports.c.long.between(long - dlong, long + dlong),
                reports.c.status.in_(OPEN_STATUSES),
            )
        )
        nearby = [_row_to_report(r, []) for r in rows]
        return [r for r in nearby if distance_m(lat, long, r.lat, r.long) <= radius_m]

    async def unrouted_since(self, before: datetime, limit: int = 500) -> list[Report]:
        rows = await self.conn.execute(
            sa.select(reports)
            .where(
                reports.c.status == ReportStatus.RECEIVED.value,
                reports.c.requested_at < before,
                sa.or_(reports.c.resubmitted_at.is_(None), reports.c.resubmitted_at < before),
            )
            .order_by(reports.c.requested_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_row_to_report(r, []) for r in rows]

    async def mark_resubmitted(self, report_ids: Sequence[UUID]) -> None:
        await self.conn.execute(
            reports.update()
            .where(reports.c.id.in_(report_ids))
            .values(resubmitted_at=sa.func.now())
        )

    async def unprocessed(
        self, deliveries: Sequence[tuple[UUID, UUID]]
    ) -> tuple[set[UUID], dict[UUID, Report]]:
        """For (event id, report id) pairs: the events not processed yet, and the current state
        of the reports they concern (without history: for batches that only append to it)."""
        if not deliveries:
            return set(), {}
        rows = (await self.conn.execute(_UNPROCESSED, _delivery_arrays(deliveries))).all()
        fresh = {row.event_id for row in rows}
        return fresh, {row.id: _row_to_report(row, []) for row in rows if row.id is not None}


_DELIVERED = (
    "delivered AS (SELECT * FROM ROWS FROM (unnest(CAST(:events AS uuid[])),"
    " unnest(CAST(:delivered_reports AS uuid[]))) AS d(event_id, report_id))"
)
_UNPROCESSED = sa.text(
    f"WITH {_DELIVERED} SELECT delivered.event_id, r.* FROM delivered"
    " LEFT JOIN intake.reports r ON r.id = delivered.report_id"
    " WHERE NOT EXISTS (SELECT FROM intake.processed_events p"
    " WHERE p.event_id = delivered.event_id)"
)


def _delivery_arrays(deliveries: Sequence[tuple[UUID, UUID]]) -> dict[str, list[UUID]]:
    return {
        "events": [event_id for event_id, _ in deliveries],
        "delivered_reports": [report_id for _, report_id in deliveries],
    }


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    # UUIDs and datetimes in their ISO text forms, which PostgreSQL reads back exactly, and
    # events as their JSON: pydantic's serialiser writes them itself, where json.dumps called
    # back into Python for each one.
    return _JSON.dump_json(rows).decode()


_JSON: TypeAdapter[Any] = TypeAdapter(Any)


def _history_rows(
    changes_by_report: Iterable[tuple[UUID, Sequence[StatusChange]]],
) -> list[dict[str, Any]]:
    return [
        {
            "report_id": report_id,
            "status": c.status.value,
            "previous_status": c.previous_status.value if c.previous_status else None,
            "changed_at": c.changed_at,
            "changed_by": c.changed_by,
            "public_note": c.public_note,
            "internal_note": c.internal_note,
            "event": c.announced,
        }
        for report_id, changes in changes_by_report
        for c in changes
    ]


def _report_row(r: Report) -> dict[str, Any]:
    return {
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
        "address": r.address,
        "media_url": r.media_url,
        "attributes": r.attributes,
        "token": r.token,
        "areas": r.areas,
        "duplicate_of": r.duplicate_of,
        "expected_at": r.expected_at,
    }


_NEW_PHOTOS = (
    "new_photos AS (INSERT INTO intake.photos SELECT * FROM"
    " jsonb_populate_recordset(NULL::intake.photos, CAST(:photos AS jsonb)))"
)
# Rows travel as one JSON array per table, read back into the table's own row type:
# a batch of any size is one statement with a handful of parameters.
_NEW_HISTORY = (
    "new_history AS (INSERT INTO intake.status_history"
    " (report_id, status, previous_status, changed_at, changed_by, public_note, internal_note,"
    " event) SELECT report_id, status, previous_status, changed_at, changed_by, public_note,"
    " internal_note, event FROM jsonb_populate_recordset(NULL::intake.status_history,"
    " CAST(:history AS jsonb)) WHERE report_id IN (SELECT id FROM saved_reports))"
)
_ADD_REPORTS = (
    "new_reports AS (INSERT INTO intake.reports SELECT * FROM"
    " jsonb_populate_recordset(NULL::intake.reports, CAST(:reports AS jsonb))),"
    f" {_NEW_PHOTOS},"
    # Every new report counts as saved (the history's filter asks).
    " saved_reports AS (SELECT id FROM jsonb_to_recordset(CAST(:reports AS jsonb)) AS r(id uuid)),"
    + _NEW_HISTORY
)
_SAVE_REPORTS = (
    "changed AS (SELECT * FROM jsonb_to_recordset(CAST(:reports AS jsonb)) AS c(id uuid,"
    " read_updated_at timestamptz, status text, office_code text, office_name text,"
    " updated_at timestamptz, areas jsonb, duplicate_of uuid)),"
    " saved_reports AS (UPDATE intake.reports r SET status = c.status,"
    " office_code = c.office_code, office_name = c.office_name, updated_at = c.updated_at,"
    " areas = c.areas, duplicate_of = c.duplicate_of FROM changed c"
    " WHERE r.id = c.id AND (c.read_updated_at IS NULL OR r.updated_at = c.read_updated_at)"
    " RETURNING r.id), " + _NEW_HISTORY
)
# Deliveries are recorded as processed unless their report's change did not take place.
_SAVE_DELIVERED = (
    f", {_DELIVERED}, processed AS (INSERT INTO intake.processed_events (event_id)"
    " SELECT event_id FROM delivered WHERE report_id IN (SELECT id FROM saved_reports)"
    " OR report_id NOT IN (SELECT id FROM changed) ON CONFLICT DO NOTHING)"
)


def _photo_rows(photos_: Iterable[tuple[UUID, int, Photo]]) -> str:
    return _json_rows(
        [
            {
                "report_id": report_id,
                "position": position,
                "digest": p.digest,
                "content_type": p.content_type,
                "width": p.width,
                "height": p.height,
            }
            for report_id, position, p in photos_
        ]
    )


_KEEP_CONTACTS = (
    "kept AS (INSERT INTO intake.kept_contacts (event_id, report_id, event, kept_at)"
    " SELECT (e->>'event_id')::uuid, (e->>'report_id')::uuid, e, now()"
    " FROM jsonb_array_elements(CAST(:contacts AS jsonb)) AS e)"
)


def _contact_rows(contacts: Sequence[Event]) -> str:
    return _JSON.dump_json(contacts).decode()


def kept(contacts: Sequence[Event]) -> Writes:
    """Reporters' contact events, kept beside their publication (see ``kept_contacts``)."""
    return Writes(_KEEP_CONTACTS, {"contacts": _contact_rows(contacts)})


def added(new_reports: Sequence[Report], contacts: Sequence[Event] = ()) -> Writes:
    """New reports with their history and photos, and their reporters' contact events kept."""
    return Writes(
        _ADD_REPORTS + (f", {_KEEP_CONTACTS}" if contacts else ""),
        {
            **({"contacts": _contact_rows(contacts)} if contacts else {}),
            "reports": _json_rows([_report_row(r) for r in new_reports]),
            "history": _json_rows(_history_rows((r.id, r.history) for r in new_reports)),
            "photos": _photo_rows(
                (r.id, i, p) for r in new_reports for i, p in enumerate(r.photos)
            ),
        },
    )


def saved(
    changed: Sequence[tuple[Report, Sequence[StatusChange]]],
    *,
    unless_changed_since: Mapping[UUID, datetime | None] | None = None,
    deliveries: Sequence[tuple[UUID, UUID]] = (),
    new_photos: Sequence[tuple[UUID, int, Photo]] = (),
) -> Writes:
    """The new state of changed reports, their new history entries and their events.

    ``unless_changed_since`` (report id → ``updated_at`` as read): a report changed by someone
    else since is left alone, its events are not staged and the ``deliveries`` (event id, report
    id) concerning it are not recorded as processed; the others are, in the same statement."""
    rows = []
    for report, _ in changed:
        row = _report_row(report)
        row["read_updated_at"] = (unless_changed_since or {}).get(report.id)
        rows.append(row)
    return Writes(
        _SAVE_REPORTS
        + (_SAVE_DELIVERED if deliveries else "")
        + (f", {_NEW_PHOTOS}" if new_photos else ""),
        {
            "reports": _json_rows(rows),
            "history": _json_rows(_history_rows((r.id, changes) for r, changes in changed)),
            **(_delivery_arrays(deliveries) if deliveries else {}),
            **({"photos": _photo_rows(new_photos)} if new_photos else {}),
        },
        stage_for="saved_reports" if unless_changed_since is not None else None,
    )


@dataclass
class HistoryRepository:
    """The events the history kept (:class:`intake.ports.History`)."""

    conn: AsyncConnection

    async def first_since(self, since: datetime) -> int | None:
        h = status_history
        first: int | None = await self.conn.scalar(
            sa.select(sa.func.min(h.c.id)).where(h.c.changed_at >= since)
        )
        return first

    async def announced_after(
        self, position: int, limit: int
    ) -> list[tuple[int, ReportSubmitted | ReportStatusChanged]]:
        h = status_history
        rows = await self.conn.execute(
            sa.select(h.c.id, h.c.event)
            .where(h.c.id > position, h.c.event.is_not(None))
            .order_by(h.c.id)
            .limit(limit)
        )
        return [(r.id, _KEPT_EVENTS[r.event["event_type"]].model_validate(r.event)) for r in rows]


#: What the history keeps: a report's submission and its status changes (contacts never).
_KEPT_EVENTS: dict[str, type[ReportSubmitted | ReportStatusChanged]] = {
    "ReportSubmitted": ReportSubmitted,
    "ReportStatusChanged": ReportStatusChanged,
}


@dataclass
class IdempotencyKeyRepository:
    conn: AsyncConnection

    async def lock(self, key: str) -> None:
        await self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))

    async def get(self, key: str) -> UsedKey | None:
        row = (
            await self.conn.execute(
                sa.select(idempotency_keys.c.request_hash, idempotency_keys.c.report_id).where(
                    idempotency_keys.c.key == key
                )
            )
        ).first()
        return UsedKey(row.request_hash, row.report_id) if row else None

    async def add(self, key: str, used: UsedKey) -> None:
        await self.conn.execute(
            pg.insert(idempotency_keys).values(
                key=key, request_hash=used.request_hash, report_id=used.report_id
            )
        )


@dataclass
class KeptContactRepository:
    """Reporters' contact events, kept to re-announce them (:class:`intake.ports.KeptContacts`)."""

    tx: Transaction

    async def add(self, contacts: Sequence[ReporterContactSubmitted]) -> None:
        await self.tx.publish(*contacts, along_with=kept(contacts))

    async def kept_since(
        self,
        since: datetime,
        *,
        after: tuple[datetime, UUID] | None,
        kept_within: timedelta | None,
        limit: int,
    ) -> list[tuple[datetime, ReporterContactSubmitted]]:
        k = kept_contacts
        query = (
            sa.select(k.c.kept_at, k.c.event_id, k.c.event)
            .where(k.c.kept_at >= since)
            .order_by(k.c.kept_at, k.c.event_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(sa.tuple_(k.c.kept_at, k.c.event_id) > sa.tuple_(*after))
        if kept_within is not None:
            query = query.where(k.c.kept_at >= sa.func.now() - kept_within)
        return [
            (r.kept_at, ReporterContactSubmitted.model_validate(r.event))
            for r in await self.tx.conn.execute(query)
        ]

    async def forget_older_than(self, kept_for: timedelta) -> int:
        erased = await self.tx.conn.execute(
            kept_contacts.delete().where(kept_contacts.c.kept_at < sa.func.now() - kept_for)
        )
        return int(erased.rowcount)

    async def erase_reporters(self, report_id: UUID) -> int:
        erased = await self.tx.conn.execute(
            kept_contacts.delete().where(
                kept_contacts.c.report_id == report_id,
                # The reporter's own contact carries their token; a follower's does not.
                kept_contacts.c.event["reporter_token"].astext.is_not(None),
            )
        )
        return int(erased.rowcount)


class UnitOfWork:
    """One transaction over intake's tables, its outbox and its inbox
    (:class:`intake.ports.UnitOfWork`)."""

    def __init__(self, tx: Transaction) -> None:
        self.conn = tx.conn
        self._tx = tx
        self.reports = ReportRepository(tx)

    async def publish(
        self, *events: Event | Message, along_with: Writes | None = None
    ) -> list[StagedRow]:
        return await self._tx.publish(*events, along_with=along_with)

    @cached_property
    def history(self) -> HistoryRepository:
        return HistoryRepository(self.conn)

    @cached_property
    def idempotency_keys(self) -> IdempotencyKeyRepository:
        return IdempotencyKeyRepository(self.conn)

    @cached_property
    def kept_contacts(self) -> KeptContactRepository:
        return KeptContactRepository(self._tx)

    # staff.py and console.py build on this module's tables, so they are imported late.
    @cached_property
    def staff(self) -> SqlStaffAccounts:
        from intake.adapters.staff import SqlStaffAccounts

        return SqlStaffAccounts(self.conn)

    @cached_property
    def canned_responses(self) -> CannedResponses:
        from intake.adapters.console import CannedResponses

        return CannedResponses(self.conn)

    @cached_property
    def statistics(self) -> SqlOfficeStatistics:
        from intake.adapters.console import SqlOfficeStatistics

        return SqlOfficeStatistics(self.conn)


@asynccontextmanager
async def unit_of_work(outbox_: Outbox, *, autocommit: bool = False) -> AsyncIterator[UnitOfWork]:
    async with outbox_.transaction(autocommit=autocommit) as tx:
        yield UnitOfWork(tx)


@dataclass(frozen=True)
class SqlUnitOfWorks:
    """The unit-of-work factory (:class:`intake.ports.UnitOfWorkFactory`) over the service's
    database and outbox."""

    outbox: Outbox

    def __call__(self, *, autocommit: bool = False) -> AbstractAsyncContextManager[UnitOfWork]:
        return unit_of_work(self.outbox, autocommit=autocommit)


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

    def __init__(self, outbox: Outbox, max_batch: int = 500, statements: int = 2) -> None:
        self._outbox = outbox
        self._max_batch = max_batch
        self._statements = statements
        self._queue: asyncio.Queue[_PendingSubmission] = asyncio.Queue()

    async def write(self, report: Report, events: Sequence[Event]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_PendingSubmission(report, events, done))
        await done

    async def run(self) -> None:
        """Up to ``statements`` group commits at once: new reports are independent of each
        other, and a submission arriving while one statement runs need not wait for it."""
        await asyncio.gather(*(self._write_batches() for _ in range(self._statements)))

    async def _write_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0], exc)
                    continue
                # Whatever the database refused in one submission must not fail the others
                # that shared its statement: each is tried on its own.
                for pending in batch:
                    try:
                        await self._write([pending])
                    except Exception as alone:
                        _settle(pending, alone)
                    else:
                        _settle(pending)
                continue
            for pending in batch:
                _settle(pending)

    async def _write(self, batch: list[_PendingSubmission]) -> None:
        # One statement: autocommitted, no BEGIN and COMMIT round trips.
        async with self._outbox.transaction(autocommit=True) as tx:
            events = [e for p in batch for e in p.events]
            await tx.publish(
                *events,
                along_with=added([p.report for p in batch], contacts_among(events)),
            )


def contacts_among(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if e.event_type == "ReporterContactSubmitted"]


def _settle(pending: _PendingSubmission, error: Exception | None = None) -> None:
    if pending.done.done():  # the request was cancelled (client gone)
        return
    if error is None:
        pending.done.set_result(None)
    else:
        pending.done.set_exception(error)
