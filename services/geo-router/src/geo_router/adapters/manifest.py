"""A jurisdiction's manifest (YAML): what it may say, and every problem with it in one list.

No GIS and no database libraries here: the command line checks a manifest without loading them.
Problems count from 1 everywhere (level 1, office 1, rule 1) and name what they are about,
e.g. "rule 3 (office VTA): unknown area level 'x'".
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from geo_router.adapters.refusal import InvalidImport
from mm_shared.categories import CATEGORIES, CATEGORIES_BY_CODE


def _as_text(value: Any) -> Any:
    """Codes are text: YAML reads an unquoted 3 (or 101) as a number, and GeoJSON properties are
    often numbers too; both mean the code as written."""
    if isinstance(value, bool):
        return value  # left for pydantic to refuse: `yes` is no code
    if isinstance(value, int):
        return str(value)
    return value


Code = Annotated[str, BeforeValidator(_as_text)]


class OfficeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name: str
    public_name: str | None = None
    email: str


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_codes: list[Code]
    office: Code
    priority: int = 0
    area_level: Code | None = None
    area_codes: list[Code] = Field(default_factory=list)


class LevelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name: str
    rank: int
    file: str
    code_property: str
    name_property: str
    #: The level's grammatical article: explanations say "im Ortsteil …", "in der Gemeinde …".
    article: Literal["der", "die", "das"] = "der"
    #: CRS of the file when it does not say (e.g. "EPSG:25833"); WGS84 otherwise.
    source_crs: str | None = None


class HolidaysSpec(BaseModel):
    """Public holidays the office reminders skip, as the `holidays` package names them."""

    model_config = ConfigDict(extra="forbid")
    country: str
    subdivision: str | None = None


class JurisdictionSpec(BaseModel):
    """The YAML manifest of one jurisdiction: its area levels, offices and rules, and how the
    platform presents it (mail sender, holidays, categories switched off)."""

    model_config = ConfigDict(extra="forbid")
    code: Code
    name: str
    mail_sender_name: str | None = None
    holidays: HolidaysSpec | None = None
    precedence: int = 0
    disabled_service_codes: list[Code] = Field(default_factory=list)
    levels: list[LevelSpec] = Field(default_factory=list)
    offices: list[OfficeSpec]
    rules: list[RuleSpec]


#: The lists of a manifest and how one of their items is named in a problem.
_ITEM_NAMES = {"levels": "level", "offices": "office", "rules": "rule"}


def _where(loc: tuple[int | str, ...], raw: Any) -> str:
    """'rule 3 (office VTA): area_codes.2' for pydantic's ('rules', 2, 'area_codes', 1)."""
    if len(loc) >= 2 and loc[0] in _ITEM_NAMES and isinstance(loc[1], int):
        items = raw.get(loc[0]) if isinstance(raw, dict) else None
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        label = f"{_ITEM_NAMES[str(loc[0])]} {loc[1] + 1}{_about(str(loc[0]), item)}"
        rest = _dotted(loc[2:])
        return f"{label}: {rest}" if rest else label
    return _dotted(loc) or "the manifest"


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p + 1) if isinstance(p, int) else p for p in loc)


def _about(kind: str, item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    key = "office" if kind == "rules" else "code"
    return f" ({key} {item[key]})" if item.get(key) is not None else ""


def read_manifest(path: Path) -> JurisdictionSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidImport([f"{path}: cannot be read ({exc.__class__.__name__}: {exc})"]) from exc
    except yaml.YAMLError as exc:
        raise InvalidImport([f"{path.name}: not valid YAML: {' '.join(str(exc).split())}"]) from exc
    try:
        spec = JurisdictionSpec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidImport(
            [f"{path.name}: {_where(e['loc'], raw)}: {e['msg']}" for e in exc.errors()]
        ) from exc
    problems = [f"{path.name}: {p}" for p in manifest_problems(spec)]
    if problems:
        raise InvalidImport(problems)
    return spec


def manifest_problems(spec: JurisdictionSpec) -> list[str]:
    """What the manifest says that cannot be right whatever the areas are."""
    problems = []
    for kind, codes in (
        ("level", [level.code for level in spec.levels]),
        ("office", [office.code for office in spec.offices]),
    ):
        first: dict[str, int] = {}
        for i, code in enumerate(codes, start=1):
            if code in first:
                problems.append(f"{kind} {i} ({code}): the same code as {kind} {first[code]}")
            first.setdefault(code, i)
    for code in spec.disabled_service_codes:
        if code not in CATEGORIES_BY_CODE:
            problems.append(f"disabled_service_codes: unknown category {code!r}{_hint(code)}")
    if spec.holidays is not None:
        problems += holidays_problems(spec.holidays)
    return problems


def holidays_problems(wanted: HolidaysSpec) -> list[str]:
    # The package's tables take a third of a second to import: only when a manifest names them.
    import holidays

    supported = holidays.list_supported_countries()
    if wanted.country not in supported:
        return [
            f"holidays: unknown country {wanted.country!r} (the holidays package's "
            "ISO 3166 codes, e.g. DE, AT, CH)"
        ]
    subdivisions = supported[wanted.country]
    if wanted.subdivision is not None and wanted.subdivision not in subdivisions:
        return [
            f"holidays: unknown subdivision {wanted.subdivision!r} of {wanted.country} "
            f"(the holidays package knows {', '.join(subdivisions) or 'none'})"
        ]
    return []


def _hint(code: str) -> str:
    """Unquoted 001 reads as the number 1 in YAML: say how to write it."""
    padded = code.zfill(3)
    if code.isdigit() and padded != code and padded in CATEGORIES_BY_CODE:
        return f" (write it quoted, '{padded}': unquoted, YAML reads {padded} as a number)"
    return ""


def _rule_label(number: int, rule: RuleSpec) -> str:
    return f"rule {number} (office {rule.office})"


def rule_rows(spec: JurisdictionSpec, known_areas: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Expand the manifest's rules into one row per (category, area); every problem at once.
    ``known_areas``: the (level, code) pairs of the jurisdiction's current areas."""
    problems: list[str] = []
    office_codes = {o.code for o in spec.offices}
    known_levels = sorted({level for level, _ in known_areas} | {lv.code for lv in spec.levels})
    rows: list[dict[str, Any]] = []
    #: Rule numbers per (category, level, area, priority): two of them clash.
    claims: dict[tuple[str, str | None, str | None, int], list[int]] = {}
    for number, r in enumerate(spec.rules, start=1):
        where = _rule_label(number, r)
        if r.office not in office_codes:
            problems.append(f"{where}: unknown office {r.office!r}")
        for code in r.service_codes:
            if code not in CATEGORIES_BY_CODE:
                problems.append(f"{where}: unknown category {code!r}{_hint(code)}")
        if r.area_codes and r.area_level is None:
            problems.append(
                f"{where}: area_codes without area_level; name the level the codes belong to "
                f"(one of: {', '.join(known_levels) or 'no level loaded'})"
            )
        elif r.area_level is not None and r.area_level not in known_levels:
            problems.append(
                f"{where}: unknown area level {r.area_level!r} "
                f"(the levels are: {', '.join(known_levels) or 'none'})"
            )
        elif r.area_level is not None and not r.area_codes:
            problems.append(f"{where}: area_level {r.area_level!r} without area_codes")
        else:
            unknown = [c for c in r.area_codes if (r.area_level, c) not in known_areas]
            if unknown:
                problems.append(
                    f"{where}: unknown area{'s' if len(unknown) > 1 else ''} of level "
                    f"{r.area_level}: {', '.join(repr(c) for c in unknown)}"
                )
        for code in r.service_codes:
            area_codes: list[str | None] = list(r.area_codes) or [None]
            for area_code in area_codes:
                level = r.area_level if area_code else None
                claims.setdefault((code, level, area_code, r.priority), []).append(number)
                rows.append(
                    {
                        "jurisdiction": spec.code,
                        "service_code": code,
                        "area_level": level,
                        "area_code": area_code,
                        "priority": r.priority,
                        "office_code": r.office,
                    }
                )
    for (code, level, area_code, priority), numbers in sorted(claims.items(), key=str):
        if len(numbers) > 1:
            place = f"{level} {area_code}" if area_code else "the whole jurisdiction"
            which = ", ".join(_rule_label(n, spec.rules[n - 1]) for n in numbers)
            problems.append(
                f"{which}: equal priority {priority} for category {code} in {place}; "
                "give one of them a higher priority"
            )
    if problems:
        raise InvalidImport(problems)
    return rows


def warnings(spec: JurisdictionSpec) -> list[str]:
    """What a manifest may well mean but is worth a second look: categories nobody takes,
    offices that get nothing, rules for categories switched off."""
    found = []
    disabled = set(spec.disabled_service_codes)
    ruled = {code for r in spec.rules for code in r.service_codes}
    for category in CATEGORIES:
        if category.code not in ruled and category.code not in disabled:
            found.append(
                f"category {category.code} ({category.name_en}): no rule names an office, so "
                "its reports fail as no_responsible_office; add a rule, or list it in "
                "disabled_service_codes if the city does not take it"
            )
    used = Counter(r.office for r in spec.rules)
    for number, office in enumerate(spec.offices, start=1):
        if not used[office.code]:
            found.append(f"office {number} ({office.code}): no rule sends reports to it")
    for number, r in enumerate(spec.rules, start=1):
        off = [c for c in r.service_codes if c in disabled]
        if off:
            found.append(
                f"{_rule_label(number, r)}: category {', '.join(off)} is switched off "
                "(disabled_service_codes): the rule only applies to reports sent before"
            )
    return found
