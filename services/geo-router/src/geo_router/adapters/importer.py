"""Loading a jurisdiction from files: area polygons (GeoJSON) and offices + rules (YAML).

Each load is one transaction: routing sees the old set until commit and the new one after it.
Replaced areas and rules are end-dated, not deleted, so past decisions stay explainable.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.errors
import pyogrio.raw
import shapely
import sqlalchemy as sa
from pyproj import Transformer
from pyproj.exceptions import CRSError
from shapely import MultiPolygon, Polygon, make_valid
from shapely.errors import ShapelyError
from shapely.geometry import shape
from shapely.validation import explain_validity
from sqlalchemy.ext.asyncio import AsyncConnection
from tqdm import tqdm

from geo_router.adapters.db import area_levels, areas, jurisdictions, offices, rules
from geo_router.adapters.manifest import JurisdictionSpec, read_manifest, rule_rows
from geo_router.adapters.refusal import InvalidImport

__all__ = ["InvalidImport", "read_manifest"]  # the command line's use of this module

WGS84_NAMES = {"urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:EPSG::4326", "EPSG:4326"}


def _as_multipolygon(geom: Any) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    polygons: list[Polygon] = []
    for part in getattr(geom, "geoms", []):
        if isinstance(part, Polygon):
            polygons.append(part)
        elif isinstance(part, MultiPolygon):
            polygons.extend(part.geoms)
    return MultiPolygon(polygons)


def _source_crs(name: str | None, override: str | None) -> str:
    if override:
        return override
    if not name or name in WGS84_NAMES:
        return "EPSG:4326"
    # "urn:ogc:def:crs:EPSG::25832" → "EPSG:25832"
    if name.startswith("urn:ogc:def:crs:EPSG:"):
        return "EPSG:" + name.rsplit(":", 1)[-1]
    return name


def _read_features(path: Path) -> tuple[str | None, list[tuple[dict[str, Any], Any]]]:
    """The file's CRS (None: not stated) and its features as (properties, shapely geometry).
    GeoJSON is read as it is; GeoPackage, Shapefile and whatever else GDAL reads go through
    pyogrio (GDAL in a wheel, no system library)."""
    if path.suffix.lower() in {".geojson", ".json"}:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            name = (data.get("crs") or {}).get("properties", {}).get("name")
            return name, [
                (f.get("properties") or {}, shape(f["geometry"]) if f.get("geometry") else None)
                for f in data.get("features", [])
            ]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ShapelyError) as exc:
            # JSON syntax, a missing file, or features that are not GeoJSON: the file as such.
            reason = f"{exc.__class__.__name__}: {exc}"
            problem = f"{path}: not a readable GeoJSON FeatureCollection ({reason})"
            raise InvalidImport([problem]) from exc
    try:
        meta, _, geometries, columns = pyogrio.raw.read(path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise InvalidImport([f"{path.name}: not a readable GIS file: {exc}"]) from exc
    names = list(meta["fields"])
    rows = [
        {name: _plain(column[i]) for name, column in zip(names, columns, strict=True)}
        for i in range(len(geometries))
    ]
    shapes = [shapely.from_wkb(g) if g is not None else None for g in geometries]
    return meta.get("crs"), list(zip(rows, shapes, strict=True))


def _plain(value: Any) -> Any:
    """Codes read as numbers (Shapefile fields often are) compare as the text they show."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.item() if hasattr(value, "item") else value


def read_areas(
    path: Path,
    code_property: str,
    name_property: str,
    *,
    source_crs: str | None = None,
    progress: bool = False,
) -> tuple[list[tuple[str, str, MultiPolygon]], list[str]]:
    """Features of a GeoJSON, GeoPackage or Shapefile as (code, name, WGS84 geometry). The CRS
    comes from the file (or ``source_crs``) and is transformed to WGS84; invalid geometry is
    repaired and every repair is reported."""
    stated_crs, rows = _read_features(path)
    crs = _source_crs(stated_crs, source_crs)
    transformer = None
    if crs != "EPSG:4326":
        try:
            transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        except CRSError as exc:
            raise InvalidImport([f"{path.name}: unknown CRS {crs!r}: {exc}"]) from exc
    features, repaired, problems = [], [], []
    lacking: dict[str, list[int]] = {code_property: [], name_property: []}
    # Features count from 1, as every other problem of a load does.
    items = list(enumerate(rows, start=1))
    for i, (props, geom) in tqdm(items, desc=path.name, unit=" areas", disable=not progress):
        code, name = props.get(code_property), props.get(name_property)
        if code is None or name is None:
            for wanted, value in ((code_property, code), (name_property, name)):
                if value is None:
                    lacking[wanted].append(i)
            continue
        if geom is None:
            problems.append(f"{path.name}: feature {i} ({code}): no geometry")
            continue
        if transformer is not None:
            geom = shapely.transform(
                geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
            )
        elif not _looks_like_degrees(geom):
            problems.append(
                f"{path.name}: feature {i} ({code}): coordinates are not lon/lat degrees; "
                "name the source CRS (e.g. --source-crs EPSG:25833)"
            )
            continue
        kind = geom.geom_type
        if not geom.is_valid:
            reason = explain_validity(geom)
            geom = make_valid(geom)
            repaired.append(f"{code} {name}: {reason}")
        area = _as_multipolygon(geom)
        if area.is_empty:
            problems.append(
                f"{path.name}: feature {i} ({code}): a {kind} with no area; areas are polygons"
            )
            continue
        features.append((str(code), str(name), area))
    for wanted, where in lacking.items():
        if where:
            found = sorted(rows[where[0] - 1][0])
            problems.append(
                f"{path.name}: {len(where)} of {len(rows)} features have no property {wanted!r} "
                "(the first: "
                f"feature {where[0]}, which has {', '.join(found) or 'none'})"
            )
    duplicates = [c for c, n in Counter(c for c, _, _ in features).items() if n > 1]
    if duplicates:
        problems.append(f"{path.name}: duplicate area codes: {', '.join(sorted(duplicates))}")
    if problems:
        raise InvalidImport(problems)
    return features, repaired


def _looks_like_degrees(geom: Any) -> bool:
    minx, miny, maxx, maxy = (float(v) for v in geom.bounds)
    return -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90


async def has_areas(conn: AsyncConnection, jurisdiction: str) -> bool:
    found = await conn.scalar(
        sa.select(sa.literal(True)).where(areas.c.jurisdiction == jurisdiction).limit(1)
    )
    return bool(found)


async def ensure_jurisdiction(conn: AsyncConnection, code: str, name: str | None) -> None:
    """Create the jurisdiction if it is new; rename it only when a name is given."""
    insert = sa.dialects.postgresql.insert(jurisdictions).values(code=code, name=name or code)
    await conn.execute(
        insert.on_conflict_do_update(index_elements=["code"], set_={"name": name})
        if name
        else insert.on_conflict_do_nothing(index_elements=["code"])
    )


async def apply_manifest_settings(conn: AsyncConnection, spec: JurisdictionSpec) -> None:
    """Create or update the jurisdiction with what its manifest says about it as a whole.
    Loading the manifest of a retired jurisdiction brings it back."""
    values = {
        "name": spec.name,
        "precedence": spec.precedence,
        "disabled_service_codes": sorted(set(spec.disabled_service_codes)),
        "mail_sender_name": spec.mail_sender_name,
        "holidays_country": spec.holidays.country if spec.holidays else None,
        "holidays_subdivision": spec.holidays.subdivision if spec.holidays else None,
        "retired_at": None,
    }
    await conn.execute(
        sa.dialects.postgresql.insert(jurisdictions)
        .values(code=spec.code, **values)
        .on_conflict_do_update(index_elements=["code"], set_=values)
    )


@dataclass(frozen=True)
class AreaChanges:
    """What a load did to one level's areas. Unchanged areas keep their row and version."""

    version: int
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> str:
        if not self.any:
            return f"version {self.version}, unchanged"
        counts = f"{self.added} added, {self.changed} changed, {self.removed} removed"
        return f"version {self.version}: {counts}, {self.unchanged} unchanged"


async def replace_areas(
    conn: AsyncConnection,
    jurisdiction: str,
    level: str,
    features: list[tuple[str, str, MultiPolygon]],
    *,
    level_name: str | None = None,
    rank: int | None = None,
    article: str | None = None,
) -> AreaChanges:
    """Make ``features`` the current areas of this level, changing only what differs: an area
    whose name or outline changed, or that is new, gets a row of the next version; one that is
    gone is end-dated; an unchanged one keeps its row (and version). The level's name, rank and
    article change only where given (a new level gets defaults)."""
    given = {"name": level_name, "rank": rank, "article": article}
    changes = {column: value for column, value in given.items() if value is not None}
    insert = sa.dialects.postgresql.insert(area_levels).values(
        jurisdiction=jurisdiction,
        code=level,
        name=level_name or level,
        rank=rank or 1,
        article=article or "der",
    )
    keys = ["jurisdiction", "code"]
    await conn.execute(
        insert.on_conflict_do_update(index_elements=keys, set_=changes)
        if changes
        else insert.on_conflict_do_nothing(index_elements=keys)
    )
    this_level = (areas.c.jurisdiction == jurisdiction, areas.c.level == level)
    latest = await conn.scalar(
        sa.select(sa.func.coalesce(sa.func.max(areas.c.version), 0)).where(*this_level)
    )
    current = {
        r.code: r
        for r in await conn.execute(
            sa.select(
                areas.c.id,
                areas.c.code,
                areas.c.name,
                sa.func.ST_AsBinary(areas.c.geom).label("wkb"),
            ).where(*this_level, areas.c.valid_to.is_(None))
        )
    }
    new = {code: (name, geom) for code, name, geom in features}
    stored = [c for c in new if c in current]
    same_outline = (
        shapely.equals_exact(
            shapely.from_wkb([bytes(current[c].wkb) for c in stored]),
            np.array([new[c][1] for c in stored], dtype=object),
            tolerance=0,
        ).tolist()
        if stored
        else []
    )
    unchanged = {
        c
        for c, same in zip(stored, same_outline, strict=True)
        if same and current[c].name == new[c][0]
    }
    replaced = [current[c].id for c in current if c not in unchanged]
    inserted = [c for c in new if c not in unchanged]
    result = AreaChanges(
        version=int(latest or 0) + 1 if inserted else int(latest or 0),
        added=sum(1 for c in inserted if c not in current),
        changed=sum(1 for c in inserted if c in current),
        removed=sum(1 for c in current if c not in new),
        unchanged=len(unchanged),
    )
    if replaced:
        await conn.execute(
            areas.update().where(areas.c.id.in_(replaced)).values(valid_to=sa.func.now())
        )
    if inserted:
        await conn.execute(
            sa.text(
                "INSERT INTO geo_router.areas (jurisdiction, level, code, name, geom, version) "
                "VALUES (:jurisdiction, :level, :code, :name, "
                "ST_Multi(ST_GeomFromWKB(:wkb, 4326)), :version)"
            ),
            [
                {
                    "jurisdiction": jurisdiction,
                    "level": level,
                    "code": code,
                    "name": new[code][0],
                    "wkb": new[code][1].wkb,
                    "version": result.version,
                }
                for code in inserted
            ],
        )
    return result


@dataclass(frozen=True)
class RuleChanges:
    """What a load did to the rules: rows (one per category and area) kept, added, ended."""

    kept: int
    added: int
    ended: int

    def summary(self) -> str:
        if not (self.added or self.ended):
            return f"{self.kept} rules, unchanged"
        return f"{self.kept + self.added} rules ({self.added} new, {self.ended} ended)"


def _rule_key(row: Any) -> tuple[Any, ...]:
    return (row["service_code"], row["area_level"], row["area_code"], row["priority"])


async def replace_offices_and_rules(conn: AsyncConnection, spec: JurisdictionSpec) -> RuleChanges:
    """Offices are created or updated by (jurisdiction, code). A rule row the manifest still
    has unchanged keeps its id (staff read "Regel N" in explanations); one that changed or is
    gone is end-dated, and new ones get new ids."""
    known = {
        (r.level, r.code)
        for r in await conn.execute(
            sa.select(areas.c.level, areas.c.code).where(
                areas.c.jurisdiction == spec.code, areas.c.valid_to.is_(None)
            )
        )
    }
    rows = rule_rows(spec, known)
    for o in spec.offices:
        values = {"name": o.name, "public_name": o.public_name or o.name, "email": o.email}
        await conn.execute(
            sa.dialects.postgresql.insert(offices)
            .values(jurisdiction=spec.code, code=o.code, **values)
            .on_conflict_do_update(index_elements=["jurisdiction", "code"], set_=values)
        )
    current = (
        await conn.execute(
            sa.select(rules).where(rules.c.jurisdiction == spec.code, rules.c.valid_to.is_(None))
        )
    ).all()
    wanted = {_rule_key(row): row for row in rows}
    ended = [
        r.id
        for r in current
        if (key := _rule_key(r._mapping)) not in wanted
        or wanted[key]["office_code"] != r.office_code
    ]
    kept = {_rule_key(r._mapping) for r in current if r.id not in ended}
    added = [row for key, row in wanted.items() if key not in kept]
    if ended:
        await conn.execute(
            rules.update().where(rules.c.id.in_(ended)).values(valid_to=sa.func.now())
        )
    if added:
        await conn.execute(rules.insert(), added)
    return RuleChanges(kept=len(kept), added=len(added), ended=len(ended))


async def retire(conn: AsyncConnection, code: str) -> bool:
    """Mark a jurisdiction retired; False when there is no such jurisdiction."""
    result = await conn.execute(
        jurisdictions.update()
        .where(jurisdictions.c.code == code)
        .values(retired_at=sa.func.coalesce(jurisdictions.c.retired_at, sa.func.now()))
        .returning(jurisdictions.c.code)
    )
    return result.first() is not None
