"""Responsibility rules: which office handles a category at a place, and why. Pure Python."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import MatchedArea, OfficeRef


@dataclass(frozen=True)
class Rule:
    """``service_code`` at ``area`` (or anywhere in the jurisdiction when None) → ``office``."""

    id: int
    service_code: str
    office: OfficeRef
    priority: int = 0
    area_level: str | None = None
    area_code: str | None = None
    #: The level as staff call it ("Stadtbezirk") and its article, for explanations.
    area_level_name: str | None = None
    area_level_article: str = "der"
    area_name: str | None = None

    def applies_to(self, service_code: str, areas: Sequence[MatchedArea]) -> bool:
        if self.service_code != service_code:
            return False
        if self.area_code is None:
            return True
        return any(a.level == self.area_level and a.code == self.area_code for a in areas)

    def explain(self, areas: Sequence[MatchedArea]) -> str:
        category = CATEGORIES_BY_CODE.get(self.service_code)
        what = f"„{category.name_de}“" if category else f"Kategorie {self.service_code}"
        if self.area_code is None:
            where = "im ganzen Stadtgebiet (Standardzuständigkeit)"
        else:
            area = next(
                (a for a in areas if a.level == self.area_level and a.code == self.area_code), None
            )
            level = self.area_level_name or self.area_level
            name = area.name if area else self.area_name or self.area_code
            where = f"{'in der' if self.area_level_article == 'die' else 'im'} {level} {name}"
        return f"Regel {self.id}: {what} {where} → {self.office.name} (Priorität {self.priority})"


@dataclass(frozen=True)
class Decision:
    office: OfficeRef
    rule: Rule
    explanation: str


def choose_office(
    service_code: str, areas: Sequence[MatchedArea], rules: Iterable[Rule]
) -> Decision | None:
    """The applicable rule with the highest priority decides; among equals, an area rule beats
    the jurisdiction-wide default, and then the lower rule id wins so the choice is stable."""
    candidates = [r for r in rules if r.applies_to(service_code, areas)]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: (-r.priority, r.area_code is None, r.id))
    return Decision(best.office, best, best.explain(areas))


def one_area_per_level(
    matches: Iterable[MatchedArea], level_order: Sequence[str]
) -> tuple[MatchedArea, ...]:
    """A point on a shared boundary lies in several areas of one level: keep the one with the
    lowest code, so the same point always lands in the same area."""
    chosen: dict[str, MatchedArea] = {}
    for area in matches:
        current = chosen.get(area.level)
        if current is None or area.code < current.code:
            chosen[area.level] = area
    rank = {level: i for i, level in enumerate(level_order)}
    return tuple(sorted(chosen.values(), key=lambda a: rank.get(a.level, len(rank))))


#: The outline of a jurisdiction that takes no more reports.
EMPTY_MULTIPOLYGON: dict[str, Any] = {"type": "MultiPolygon", "coordinates": []}


class Outline(NamedTuple):
    """What geo-router announces about a jurisdiction: its outline (GeoJSON) with its manifest
    settings, and its office directory's sender name and holidays."""

    code: str
    name: str
    version: str
    boundary: dict[str, Any]
    precedence: int = 0
    disabled_service_codes: tuple[str, ...] = ()
    sender_name: str | None = None
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    retired: bool = False

    @classmethod
    def of_retired(cls, code: str, name: str) -> Outline:
        return cls(code, name, "retired", EMPTY_MULTIPOLYGON, retired=True)
