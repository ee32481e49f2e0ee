"""In-memory mirror of PostGIS areas and rules, for routing at hundreds of thousands of points
per second. PostGIS stays the source of truth; the mirror is rebuilt from it when a
RoutingConfigChanged event says a jurisdiction changed (and checked against it in the tests)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
import sqlalchemy as sa
from shapely import STRtree
from sqlalchemy.ext.asyncio import AsyncEngine

from geo_router.adapters.db import Geography, areas, jurisdictions
from geo_router.domain import Decision, Rule, choose_office, one_area_per_level
from mm_shared.events import MatchedArea

#: Tolerance (degrees, ~10 m) of the published outline: the union of many districts has many
#: vertices; intake only needs to know "roughly inside or clearly outside".
BOUNDARY_SIMPLIFY_DEG = 0.0001


@dataclass
class JurisdictionIndex:
    code: str
    name: str
    levels: list[str]
    areas: list[MatchedArea]
    geometries: np.ndarray[Any, Any]
    rules: dict[str, list[Rule]]
    version: str
    loaded_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._tree = STRtree(self.geometries)

    def areas_at_many(
        self, lats: Sequence[float], longs: Sequence[float]
    ) -> list[tuple[MatchedArea, ...]]:
        """For each point, the area of each level that covers it (boundaries included; on a
        shared boundary, the lowest code)."""
        points = shapely.points(np.asarray(longs, dtype=float), np.asarray(lats, dtype=float))
        point_idx, area_idx = self._tree.query(points, predicate="covered_by")
        matches: list[list[MatchedArea]] = [[] for _ in range(len(points))]
        for i, j in zip(point_idx.tolist(), area_idx.tolist(), strict=True):
            matches[i].append(self.areas[j])
        return [one_area_per_level(m, self.levels) for m in matches]

    def decide(self, service_code: str, areas: Sequence[MatchedArea]) -> Decision | None:
        return choose_office(service_code, areas, self.rules.get(service_code, ()))

    def boundary_geojson(self) -> dict[str, Any]:
        coarsest = [
            g for a, g in zip(self.areas, self.geometries, strict=True) if a.level == self.levels[0]
        ]
        outline = shapely.union_all(coarsest).simplify(BOUNDARY_SIMPLIFY_DEG)
        if outline.geom_type == "Polygon":
            outline = shapely.MultiPolygon([outline])
        return dict(shapely.geometry.mapping(outline))


async def load_index(engine: AsyncEngine, jurisdiction: str) -> JurisdictionIndex | None:
    async with engine.connect() as conn:
        geography = Geography(conn)
        name = await conn.scalar(
            sa.select(jurisdictions.c.name).where(jurisdictions.c.code == jurisdiction)
        )
        levels = await geography.level_order(jurisdiction)
        if name is None or not levels:
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
    fingerprint = hashlib.sha256(
        repr(([r.id for r in rows], [r.id for r in rules])).encode()
    ).hexdigest()[:16]
    return JurisdictionIndex(
        code=jurisdiction,
        name=str(name),
        levels=levels,
        areas=[MatchedArea(level=r.level, code=r.code, name=r.name) for r in rows],
        geometries=shapely.from_wkb([bytes(r.wkb) for r in rows]),
        rules=by_service,
        version=fingerprint,
    )


async def jurisdiction_codes(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.scalars(sa.select(jurisdictions.c.code))).all())


class RoutingCache:
    """The indexes of all jurisdictions; replaced whole on reload, so readers never see a
    half-built one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._indexes: dict[str, JurisdictionIndex] = {}
        #: Set once every jurisdiction was loaded: routing waits for it rather than failing
        #: reports as "unknown jurisdiction" during start-up.
        self.ready = asyncio.Event()

    def get(self, jurisdiction: str) -> JurisdictionIndex | None:
        return self._indexes.get(jurisdiction)

    def oldest_load(self) -> float:
        return min((i.loaded_at for i in self._indexes.values()), default=time.time())

    async def reload(self, jurisdiction: str | None = None) -> list[JurisdictionIndex]:
        codes = [jurisdiction] if jurisdiction else await jurisdiction_codes(self._engine)
        loaded = []
        for code in codes:
            index = await load_index(self._engine, code)
            if index is None:
                self._indexes.pop(code, None)
            else:
                self._indexes[code] = index
                loaded.append(index)
        if jurisdiction is None:
            self.ready.set()
        return loaded
