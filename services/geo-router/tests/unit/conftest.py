"""Fakes of geo-router's ports (geo_router.ports) for the fast tier: a database in dictionaries
with transactions that commit on success and vanish on an exception, an outbox that is a list,
and routing indexes whose areas are rectangles.

The world they hold: Leipzig (two levels, four areas, rules for categories 001 and 003, none
for 002), a larger "Umland" overlapping it, and "Altstadt", retired. Tests see it through
plain fixtures (``outbox``: the committed messages; ``decisions``; ``change_jurisdiction``,
``retire_jurisdiction``: what the next reload reads) and the ports (``unit_of_work``, ``cache``,
``history``, ``prepare``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio

from geo_router.domain import Decision, Outline, Rule, choose_office, one_area_per_level
from geo_router.ports import (
    Announcement,
    PreparedDecisions,
    StoredDecision,
    UnitOfWorkFactory,
)
from mm_shared.events import (
    Event,
    JurisdictionBoundaryChanged,
    MatchedArea,
    OfficeDirectoryChanged,
    OfficeRef,
    ReportRouted,
    ReportRoutingFailed,
    Topic,
    utcnow,
)
from mm_shared.kafka import Message

#: (south, north, west, east) in degrees.
Box = tuple[float, float, float, float]


@dataclass
class FakeIndex:
    """A jurisdiction whose areas are boxes; decides by the domain's rules, as the real one."""

    code: str
    name: str
    levels: list[str]
    areas: list[tuple[MatchedArea, Box]]
    rules: list[Rule]
    version: str = "1"
    precedence: int = 0
    disabled_service_codes: tuple[str, ...] = ()
    sender_name: str | None = None

    def __post_init__(self) -> None:
        self._decisions: dict[tuple[str, ...], Decision | None] = {}

    @property
    def extent(self) -> float:
        return sum(
            (n - s) * (e - w) for area, (s, n, w, e) in self.areas if area.level == self.levels[0]
        )

    def areas_at_many(
        self, lats: Sequence[float], longs: Sequence[float]
    ) -> list[tuple[MatchedArea, ...]]:
        return [
            one_area_per_level(
                [a for a, (s, n, w, e) in self.areas if s <= lat <= n and w <= long <= e],
                self.levels,
            )
            for lat, long in zip(lats, longs, strict=True)
        ]

    def decide(self, service_code: str, areas: Sequence[MatchedArea]) -> Decision | None:
        # One Decision object per (category, areas), as the real index keeps them: the
        # announcement's template is cached by it.
        key = (service_code, *(a.code for a in areas))
        if key not in self._decisions:
            self._decisions[key] = choose_office(service_code, areas, self.rules)
        return self._decisions[key]

    def outline(self) -> Outline:
        boxes = [box for area, box in self.areas if area.level == self.levels[0]]
        boundary = {
            "type": "MultiPolygon",
            "coordinates": [[[[w, s], [e, s], [e, n], [w, n], [w, s]]] for s, n, w, e in boxes],
        }
        return Outline(
            self.code,
            self.name,
            self.version,
            boundary,
            self.precedence,
            self.disabled_service_codes,
            self.sender_name,
        )


VTA = OfficeRef(code="VTA", name="Verkehrs- und Tiefbauamt")
ASG = OfficeRef(code="ASG", name="Amt für Stadtgrün und Gewässer")
MITTE = MatchedArea(level="stadtbezirk", code="0", name="Mitte")
NORDOST = MatchedArea(level="stadtbezirk", code="1", name="Nordost")
ZENTRUM = MatchedArea(level="ortsteil", code="00", name="Zentrum")
ZENTRUM_OST = MatchedArea(level="ortsteil", code="01", name="Zentrum-Ost")
SCHOENEFELD = MatchedArea(level="ortsteil", code="10", name="Schönefeld")


def leipzig(version: str = "1") -> FakeIndex:
    return FakeIndex(
        code="leipzig",
        name="Leipzig",
        levels=["stadtbezirk", "ortsteil"],
        areas=[
            (MITTE, (51.32, 51.36, 12.34, 12.40)),
            (NORDOST, (51.36, 51.40, 12.34, 12.40)),
            (ZENTRUM, (51.32, 51.34, 12.34, 12.40)),
            (ZENTRUM_OST, (51.34, 51.36, 12.34, 12.40)),
            (SCHOENEFELD, (51.36, 51.40, 12.34, 12.40)),
        ],
        rules=[
            Rule(id=1, service_code="001", office=VTA),
            Rule(
                id=2,
                service_code="001",
                office=ASG,
                priority=10,
                area_level="stadtbezirk",
                area_code="1",
                area_level_name="Stadtbezirk",
                area_name="Nordost",
            ),
            Rule(id=3, service_code="003", office=ASG),
        ],
        version=version,
        sender_name="Mängelmelder Leipzig",
    )


def umland(precedence: int = 0) -> FakeIndex:
    return FakeIndex(
        code="umland",
        name="Umland",
        levels=["kreis"],
        areas=[(MatchedArea(level="kreis", code="K", name="Kreis"), (51.0, 52.0, 12.0, 13.0))],
        rules=[Rule(id=1, service_code="001", office=OfficeRef(code="VTA", name="Kreisamt"))],
        precedence=precedence,
    )


@dataclass
class FakeJurisdictionRecord:
    code: str
    name: str
    precedence: int = 0
    disabled_service_codes: tuple[str, ...] = ()
    retired_at: datetime | None = None


@dataclass
class FakeDatabase:
    """What the SQL adapters would read and write, committed."""

    #: What loading an index reads: the jurisdictions taking reports.
    indexes: dict[str, FakeIndex]
    #: Code → name of the retired jurisdictions.
    retired: dict[str, str]
    offices: dict[str, list[dict[str, Any]]]
    decisions: dict[UUID, StoredDecision] = field(default_factory=dict)
    decided_at: dict[UUID, datetime] = field(default_factory=dict)
    #: The inbox: ids of consumed events.
    processed: set[UUID] = field(default_factory=set)
    #: The outbox: committed messages, in order.
    outbox: list[Message] = field(default_factory=list)
    #: ``autocommit`` of every unit of work opened.
    units: list[bool] = field(default_factory=list)


class FakeGeography:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def _records(self) -> dict[str, FakeJurisdictionRecord]:
        records = {
            code: FakeJurisdictionRecord(code, i.name, i.precedence, i.disabled_service_codes)
            for code, i in self._db.indexes.items()
        }
        for code, name in self._db.retired.items():
            records[code] = FakeJurisdictionRecord(code, name, retired_at=utcnow())
        return records

    async def jurisdiction(self, code: str) -> FakeJurisdictionRecord | None:
        return self._records().get(code)

    async def jurisdictions(self) -> list[FakeJurisdictionRecord]:
        return [r for _, r in sorted(self._records().items())]

    async def office(self, jurisdiction: str, code: str) -> OfficeRef | None:
        for office in self._db.offices.get(jurisdiction, []):
            if office["code"] == code:
                return OfficeRef(code=code, name=office["public_name"])
        return None

    async def offices(self, jurisdiction: str) -> list[dict[str, Any]]:
        return sorted(self._db.offices.get(jurisdiction, []), key=lambda o: str(o["code"]))

    async def rules(self, jurisdiction: str, service_code: str | None = None) -> list[Rule]:
        index = self._db.indexes.get(jurisdiction)
        rules = index.rules if index else []
        return [r for r in rules if service_code in (None, r.service_code)]

    async def areas_geojson(
        self, jurisdiction: str, level: str | None = None, code: str | None = None
    ) -> list[dict[str, Any]]:
        raise NotImplementedError("no use case reads areas as GeoJSON")


class FakeDecisions:
    def __init__(self, db: FakeDatabase, unit: FakeUnitOfWork) -> None:
        self._db = db
        self._unit = unit

    async def get_many(self, report_ids: Sequence[UUID]) -> dict[UUID, StoredDecision]:
        seen = {**self._db.decisions, **self._unit.pending_decisions}
        return {r: seen[r] for r in report_ids if r in seen}

    async def record(self, announced: Sequence[Announcement]) -> None:
        for report_id, _, message in announced:
            self._unit.write(decision=(report_id, _stored(message)))


def _stored(message: Message) -> StoredDecision:
    model = ReportRouted if message.topic == Topic.REPORT_ROUTED else ReportRoutingFailed
    return model.model_validate_json(message.payload)


class FakeUnitOfWork:
    """Changes wait for the commit at the end of the block (an exception drops them), or
    commit one by one with ``autocommit``."""

    def __init__(self, db: FakeDatabase, autocommit: bool) -> None:
        self._db = db
        self._autocommit = autocommit
        self.geography = FakeGeography(db)
        self.decisions = FakeDecisions(db, self)
        self.pending_decisions: dict[UUID, StoredDecision] = {}
        self._pending_processed: set[UUID] = set()
        self._pending_messages: list[Message] = []

    def write(
        self,
        *,
        decision: tuple[UUID, StoredDecision] | None = None,
        processed: UUID | None = None,
        message: Message | None = None,
    ) -> None:
        if decision is not None:
            self.pending_decisions[decision[0]] = decision[1]
        if processed is not None:
            self._pending_processed.add(processed)
        if message is not None:
            self._pending_messages.append(message)
        if self._autocommit:
            self.commit()

    def commit(self) -> None:
        now = utcnow()
        for report_id, decision in self.pending_decisions.items():
            self._db.decisions[report_id] = decision
            self._db.decided_at[report_id] = now
        self._db.processed |= self._pending_processed
        self._db.outbox += self._pending_messages
        self.pending_decisions, self._pending_processed, self._pending_messages = {}, set(), []

    async def publish(self, *events: Event | Message) -> None:
        for event in events:
            self.write(message=Message.of(event) if isinstance(event, Event) else event)

    async def first_delivery(self, event_id: UUID) -> bool:
        if event_id in self._db.processed or event_id in self._pending_processed:
            return False
        self.write(processed=event_id)
        return True

    async def decide_once(self, rows: PreparedDecisions) -> set[UUID]:
        assert isinstance(rows, list), "prepared by the fake's prepare_decisions"
        decided = set()
        for report_id, _, message in rows:
            if report_id in self._db.decisions or report_id in self.pending_decisions:
                continue
            self.write(decision=(report_id, _stored(message)), message=message)
            decided.add(report_id)
        return decided


def fake_unit_of_work(db: FakeDatabase) -> UnitOfWorkFactory:
    @contextlib.asynccontextmanager
    async def open_unit(*, autocommit: bool = False) -> AsyncIterator[FakeUnitOfWork]:
        db.units.append(autocommit)
        unit = FakeUnitOfWork(db, autocommit)
        yield unit
        unit.commit()

    return open_unit


def prepare_decisions(announced: Sequence[Announcement]) -> list[Announcement]:
    """The fake's form of a batch's decisions: the list itself."""
    return list(announced)


class FakeRoutingCache:
    """Loads what the fake database holds; counts how often it built an index."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self._indexes: dict[str, FakeIndex] = {}
        self.retired: dict[str, str] = {}
        self.ready = asyncio.Event()
        self.built: list[str] = []

    def get(self, jurisdiction: str) -> FakeIndex | None:
        return self._indexes.get(jurisdiction)

    def all(self) -> list[FakeIndex]:
        return list(self._indexes.values())

    async def reload(
        self, jurisdiction: str | None = None, *, if_changed: bool = False
    ) -> list[FakeIndex]:
        codes = [jurisdiction] if jurisdiction else [*self._db.indexes, *self._db.retired]
        loaded = []
        for code in codes:
            stored, current = self._db.indexes.get(code), self._indexes.get(code)
            if if_changed and stored and current and stored.version == current.version:
                continue
            if stored is None:
                self._indexes.pop(code, None)
            else:
                self._indexes[code] = stored
                self.built.append(code)
                loaded.append(stored)
        self.retired = dict(self._db.retired)
        if jurisdiction is None:
            self.ready.set()
        return loaded


class FakeHistory:
    def __init__(self, db: FakeDatabase, page: int = 2) -> None:
        self._db = db
        self._page = page

    async def decisions_since(self, moment: datetime) -> AsyncIterator[list[StoredDecision]]:
        taken = sorted(
            (at, report_id) for report_id, at in self._db.decided_at.items() if at >= moment
        )
        ids = iter(report_id for _, report_id in taken)
        while page := list(itertools.islice(ids, self._page)):
            yield [self._db.decisions[r] for r in page]

    async def current_outlines(self) -> list[Outline]:
        outlines = [index.outline() for index in self._db.indexes.values()]
        return outlines + [Outline.of_retired(c, n) for c, n in self._db.retired.items()]


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase(
        indexes={"leipzig": leipzig(), "umland": umland()},
        retired={"altstadt": "Altstadt"},
        offices={
            "leipzig": [
                {"code": "VTA", "name": "VTA", "public_name": VTA.name, "email": "vta@l.de"},
                {"code": "ASG", "name": "ASG", "public_name": ASG.name, "email": "asg@l.de"},
            ],
            "umland": [
                {"code": "VTA", "name": "KA", "public_name": "Kreisamt", "email": "ka@u.de"}
            ],
        },
    )


@pytest.fixture
def unit_of_work(database: FakeDatabase) -> UnitOfWorkFactory:
    return fake_unit_of_work(database)


@pytest_asyncio.fixture(loop_scope="function")
async def cache(database: FakeDatabase) -> FakeRoutingCache:
    cache = FakeRoutingCache(database)
    await cache.reload()
    cache.built.clear()
    return cache


@pytest.fixture
def history(database: FakeDatabase) -> FakeHistory:
    return FakeHistory(database)


@pytest.fixture
def prepare() -> Callable[[Sequence[Announcement]], list[Announcement]]:
    return prepare_decisions


@pytest.fixture
def outbox(database: FakeDatabase) -> list[Message]:
    """The committed messages, in order."""
    return database.outbox


ANNOUNCED: dict[str, type[Event]] = {
    Topic.REPORT_ROUTED.value: ReportRouted,
    Topic.REPORT_ROUTING_FAILED.value: ReportRoutingFailed,
    Topic.JURISDICTION_BOUNDARY.value: JurisdictionBoundaryChanged,
    Topic.OFFICE_DIRECTORY.value: OfficeDirectoryChanged,
}


@pytest.fixture
def announced(database: FakeDatabase) -> Callable[[], list[Event]]:
    """The committed messages as the events a consumer reads, in order."""

    def read() -> list[Event]:
        return [ANNOUNCED[m.topic].model_validate_json(m.payload) for m in database.outbox]

    return read


@pytest.fixture
def decisions(database: FakeDatabase) -> dict[UUID, StoredDecision]:
    """The committed decision of each report."""
    return database.decisions


@pytest.fixture
def decided_at(database: FakeDatabase) -> dict[UUID, datetime]:
    return database.decided_at


@pytest.fixture
def units_opened(database: FakeDatabase) -> list[bool]:
    """``autocommit`` of every unit of work opened."""
    return database.units


@pytest.fixture
def change_jurisdiction(database: FakeDatabase) -> Callable[..., None]:
    """``change_jurisdiction("leipzig", version="2")``, ``("umland", precedence=1)``: the
    database holds the jurisdiction so, until the next reload reads it."""

    makers: dict[str, Callable[..., FakeIndex]] = {"leipzig": leipzig, "umland": umland}

    def change(code: str, **changes: Any) -> None:
        database.indexes[code] = makers[code](**changes)

    return change


@pytest.fixture
def retire_jurisdiction(database: FakeDatabase) -> Callable[[str], None]:
    def retire(code: str) -> None:
        database.retired[code] = database.indexes.pop(code).name

    return retire
