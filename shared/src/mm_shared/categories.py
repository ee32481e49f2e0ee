"""The service catalogue (Open311 "services"): part of the contract, because every event carries a
``service_code`` and geo-router's responsibility rules are written against these codes.

Modelled on real German Mängelmelder lists (e.g. Gießen's Open311 service list).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    code: str
    name_de: str
    name_en: str
    description_de: str
    description_en: str
    group: str

    def name(self, locale: str) -> str:
        return self.name_en if locale == "en" else self.name_de


CATEGORIES: tuple[Category, ...] = (
    Category(
        "001",
        "Straßenschaden / Schlagloch",
        "Road damage / pothole",
        "Schlaglöcher, Risse oder Absackungen in der Fahrbahn",
        "Potholes, cracks or subsidence in the road surface",
        "Straße und Verkehr",
    ),
    Category(
        "002",
        "Geh- oder Radweg beschädigt",
        "Damaged footpath or cycle path",
        "Stolperfallen, lose Platten, Schäden an Geh- und Radwegen",
        "Trip hazards, loose slabs, damage to footpaths and cycle paths",
        "Straße und Verkehr",
    ),
    Category(
        "003",
        "Straßenbeleuchtung defekt",
        "Street light out",
        "Laterne aus, flackert oder brennt tagsüber",
        "Street light out, flickering or on during the day",
        "Straße und Verkehr",
    ),
    Category(
        "004",
        "Verkehrszeichen / Ampel",
        "Traffic sign / traffic light",
        "Verkehrszeichen beschädigt, verdreht oder fehlt; Ampelstörung",
        "Traffic sign damaged, turned or missing; traffic light fault",
        "Straße und Verkehr",
    ),
    Category(
        "005",
        "Illegale Müllablagerung",
        "Illegal dumping",
        "Sperrmüll, Bauschutt oder Säcke im öffentlichen Raum",
        "Bulky waste, rubble or bags dumped in public space",
        "Sauberkeit",
    ),
    Category(
        "006",
        "Verschmutzung / Papierkorb voll",
        "Litter / overflowing bin",
        "Verschmutzte Flächen, überfüllte Papierkörbe",
        "Littered areas, overflowing public bins",
        "Sauberkeit",
    ),
    Category(
        "007",
        "Grünanlage / Park",
        "Park / green space",
        "Schäden oder Pflegebedarf in Parks und Grünanlagen",
        "Damage or upkeep needed in parks and green spaces",
        "Grün",
    ),
    Category(
        "008",
        "Baum / Baumschaden",
        "Tree / tree damage",
        "Umsturzgefahr, abgebrochene Äste, kranker Straßenbaum",
        "Danger of falling, broken branches, diseased street tree",
        "Grün",
    ),
    Category(
        "009",
        "Spielplatz",
        "Playground",
        "Defekte Spielgeräte, Verschmutzung auf Spielplätzen",
        "Broken play equipment, litter on playgrounds",
        "Grün",
    ),
    Category(
        "010",
        "Schrottfahrzeug / Fahrradleiche",
        "Abandoned vehicle or bicycle",
        "Abgemeldete oder verlassene Fahrzeuge und Fahrräder",
        "Unregistered or abandoned vehicles and bicycles",
        "Ordnung",
    ),
    Category(
        "011",
        "Graffiti",
        "Graffiti",
        "Schmierereien an öffentlichen Gebäuden und Anlagen",
        "Graffiti on public buildings and facilities",
        "Ordnung",
    ),
    Category(
        "012",
        "Gully / Entwässerung",
        "Drain / gully",
        "Verstopfter Gully, Überschwemmung der Fahrbahn",
        "Blocked drain, flooding of the road",
        "Straße und Verkehr",
    ),
    Category(
        "013",
        "Sonstiges",
        "Other",
        "Alles, was in keine andere Kategorie passt",
        "Anything that fits no other category",
        "Sonstiges",
    ),
)

CATEGORIES_BY_CODE: dict[str, Category] = {c.code: c for c in CATEGORIES}
