"""In-memory mirror of PostGIS areas and rules, for routing whole batches of points without a
database round trip (rates in bench/results/geo_router.json). PostGIS stays the source of truth; the mirror is rebuilt from it when a
RoutingConfigChanged event says a jurisdiction changed (and checked against it in the tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import shapely
import sqlalchemy as sa
from shapely import STRtree
from sqlalchemy.ext.asyncio import AsyncEngine

from geo_router.adapters.db import Geography, areas, decisions_since, jurisdictions
from geo_router.domain import Decision, Outline, Rule, choose_office, one_area_per_level
from mm_shared.events import MatchedArea, ReportRouted, ReportRoutingFailed
from mm_shared.memory import release_free_memory

#: Tolerance (degrees, ~10 m) of the published outline: the union of many districts has many
#: vertices; intake only needs to know "roughly inside or clearly outside".
BOUNDARY_SIMPLIFY_DEG = 0.0001
#: Resolution of the lookup grid: at most this many cells along the longer side.
GRID_CELLS_PER_SIDE = 512
#: Grid cells made into geometries at once while the grid is built.
GRID_CELLS_PER_CHUNK = 16_384


@dataclass
class JurisdictionIndex:
    code: str
    name: str
    levels: list[str]
    areas: list[MatchedArea]
    geometries: np.ndarray[Any, Any]
    rules: dict[str, list[Rule]]
    version: str
    #: When the database was read: the index holds every change committed before.
    loaded_at: float = field(default_factory=time.time)
    #: The manifest's settings, announced with the outline and the office directory.
    precedence: int = 0
    disabled_service_codes: tuple[str, ...] = ()
    sender_name: str | None = None
    holidays_country: str | None = None
    holidays_subdivision: str | None = None

    def __post_init__(self) -> None:
        self._decisions: dict[tuple[str, ...], Decision | None] = {}
        shapely.prepare(self.geometries)
        self._tree = STRtree(self.geometries)
        self._build_grid()
        #: Where jurisdictions overlap and precedence ties, the smaller one takes a report
        #: (square degrees: only compared between places of similar latitude).
        self.extent = float(
            sum(
                shapely.area(g)
                for a, g in zip(self.areas, self.geometries, strict=True)
                if a.level == self.levels[0]
            )
        )

    def _build_grid(self) -> None:
        """Classify a grid of cells once, so that most points are answered by array lookups.

        A cell lying in the interior of one area per level (never touching a boundary) answers
        every point in it; a cell touching no area answers "outside". Only points in cells
        crossed by a boundary go through the exact polygon test, so boundary rules stay exact.
        """
        minx, miny, maxx, maxy = shapely.total_bounds(self.geometries)
        self._cell = max(maxx - minx, maxy - miny) / GRID_CELLS_PER_SIDE
        self._origin = (minx, miny)
        self._nx = int(np.ceil((maxx - minx) / self._cell)) + 1
        self._ny = int(np.ceil((maxy - miny) / self._cell)) + 1
        xs, ys = np.meshgrid(
            minx + np.arange(self._nx) * self._cell, miny + np.arange(self._ny) * self._cell
        )
        x0, y0 = xs.ravel(), ys.ravel()
        level_of = np.array([self.levels.index(a.level) for a in self.areas])
        # Per level and cell: the area whose interior holds the whole cell, else -1.
        self._cell_area = np.full((len(self.levels), x0.size), -1, dtype=np.int64)
        self._cell_outside = np.ones(x0.size, dtype=bool)
        # The cells as geometries a slice at a time: all of them at once were the peak of the
        # process's memory, kept by the allocator after they were freed.
        for start in range(0, x0.size, GRID_CELLS_PER_CHUNK):
            xc, yc = (
                x0[start : start + GRID_CELLS_PER_CHUNK],
                y0[start : start + GRID_CELLS_PER_CHUNK],
            )
            cells = STRtree(shapely.box(xc, yc, xc + self._cell, yc + self._cell))
            area_idx, cell_idx = cells.query(self.geometries, predicate="contains_properly")
            self._cell_area[level_of[area_idx], start + cell_idx] = area_idx
            self._cell_outside[start + cells.query(self.geometries, predicate="intersects")[1]] = (
                False
            )

    def areas_at_many(
        self,
        lats: Sequence[float] | np.ndarray[Any, Any],
        longs: Sequence[float] | np.ndarray[Any, Any],
    ) -> list[tuple[MatchedArea, ...]]:
        """For each point, the area of each level that covers it (boundaries included; on a
        shared boundary, the lowest code)."""
        x = np.asarray(longs, dtype=float)
        y = np.asarray(lats, dtype=float)
        ix = np.floor((x - self._origin[0]) / self._cell)
        iy = np.floor((y - self._origin[1]) / self._cell)
        on_grid = (ix >= 0) & (ix < self._nx) & (iy >= 0) & (iy < self._ny)
        cell = np.where(on_grid, iy * self._nx + ix, 0).astype(np.int64)
        per_level = self._cell_area[:, cell]
        inside = on_grid & (per_level >= 0).all(axis=0)
        outside = ~on_grid | self._cell_outside[cell]
        results: list[tuple[MatchedArea, ...]] = [()] * x.size
        areas = self.areas
        for i, ids in zip(
            np.flatnonzero(inside).tolist(), per_level[:, inside].T.tolist(), strict=True
        ):
            results[i] = tuple(areas[j] for j in ids)
        exact = np.flatnonzero(~inside & ~outside)
        if exact.size:
            points = shapely.points(x[exact], y[exact])
            point_idx, area_idx = self._tree.query(points, predicate="covered_by")
            matches: dict[int, list[MatchedArea]] = {}
            for i, j in zip(exact[point_idx].tolist(), area_idx.tolist(), strict=True):
                matches.setdefault(i, []).append(areas[j])
            for i, found in matches.items():
                results[i] = one_area_per_level(found, self.levels)
        return results

    def decide(self, service_code: str, areas: Sequence[MatchedArea]) -> Decision | None:
        # A city has a few hundred (category, areas) combinations: each is decided once.
        key = (service_code, *(a.code for a in areas))
        try:
            return self._decisions[key]
        except KeyError:
            decision = choose_office(service_code, areas, self.rules.get(service_code, ()))
            self._decisions[key] = decision
            return decision

    def outline(self) -> Outline:
        return Outline(
            self.code,
            self.name,
            self.version,
            self.boundary_geojson(),
            self.precedence,
            tuple(self.disabled_service_codes),
            self.sender_name,
            self.holidays_country,
            self.holidays_subdivision,
        )

    def boundary_geojson(self) -> dict[str, Any]:
        coarsest = [
            g for a, g in zip(self.areas, self.geometries, strict=True) if a.level == self.levels[0]
        ]
        return outline_geojson(coarsest)


def outline_geojson(coarsest_areas: Sequence[Any]) -> dict[str, Any]:
    """The published outline of a jurisdiction: the union of its coarsest level's areas,
    simplified."""
    outline = shapely.union_all(coarsest_areas).simplify(BOUNDARY_SIMPLIFY_DEG)
    if outline.geom_type == "Polygon":
        outline = shapely.MultiPolygon([outline])
    return dict(shapely.geometry.mapping(outline))


async def current_outlines(engine: AsyncEngine) -> list[Outline]:
    """Every jurisdiction's outline as the routing index would publish it, read without
    building the index (its lookup grid is what makes loading slow)."""
    outlines = []
    for code in await jurisdiction_codes(engine):
        async with engine.connect() as conn:
            geography = Geography(conn)
            version = await geography.version(code)
            settings = await geography.jurisdiction(code)
            if settings is None:
                continue
            if settings.retired_at is not None:
                outlines.append(Outline.of_retired(code, str(settings.name)))
                continue
            levels = await geography.level_order(code)
            if not levels:
                continue
            wkbs = (
                await conn.scalars(
                    sa.select(sa.func.ST_AsBinary(areas.c.geom))
                    .where(
                        areas.c.jurisdiction == code,
                        areas.c.valid_to.is_(None),
                        areas.c.level == levels[0],
                    )
                    .order_by(areas.c.id)
                )
            ).all()
        geometries = shapely.from_wkb([bytes(w) for w in wkbs])
        boundary = await asyncio.to_thread(outline_geojson, geometries)
        outlines.append(
            Outline(
                code,
                str(settings.name),
                version,
                boundary,
                settings.precedence,
                tuple(settings.disabled_service_codes),
                settings.mail_sender_name,
                settings.holidays_country,
                settings.holidays_subdivision,
            )
        )
    return outlines


@dataclass
class History:
    """:class:`geo_router.ports.History`: the decisions and outlines in the database."""

    engine: AsyncEngine

    async def decisions_since(
        self, moment: datetime
    ) -> AsyncIterator[list[ReportRouted | ReportRoutingFailed]]:
        async with self.engine.connect() as reader:
            async for page in decisions_since(reader, moment):
                yield page

    async def current_outlines(self) -> list[Outline]:
        return await current_outlines(self.engine)


async def load_index(engine: AsyncEngine, jurisdiction: str) -> JurisdictionIndex | None:
    read_at = time.time()
    async with engine.connect() as conn:
        geography = Geography(conn)
        version = await geography.version(jurisdiction)
        settings = await geography.jurisdiction(jurisdiction)
        levels = await geography.level_order(jurisdiction)
        if settings is None or settings.retired_at is not None or not levels:
            return None
        rows = (
            await conn.execute(
                sa.select(
                    areas.c.id,
                    areas.c.level,
                    areas.c.code,
                    areas.c.name,
                    sa.func.ST_AsBinary(areas.c.geom).label("wkb"),
                )
                .where(areas.c.jurisdiction == jurisdiction, areas.c.valid_to.is_(None))
                .order_by(areas.c.id)
            )
        ).all()
        rules = await geography.rules(jurisdiction)
    by_service: dict[str, list[Rule]] = {}
    for rule in rules:
        by_service.setdefault(rule.service_code, []).append(rule)
    # Building the lookup grid takes about a second at country scale: off the event loop.
    return await asyncio.to_thread(
        JurisdictionIndex,
        code=jurisdiction,
        name=str(settings.name),
        levels=levels,
        areas=[MatchedArea(level=r.level, code=r.code, name=r.name) for r in rows],
        geometries=shapely.from_wkb([bytes(r.wkb) for r in rows]),
        rules=by_service,
        version=version,
        loaded_at=read_at,
        precedence=settings.precedence,
        disabled_service_codes=tuple(settings.disabled_service_codes),
        sender_name=settings.mail_sender_name,
        holidays_country=settings.holidays_country,
        holidays_subdivision=settings.holidays_subdivision,
    )


async def jurisdiction_codes(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.scalars(sa.select(jurisdictions.c.code))).all())


async def retired_jurisdictions(engine: AsyncEngine) -> dict[str, str]:
    """Code → name of every retired jurisdiction."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(jurisdictions.c.code, jurisdictions.c.name).where(
                jurisdictions.c.retired_at.is_not(None)
            )
        )
        return {r.code: r.name for r in rows}


class RoutingCache:
    """The indexes of all jurisdictions; replaced whole on reload, so readers never see a
    half-built one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._indexes: dict[str, JurisdictionIndex] = {}
        #: Code → name of the retired jurisdictions: routing refuses them, saying so.
        self.retired: dict[str, str] = {}
        #: Set once every jurisdiction was loaded: routing waits for it rather than failing
        #: reports as "unknown jurisdiction" during start-up.
        self.ready = asyncio.Event()

    def get(self, jurisdiction: str) -> JurisdictionIndex | None:
        return self._indexes.get(jurisdiction)

    def all(self) -> list[JurisdictionIndex]:
        return list(self._indexes.values())

    def oldest_load(self) -> float:
        return min((i.loaded_at for i in self._indexes.values()), default=time.time())

    async def reload(
        self, jurisdiction: str | None = None, *, if_changed: bool = False
    ) -> list[JurisdictionIndex]:
        """Rebuild the indexes of one or all jurisdictions. ``if_changed``: skip a jurisdiction
        whose data still has the version in memory (a change event can arrive after the
        index already holds it, e.g. at start-up, or be delivered twice)."""
        codes = [jurisdiction] if jurisdiction else await jurisdiction_codes(self._engine)
        loaded = []
        for code in codes:
            current = self._indexes.get(code)
            if if_changed and current is not None:
                checked_at = time.time()
                async with self._engine.connect() as conn:
                    if await Geography(conn).version(code) == current.version:
                        current.loaded_at = checked_at
                        continue
            index = await load_index(self._engine, code)
            if index is None:
                self._indexes.pop(code, None)
            else:
                self._indexes[code] = index
                loaded.append(index)
        self.retired = await retired_jurisdictions(self._engine)
        if loaded:
            # Building an index makes many temporary geometries: without this the process
            # keeps the peak's pages after every (re)load.
            release_free_memory()
        if jurisdiction is None:
            self.ready.set()
        return loaded
