"""What geo-router announces about each jurisdiction and intake checks against without asking
it: the outline, for refusing reports from outside the city at submission (kept in intake's own
table too, so a restart of intake, or of a broker that lost its memory, does not forget it), and
the office directory, for refusing a reassignment to an office that does not exist."""

from __future__ import annotations

import json
import logging

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


class Boundaries:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._outlines: dict[str, shapely.Geometry] = {}
        self._versions: dict[str, str] = {}

    def _remember(self, jurisdiction: str, version: str, boundary: dict[str, object]) -> None:
        outline = shapely.buffer(shape(boundary), EDGE_TOLERANCE_DEG)
        shapely.prepare(outline)
        self._outlines[jurisdiction] = outline
        self._versions[jurisdiction] = version

    async def load(self) -> None:
        async with self._engine.connect() as conn:
            for row in await conn.execute(sa.select(jurisdiction_boundaries)):
                self._remember(row.jurisdiction, row.version, json.loads(row.boundary))

    async def update(self, event: JurisdictionBoundaryChanged) -> None:
        if self._versions.get(event.jurisdiction) == event.version:
            return
        async with self._engine.begin() as conn:
            values = {"version": event.version, "boundary": json.dumps(event.boundary)}
            await conn.execute(
                pg.insert(jurisdiction_boundaries)
                .values(jurisdiction=event.jurisdiction, **values)
                .on_conflict_do_update(index_elements=["jurisdiction"], set_=values)
            )
        self._remember(event.jurisdiction, event.version, event.boundary)
        log.info("boundary of %s now at version %s", event.jurisdiction, event.version)

    def covers(self, jurisdiction: str, lat: float, long: float) -> bool | None:
        """True or False; None while no boundary is known (then the report is accepted and
        routing has the last word)."""
        outline = self._outlines.get(jurisdiction)
        if outline is None:
            return None
        # For a point, "intersects" is "covers" (the edge counts), without building a Point.
        return bool(shapely.intersects_xy(outline, long, lat))


class OfficeDirectory:
    """In memory only: every instance re-reads the compacted topic from its start."""

    def __init__(self) -> None:
        self._offices: dict[str, dict[str, str]] = {}

    def update(self, event: OfficeDirectoryChanged) -> None:
        self._offices[event.jurisdiction] = {o.code: o.name for o in event.offices}

    def offices(self, jurisdiction: str) -> dict[str, str] | None:
        """Code → name; None while no directory is known (then any code is passed on, and
        geo-router has the last word)."""
        return self._offices.get(jurisdiction)
