"""Open311 service definitions: the extra questions some categories ask, and each category's
service level (the days the city means to take to resolve a report). Pure Python."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mm_shared.categories import CATEGORIES_BY_CODE


@dataclass(frozen=True)
class Attribute:
    code: str
    datatype: str  # string | number | datetime | text | singlevaluelist | multivaluelist
    description: str
    required: bool = False
    order: int = 1
    values: tuple[tuple[str, str], ...] = ()  # (key, name) for the list types
    variable: bool = True
    datatype_description: str = ""


@dataclass(frozen=True)
class ServiceDefinition:
    service_code: str
    attributes: tuple[Attribute, ...] = field(default_factory=tuple)


DEFINITIONS: dict[str, ServiceDefinition] = {
    "003": ServiceDefinition(
        "003",
        (
            Attribute(
                "pole_number",
                "string",
                "Mastnummer der Laterne (falls lesbar) / number on the lamp post",
                datatype_description="z. B. 12-345 / e.g. 12-345",
            ),
        ),
    ),
    "005": ServiceDefinition(
        "005",
        (
            Attribute(
                "waste_type",
                "singlevaluelist",
                "Art des Abfalls / kind of waste",
                required=True,
                values=(
                    ("bulky", "Sperrmüll / bulky waste"),
                    ("rubble", "Bauschutt / rubble"),
                    ("household", "Hausmüll / household waste"),
                    ("hazardous", "Sondermüll (Farben, Öl) / hazardous waste"),
                    ("other", "Sonstiges / other"),
                ),
            ),
            Attribute(
                "amount_m3",
                "number",
                "Geschätzte Menge in m³ / estimated amount in m³",
                order=2,
            ),
        ),
    ),
    "010": ServiceDefinition(
        "010",
        (
            Attribute(
                "vehicle_kind",
                "singlevaluelist",
                "Fahrzeugart / kind of vehicle",
                required=True,
                values=(
                    ("car", "Auto / car"),
                    ("bicycle", "Fahrrad / bicycle"),
                    ("other", "Sonstiges / other"),
                ),
            ),
            Attribute(
                "license_plate", "string", "Kennzeichen (falls vorhanden) / licence plate", order=2
            ),
        ),
    ),
}


#: Days to resolve a report, per category: the city's promise, shown to reporters as Open311
#: ``expected_datetime``, and the line past which a ticket counts as overdue. A hazard (a
#: traffic light out, a missing manhole cover) is quick; park upkeep waits for the season.
#: ``INTAKE_SERVICE_LEVEL_DAYS`` overrides any of them.
SERVICE_LEVEL_DAYS: dict[str, float] = {
    "001": 14,  # road damage / pothole
    "002": 14,  # footpath / cycle path
    "003": 10,  # street light
    "004": 3,  # traffic sign / traffic light
    "005": 7,  # illegal dumping
    "006": 3,  # litter / overflowing bin
    "007": 30,  # park / green space
    "008": 7,  # tree damage (may fall)
    "009": 7,  # playground
    "010": 28,  # abandoned vehicle (legal deadlines before removal)
    "011": 30,  # graffiti
    "012": 7,  # drain / gully
    "013": 14,  # other
}
#: A category without an entry (a newer one) gets this.
DEFAULT_SERVICE_LEVEL_DAYS = 14.0


def expected_days(service_code: str, overrides: Mapping[str, float] | None = None) -> float:
    """The service level of a category: the override if configured, else the catalogue's."""
    if overrides and service_code in overrides:
        return float(overrides[service_code])
    return float(SERVICE_LEVEL_DAYS.get(service_code, DEFAULT_SERVICE_LEVEL_DAYS))


def definition(service_code: str) -> ServiceDefinition | None:
    if service_code not in CATEGORIES_BY_CODE:
        return None
    return DEFINITIONS.get(service_code, ServiceDefinition(service_code))


def check_attributes(service_code: str, given: Mapping[str, list[str]]) -> list[str]:
    """Problems with ``attribute[code]`` values against the service definition."""
    found = definition(service_code)
    if found is None:
        return []
    known = {a.code: a for a in found.attributes}
    problems = [
        f"attribute[{code}] is not asked for service {service_code}"
        for code in given
        if code not in known
    ]
    for attribute in found.attributes:
        values = [v for v in given.get(attribute.code, []) if v != ""]
        if not values:
            if attribute.required:
                problems.append(f"attribute[{attribute.code}] is required: {attribute.description}")
            continue
        if attribute.datatype in ("singlevaluelist", "multivaluelist"):
            allowed = {k for k, _ in attribute.values}
            wrong = [v for v in values if v not in allowed]
            if wrong:
                problems.append(
                    f"attribute[{attribute.code}] must be one of {', '.join(sorted(allowed))}, got {', '.join(wrong)}"
                )
            if attribute.datatype == "singlevaluelist" and len(values) > 1:
                problems.append(f"attribute[{attribute.code}] takes one value")
        elif attribute.datatype == "number":
            try:
                float(values[0])
            except ValueError:
                problems.append(f"attribute[{attribute.code}] must be a number, got {values[0]!r}")
    return problems
