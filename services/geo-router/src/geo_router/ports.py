"""What geo-router's use cases need from the world, as interfaces: the routing index in memory,
the decisions and geography in the database, the outbox. ``handlers.py`` depends on these only;
``adapters/`` implements them (SQL, shapely), ``bootstrap.py`` plugs the implementations in, and
the unit tests plug in fakes (services/geo-router/tests/unit/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from geo_router.domain import Decision, Outline, Rule
from mm_shared.events import Event, MatchedArea, OfficeRef, ReportRouted, ReportRoutingFailed
from mm_shared.kafka import Message

#: A decision as it is stored and announced: (report id, the announcing event's id, the event).
Announcement = tuple[UUID, UUID | str, Message]
#: A decision as stored: the event that announced it.
StoredDecision = ReportRouted | ReportRoutingFailed


class RoutingIndex(Protocol):
    """One jurisdiction's areas and rules, in memory: a lookup costs no I/O."""

    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def precedence(self) -> int: ...
    #: Where jurisdictions overlap and precedence ties, the smaller one takes a report.
    @property
    def extent(self) -> float: ...

    def areas_at_many(
        self, lats: Sequence[float], longs: Sequence[float]
    ) -> list[tuple[MatchedArea, ...]]:
        """For each point, the area of each level covering it (coarse levels first)."""
        ...

    def decide(self, service_code: str, areas: Sequence[MatchedArea]) -> Decision | None:
        """The office for a category in these areas, by the jurisdiction's rules."""
        ...

    def outline(self) -> Outline:
        """What is announced about the jurisdiction: its outline and manifest settings."""
        ...


class RoutingCache(Protocol):
    """Every served jurisdiction's index; replaced whole on reload."""

    #: Set once every jurisdiction was loaded: routing waits for it rather than failing
    #: reports as "unknown jurisdiction" during start-up.
    @property
    def ready(self) -> asyncio.Event: ...

    #: Code → name of the retired jurisdictions: routing refuses them, saying so.
    @property
    def retired(self) -> Mapping[str, str]: ...

    def get(self, jurisdiction: str) -> RoutingIndex | None: ...

    def all(self) -> Sequence[RoutingIndex]: ...

    async def reload(
        self, jurisdiction: str | None = None, *, if_changed: bool = False
    ) -> Sequence[RoutingIndex]:
        """Rebuild one or every jurisdiction's index from the database; returns those rebuilt
        (``if_changed``: skip one whose data did not change since it was built)."""
        ...


class PreparedDecisions(Protocol):
    """A batch's decisions in the form their write takes, built by :data:`PrepareDecisions`
    while the previous batch is being written: the write then only sends them. Opaque to the
    use cases; only the unit of work that built it reads it."""


class PrepareDecisions(Protocol):
    def __call__(self, announced: Sequence[Announcement], /) -> PreparedDecisions: ...


class JurisdictionRecord(Protocol):
    """A jurisdiction's stored settings."""

    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def precedence(self) -> int: ...
    @property
    def disabled_service_codes(self) -> Sequence[str]: ...
    #: None while it takes reports.
    @property
    def retired_at(self) -> datetime | None: ...


class Geography(Protocol):
    """Jurisdictions, areas, offices and rules valid now, read from the source of truth."""

    async def jurisdiction(self, code: str) -> JurisdictionRecord | None: ...

    async def jurisdictions(self) -> Sequence[JurisdictionRecord]:
        """Every jurisdiction, retired ones included, by code."""
        ...

    async def office(self, jurisdiction: str, code: str) -> OfficeRef | None: ...

    async def offices(self, jurisdiction: str) -> Sequence[Mapping[str, Any]]:
        """The jurisdiction's offices (code, name, public_name, email), by code."""
        ...

    async def rules(self, jurisdiction: str, service_code: str | None = None) -> list[Rule]: ...

    async def areas_geojson(
        self, jurisdiction: str, level: str | None = None, code: str | None = None
    ) -> list[dict[str, Any]]:
        """Current areas as GeoJSON features."""
        ...


class Decisions(Protocol):
    """One routing decision per report, kept as the event that announced it."""

    async def get_many(self, report_ids: Sequence[UUID]) -> Mapping[UUID, StoredDecision]: ...

    async def record(self, announced: Sequence[Announcement]) -> None:
        """Store decisions; a later one for the same report (a staff override) replaces it."""
        ...


class UnitOfWork(Protocol):
    """One transaction (or, with ``autocommit``, statements each complete by itself) with the
    repositories and the outbox: what is published commits with the changes that imply it."""

    @property
    def geography(self) -> Geography: ...
    @property
    def decisions(self) -> Decisions: ...

    async def publish(self, *events: Event | Message) -> None:
        """Stage events in the outbox: they reach the broker only if this unit commits."""
        ...

    async def first_delivery(self, event_id: UUID) -> bool:
        """Record a consumed event's id (the inbox); False if it was processed before."""
        ...

    async def decide_once(self, rows: PreparedDecisions) -> set[UUID]:
        """Store the decisions of reports not decided yet and stage their announcements;
        returns the reports decided now. A report decided before keeps its first decision."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, autocommit: bool = False) -> AbstractAsyncContextManager[UnitOfWork]:
        """``autocommit``: no transaction around the statements (for writers whose every
        statement is complete by itself: no BEGIN and COMMIT round trips)."""
        ...


class History(Protocol):
    """What geo-router published, read back to publish it again after a broker lost it."""

    def decisions_since(self, moment: datetime) -> AsyncIterator[Sequence[StoredDecision]]:
        """The decisions taken from ``moment`` on, oldest first, a page at a time."""
        ...

    async def current_outlines(self) -> list[Outline]:
        """Every jurisdiction's outline as its routing index would announce it."""
        ...
