"""The areas as the citizens' and the staff's pages need them: geo-router's polygons simplified
for the browser (as stored they are far more detailed than a phone's map needs), bounding boxes,
whether a point lies in an area, the areas by level for the forms' choices. Pure Python."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

Point = tuple[float, float]  # (long, lat), GeoJSON's order
Ring = list[Point]
#: min_long, min_lat, max_long, max_lat
Box = tuple[float, float, float, float]
Derived = TypeVar("Derived")

#: About 10 m at Leipzig's latitude: invisible at the zoom levels the maps use, and well within
#: intake's 50 m tolerance at the city's edge.
TOLERANCE_DEG = 0.0001


def _perpendicular_sq(p: Point, a: Point, b: Point) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    if dx == dy == 0:
        return (p[0] - a[0]) ** 2 + (p[1] - a[1]) ** 2
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)))
    return (p[0] - a[0] - t * dx) ** 2 + (p[1] - a[1] - t * dy) ** 2


def simplify_ring(ring: Sequence[Sequence[float]], tolerance: float = TOLERANCE_DEG) -> Ring:
    """Douglas–Peucker (iterative), coordinates rounded to 5 decimals (~1 m); a ring keeps at
    least four points."""
    points: Ring = [(float(x), float(y)) for x, y, *_ in ring]
    if len(points) <= 4:
        return [(round(x, 5), round(y, 5)) for x, y in points]
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    limit = tolerance * tolerance
    while stack:
        first, last = stack.pop()
        worst, worst_at = 0.0, -1
        for i in range(first + 1, last):
            d = _perpendicular_sq(points[i], points[first], points[last])
            if d > worst:
                worst, worst_at = d, i
        if worst > limit:
            keep[worst_at] = True
            stack.extend(((first, worst_at), (worst_at, last)))
    kept = [p for p, k in zip(points, keep, strict=True) if k]
    if len(kept) < 4:
        kept = [*points[:: max(1, len(points) // 4)][:3], points[-1]]
    return [(round(x, 5), round(y, 5)) for x, y in kept]


def polygons_of(geometry: dict[str, Any]) -> list[list[Sequence[Sequence[float]]]]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    if geometry["type"] == "MultiPolygon":
        return list(geometry["coordinates"])
    return []


def outline_level(collection: dict[str, Any]) -> str | None:
    """The city's coarsest level (Leipzig's Stadtbezirke, Köln's Stadtteile): the one with the
    fewest areas. Its union is the city's outline."""
    counts: dict[str, int] = {}
    for feature in collection.get("features", []):
        level = feature.get("properties", {}).get("level")
        counts[level] = counts.get(level, 0) + 1
    return min(counts, key=lambda level: counts[level]) if counts else None


def by_level(collection: dict[str, Any]) -> list[tuple[str, list[dict[str, str]]]]:
    """The areas' names and codes by level for a form's choices: coarsest level (fewest areas,
    as :func:`outline_level`) first, each level's areas by name."""
    levels: dict[str, list[dict[str, str]]] = {}
    for feature in collection.get("features", []):
        properties = feature.get("properties", {})
        levels.setdefault(properties.get("level", ""), []).append(
            {"name": properties.get("name", ""), "code": properties.get("code", "")}
        )
    ordered = sorted(levels.items(), key=lambda level: len(level[1]))
    return [
        (level, sorted(areas, key=lambda a: (a["name"], a["code"]))) for level, areas in ordered
    ]


def simplified(collection: dict[str, Any], tolerance: float = TOLERANCE_DEG) -> dict[str, Any]:
    """The FeatureCollection with each polygon simplified and only level, code and name kept;
    the areas of the :func:`outline_level` marked ``outline``."""
    outline = outline_level(collection)
    features = []
    for feature in collection.get("features", []):
        polygons = [
            [simplify_ring(ring, tolerance) for ring in polygon]
            for polygon in polygons_of(feature["geometry"])
        ]
        properties = feature.get("properties", {})
        features.append(
            {
                "type": "Feature",
                "properties": {k: properties.get(k) for k in ("level", "code", "name")}
                | {"outline": properties.get("level") == outline},
                "geometry": {"type": "MultiPolygon", "coordinates": polygons},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def bbox(features: Iterable[dict[str, Any]]) -> Box | None:
    longs: list[float] = []
    lats: list[float] = []
    for feature in features:
        for polygon in polygons_of(feature["geometry"]):
            for x, y, *_ in polygon[0]:
                longs.append(x)
                lats.append(y)
    if not longs:
        return None
    return min(longs), min(lats), max(longs), max(lats)


def _in_ring(x: float, y: float, ring: Sequence[Sequence[float]]) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def contains(feature: dict[str, Any], lat: float, long: float) -> bool:
    """Whether the point lies in the area (outer ring, not in a hole)."""
    return any(
        _in_ring(long, lat, polygon[0]) and not any(_in_ring(long, lat, h) for h in polygon[1:])
        for polygon in polygons_of(feature["geometry"])
    )


def outline_box(collection: dict[str, Any]) -> Box | None:
    """The bounding box of the areas of the :func:`outline_level` (a city's extent)."""
    level = outline_level(collection)
    return bbox(f for f in collection.get("features", []) if f["properties"]["level"] == level)


class PerAnswer(Generic[Derived]):
    """What ``make`` derives from geo-router's areas of one city, made again only when that
    answer is a new object: the services adapter keeps an unchanged answer's object, and the
    answer is kept here with it, so a new answer can never be taken for the old one."""

    def __init__(self, make: Callable[[dict[str, Any]], Derived]) -> None:
        self._make = make
        #: By city code; None: the deployment's own city.
        self._by_city: dict[str | None, tuple[dict[str, Any], Derived]] = {}

    def of(self, city: str | None, areas: dict[str, Any]) -> Derived:
        cached = self._by_city.get(city)
        if cached is None or cached[0] is not areas:
            cached = self._by_city[city] = (areas, self._make(areas))
        return cached[1]
