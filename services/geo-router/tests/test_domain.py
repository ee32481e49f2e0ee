from geo_router.domain import Rule, choose_office, one_area_per_level
from mm_shared.events import MatchedArea, OfficeRef

VTA = OfficeRef(code="VTA", name="Verkehrs- und Tiefbauamt")
VTA_OST = OfficeRef(code="VTA-OST", name="VTA Ost")
ASG = OfficeRef(code="ASG", name="Stadtgrün")
MITTE = MatchedArea(level="stadtbezirk", code="0", name="Mitte")
ZENTRUM = MatchedArea(level="ortsteil", code="00", name="Zentrum")

RULES = [
    Rule(1, "001", VTA),
    Rule(2, "001", VTA_OST, priority=10, area_level="stadtbezirk", area_code="0"),
    Rule(3, "007", ASG),
]


def test_the_area_rule_with_higher_priority_wins_over_the_default() -> None:
    decision = choose_office("001", [MITTE, ZENTRUM], RULES)
    assert decision is not None
    assert decision.office == VTA_OST
    assert "Mitte" in decision.explanation
    assert "Priorität 10" in decision.explanation


def test_the_default_applies_outside_the_area_rules() -> None:
    elsewhere = MatchedArea(level="stadtbezirk", code="5", name="Südwest")
    decision = choose_office("001", [elsewhere], RULES)
    assert decision is not None
    assert decision.office == VTA
    assert "ganzen Stadtgebiet" in decision.explanation


def test_the_explanation_names_the_area_with_the_level_article() -> None:
    gemeinde = Rule(
        4,
        "001",
        VTA,
        area_level="gemeinde",
        area_code="14713000",
        area_level_name="Gemeinde",
        area_level_article="die",
        area_name="Leipzig",
    )
    assert "„Straßenschaden / Schlagloch“ in der Gemeinde Leipzig →" in gemeinde.explain([])
    ortsteil = Rule(
        5, "001", VTA, area_level="ortsteil", area_code="00", area_level_name="Ortsteil"
    )
    assert " im Ortsteil Zentrum →" in ortsteil.explain([ZENTRUM])


def test_equal_priority_prefers_the_area_rule_then_the_lower_id() -> None:
    rules = [Rule(7, "001", VTA), Rule(9, "001", ASG, area_level="ortsteil", area_code="00")]
    assert choose_office("001", [ZENTRUM], rules).office == ASG  # type: ignore[union-attr]
    rules = [Rule(9, "001", ASG), Rule(7, "001", VTA)]
    assert choose_office("001", [ZENTRUM], rules).office == VTA  # type: ignore[union-attr]


def test_no_rule_no_office() -> None:
    assert choose_office("013", [MITTE], RULES) is None


def test_a_point_on_a_shared_boundary_goes_to_the_lowest_code_of_each_level() -> None:
    matches = [
        MatchedArea(level="ortsteil", code="01", name="Zentrum-Ost"),
        ZENTRUM,
        MITTE,
    ]
    assert one_area_per_level(matches, ["stadtbezirk", "ortsteil"]) == (MITTE, ZENTRUM)
    assert one_area_per_level(reversed(matches), ["stadtbezirk", "ortsteil"]) == (MITTE, ZENTRUM)
