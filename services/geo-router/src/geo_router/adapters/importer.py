"""Loading a jurisdiction from files: area polygons (GeoJSON) and offices + rules (YAML).

Each load is one transaction: routing sees the old set until commit and the new one after it.
Replaced areas and rules are end-dated, not deleted, so past decisions stay explainable.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyogrio
import pyogrio.errors
import pyogrio.raw
import shapely
import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pyproj import Transformer
from pyproj.exceptions import CRSError
from shapely import MultiPolygon, Polygon, make_valid
from shapely.errors import ShapelyError
from shapely.geometry import shape
from shapely.validation import explain_validity
from sqlalchemy.ext.asyncio import AsyncConnection
from tqdm import tqdm

from geo_router.adapters.db import area_levels, areas, jurisdictions, offices, rules
from mm_shared.categories import CATEGORIES_BY_CODE

WGS84_NAMES = {"urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:EPSG::4326", "EPSG:4326"}


class InvalidImport(ValueError):
    """A file that cannot be imported; ``problems`` says every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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
    items = list(enumerate(rows))
    for i, (props, geom) in tqdm(items, desc=path.name, unit=" areas", disable=not progress):
        code, name = props.get(code_property), props.get(name_property)
        if code is None or name is None:
            for wanted, value in ((code_property, code), (name_property, name)):
                if value is None:
                    lacking[wanted].append(i)
            continue
        if geom is None:
            problems.append(f"feature {i} ({code}): no geometry")
            continue
        if transformer is not None:
            geom = shapely.transform(
                geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
            )
        elif not _looks_like_degrees(geom):
            problems.append(
                f"feature {i} ({code}): coordinates are not lon/lat degrees; "
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
            problems.append(f"feature {i} ({code}): a {kind} with no area; areas are polygons")
            continue
        features.append((str(code), str(name), area))
    for wanted, where in lacking.items():
        if where:
            found = sorted(rows[where[0]][0])
            problems.append(
                f"{len(where)} of {len(rows)} features have no property {wanted!r} (the first: "
                f"feature {where[0]}, which has {', '.join(found) or 'none'})"
            )
    duplicates = [c for c, n in Counter(c for c, _, _ in features).items() if n > 1]
    if duplicates:
        problems.append(f"duplicate area codes: {', '.join(sorted(duplicates))}")
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


async def replace_areas(
    conn: AsyncConnection,
    jurisdiction: str,
    level: str,
    features: list[tuple[str, str, MultiPolygon]],
    *,
    level_name: str | None = None,
    rank: int | None = None,
    article: str | None = None,
) -> int:
    """End-date the current areas of this level and insert the new set; returns its version.
    The level's name, rank and article change only where given (a new level gets defaults)."""
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
    current = await conn.scalar(
        sa.select(sa.func.coalesce(sa.func.max(areas.c.version), 0)).where(
            areas.c.jurisdiction == jurisdiction, areas.c.level == level
        )
    )
    version = int(current or 0) + 1
    await conn.execute(
        areas.update()
        .where(
            areas.c.jurisdiction == jurisdiction,
            areas.c.level == level,
            areas.c.valid_to.is_(None),
        )
        .values(valid_to=sa.func.now())
    )
    if features:
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
                    "name": name,
                    "wkb": geom.wkb,
                    "version": version,
                }
                for code, name, geom in features
            ],
        )
    return version


class OfficeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    name: str
    public_name: str | None = None
    email: str


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_codes: list[str]
    office: str
    priority: int = 0
    area_level: str | None = None
    area_codes: list[str] = Field(default_factory=list)


class LevelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    name: str
    rank: int
    file: str
    code_property: str
    name_property: str
    #: The level's grammatical article: explanations say "im Ortsteil …", "in der Gemeinde …".
    article: Literal["der", "die", "das"] = "der"
    #: CRS of the file when it does not say (e.g. "EPSG:25833"); WGS84 otherwise.
    source_crs: str | None = None


class JurisdictionSpec(BaseModel):
    """The YAML manifest of one jurisdiction: its area levels, offices and rules."""

    model_config = ConfigDict(extra="forbid")
    code: str
    name: str
    levels: list[LevelSpec] = Field(default_factory=list)
    offices: list[OfficeSpec]
    rules: list[RuleSpec]


def read_manifest(path: Path) -> JurisdictionSpec:
    try:
        return JurisdictionSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidImport([f"{path}: cannot be read ({exc.__class__.__name__}: {exc})"]) from exc
    except yaml.YAMLError as exc:
        raise InvalidImport([f"{path.name}: not valid YAML: {' '.join(str(exc).split())}"]) from exc
    except ValidationError as exc:
        raise InvalidImport(
            [f"{path.name}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        ) from exc


def rule_rows(spec: JurisdictionSpec, known_areas: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Expand the manifest's rules into one row per (category, area); every problem at once."""
    problems: list[str] = []
    office_codes = {o.code for o in spec.offices}
    rows: list[dict[str, Any]] = []
    for i, r in enumerate(spec.rules, start=1):
        where = f"rule {i}"
        if r.office not in office_codes:
            problems.append(f"{where}: unknown office {r.office!r}")
        for code in r.service_codes:
            if code not in CATEGORIES_BY_CODE:
                problems.append(f"{where}: unknown category {code!r}")
        if r.area_codes and r.area_level is None:
            problems.append(f"{where}: area_codes need an area_level")
        for unknown in [c for c in r.area_codes if (r.area_level or "", c) not in known_areas]:
            problems.append(f"{where}: unknown area {r.area_level} {unknown!r}")
        for code in r.service_codes:
            area_codes: list[str | None] = list(r.area_codes) or [None]
            for area_code in area_codes:
                rows.append(
                    {
                        "jurisdiction": spec.code,
                        "service_code": code,
                        "area_level": r.area_level if area_code else None,
                        "area_code": area_code,
                        "priority": r.priority,
                        "office_code": r.office,
                    }
                )
    clashes = Counter(
        (row["service_code"], row["area_level"], row["area_code"], row["priority"]) for row in rows
    )
    for (code, level, area_code, priority), n in sorted(clashes.items(), key=str):
        if n > 1:
            place = f"{level} {area_code}" if area_code else "the whole jurisdiction"
            problems.append(
                f"{n} rules of equal priority {priority} for category {code} in {place}"
            )
    if problems:
        raise InvalidImport(problems)
    return rows


async def replace_offices_and_rules(conn: AsyncConnection, spec: JurisdictionSpec) -> int:
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
    await conn.execute(
        rules.update()
        .where(rules.c.jurisdiction == spec.code, rules.c.valid_to.is_(None))
        .values(valid_to=sa.func.now())
    )
    await conn.execute(rules.insert(), rows)
    return len(rows)
