"""What geo-router announces about each jurisdiction and intake checks against without asking
it: the outlines, for choosing the jurisdiction a report belongs to and refusing reports from
outside every one (kept in intake's own table too, so a restart of intake, or of a broker that
lost its memory, does not forget them), and the office directories, for refusing a reassignment
to an office that does not exist and for each jurisdiction's public holidays."""

from __future__ import annotations

import json
import logging
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import date

import holidays
import shapely
import sqlalchemy as sa
from shapely.geometry import shape
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from intake.adapters.db import jurisdiction_boundaries
from mm_shared.events import JurisdictionBoundaryChanged, OfficeDirectoryChanged

log = logging.getLogger(__name__)

#: Leniency at the edge (degrees, ~50 m): the published outline is simplified, and a pothole
#: on the city limit is better accepted than refused; routing decides the rest.
EDGE_TOLERANCE_DEG = 0.0005


@dataclass(frozen=True)
class Jurisdiction:
    """One served jurisdiction as intake knows it from its outline's event."""

    code: str
    name: str
    version: str
    precedence: int
    disabled_service_codes: frozenset[str]
    outline: shapely.Geometry
    #: Of the outline as published (square degrees: only compared with each other's).
    area: float
    #: (min_lon, min_lat, max_lon, max_lat)
    bbox: tuple[float, float, float, float]

    def covers(self, lat: float, long: float) -> bool:
        # For a point, "intersects" is "covers" (the edge counts), without building a Point.
        return bool(shapely.intersects_xy(self.outline, long, lat))


def _jurisdiction(
    code: str,
    name: str | None,
    version: str,
    boundary: dict[str, object],
    precedence: int,
    disabled: Sequence[str],
) -> Jurisdiction:
    published = shape(boundary)
    outline = shapely.buffer(published, EDGE_TOLERANCE_DEG)
    shapely.prepare(outline)
    bounds = tuple(float(b) for b in published.bounds) if not published.is_empty else (0.0,) * 4
    return Jurisdiction(
        code=code,
        name=name or code,
        version=version,
        precedence=precedence,
        disabled_service_codes=frozenset(disabled),
        outline=outline,
        area=float(published.area),
        bbox=bounds,  # type: ignore[arg-type]
    )


class Boundaries:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._known: dict[str, Jurisdiction] = {}

    async def load(self) -> None:
        async with self._engine.connect() as conn:
            for row in await conn.execute(sa.select(jurisdiction_boundaries)):
                self._known[row.jurisdiction] = _jurisdiction(
                    row.jurisdiction,
                    row.name,
                    row.version,
                    json.loads(row.boundary),
                    row.precedence,
                    row.disabled_service_codes,
                )

    async def update(self, event: JurisdictionBoundaryChanged) -> None:
        if event.retired:
            await self._forget(event.jurisdiction)
            return
        known = self._known.get(event.jurisdiction)
        if (
            known is not None
            and known.version == event.version
            and known.name == event.name
            and known.precedence == event.precedence
            and known.disabled_service_codes == frozenset(event.disabled_service_codes)
        ):
            return
        async with self._engine.begin() as conn:
            values = {
                "version": event.version,
                "boundary": json.dumps(event.boundary),
                "name": event.name,
                "precedence": event.precedence,
                "disabled_service_codes": list(event.disabled_service_codes),
            }
            await conn.execute(
                pg.insert(jurisdiction_boundaries)
                .values(jurisdiction=event.jurisdiction, **values)
                .on_conflict_do_update(index_elements=["jurisdiction"], set_=values)
            )
        self.remember(event)
        log.info("boundary of %s now at version %s", event.jurisdiction, event.version)

    def remember(self, event: JurisdictionBoundaryChanged) -> None:
        """Hold the jurisdiction in memory (``update`` stores it first)."""
        if event.retired:
            self._known.pop(event.jurisdiction, None)
            return
        self._known[event.jurisdiction] = _jurisdiction(
            event.jurisdiction,
            event.name,
            event.version,
            event.boundary,
            event.precedence,
            event.disabled_service_codes,
        )

    async def _forget(self, code: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                jurisdiction_boundaries.delete().where(
                    jurisdiction_boundaries.c.jurisdiction == code
                )
            )
        if self._known.pop(code, None) is not None:
            log.info("jurisdiction %s retired: no more reports are taken there", code)

    def get(self, code: str) -> Jurisdiction | None:
        return self._known.get(code)

    def all(self) -> list[Jurisdiction]:
        """Every served jurisdiction, by code."""
        return [self._known[code] for code in sorted(self._known)]

    def covering(self, lat: float, long: float) -> Jurisdiction | None:
        """The jurisdiction a report at this place belongs to: of those covering it, the one
        with the highest precedence, then the smallest area, then the first code."""
        found = [j for j in self._known.values() if j.covers(lat, long)]
        if not found:
            return None
        return min(found, key=lambda j: (-j.precedence, j.area, j.code))


class OfficeDirectory:
    """In memory only: every instance re-reads the compacted topic from its start."""

    def __init__(self) -> None:
        self._offices: dict[str, dict[str, str]] = {}
        self._holidays: dict[str, tuple[str | None, str | None]] = {}

    def update(self, event: OfficeDirectoryChanged) -> None:
        self._offices[event.jurisdiction] = {o.code: o.name for o in event.offices}
        self._holidays[event.jurisdiction] = (event.holidays_country, event.holidays_subdivision)

    def offices(self, jurisdiction: str) -> dict[str, str] | None:
        """Code → name; None while no directory is known (then any code is passed on, and
        geo-router has the last word)."""
        return self._offices.get(jurisdiction)

    def holidays(self, jurisdiction: str) -> tuple[str | None, str | None]:
        """The `holidays` package's (country, subdivision) of the jurisdiction's manifest;
        (None, None) when it names none or no directory is known."""
        return self._holidays.get(jurisdiction, (None, None))


class PublicHolidays:
    """A jurisdiction's public holidays for the office reminders: those its manifest names
    (country and subdivision of the `holidays` package, from the office directory), else the
    configured ones. Callable with a jurisdiction's code; calendars are built once each."""

    def __init__(self, directory: OfficeDirectory, country: str, subdivision: str | None) -> None:
        self._directory = directory
        self._default = (country, subdivision)
        self._calendars: dict[tuple[str, str | None], Container[date]] = {}

    def __call__(self, jurisdiction: str) -> Container[date]:
        country, subdivision = self._directory.holidays(jurisdiction)
        key = (country, subdivision) if country else self._default
        if key not in self._calendars:
            try:
                self._calendars[key] = holidays.country_holidays(key[0], subdiv=key[1])
            except NotImplementedError:
                log.error(
                    "no public holidays known for %s/%s (%s): none counted", *key, jurisdiction
                )
                self._calendars[key] = frozenset()
        return self._calendars[key]
