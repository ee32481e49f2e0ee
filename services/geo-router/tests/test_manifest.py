"""Reading a manifest: the new optional keys, codes as text, and problems counted from 1 with
what they are about. No database."""

from pathlib import Path

import pytest

from geo_router.adapters.manifest import read_manifest, rule_rows, warnings
from geo_router.adapters.refusal import InvalidImport

DATA = Path(__file__).resolve().parents[3] / "data"

HEAD = "code: x\nname: X\n"
OFFICE = "offices:\n  - {code: A, name: A, email: a@x.example}\n"


def manifest(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jurisdiction.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InvalidImport) as refused:
        read_manifest(manifest(tmp_path, text))
    return refused.value.problems


def test_koelns_manifest_says_how_koeln_presents_itself() -> None:
    spec = read_manifest(DATA / "koeln" / "jurisdiction.yaml")
    assert spec.mail_sender_name == "Mängelmelder Köln"
    assert spec.holidays is not None
    assert (spec.holidays.country, spec.holidays.subdivision) == ("DE", "NW")
    assert spec.precedence == 10
    assert spec.disabled_service_codes == ["011"]
    # Leipzig's says none of it: the defaults.
    leipzig = read_manifest(DATA / "leipzig" / "jurisdiction.yaml")
    assert (leipzig.mail_sender_name, leipzig.holidays, leipzig.precedence) == (None, None, 0)
    assert leipzig.disabled_service_codes == []


def test_schema_problems_count_from_1_and_name_the_item(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        HEAD
        + "offices:\n  - {code: A, name: A, email: a@x.example}\n  - {code: B, name: B}\n"
        + "rules:\n  - {service_codes: ['001'], office: A}\n  - {office: B, prio: 3}\n",
    )
    assert found == [
        "jurisdiction.yaml: office 2 (code B): email: Field required",
        "jurisdiction.yaml: rule 2 (office B): service_codes: Field required",
        "jurisdiction.yaml: rule 2 (office B): prio: Extra inputs are not permitted",
    ]


def test_integer_codes_are_read_as_text(tmp_path: Path) -> None:
    spec = read_manifest(
        manifest(
            tmp_path,
            "code: 5\nname: X\nlevels: [{code: 1, name: L, rank: 1, file: f.geojson, "
            "code_property: c, name_property: n}]\n"
            "offices: [{code: 7, name: A, email: a@x.example}]\n"
            "rules: [{service_codes: ['001'], office: 7, area_level: 1, area_codes: [3, 101]}]\n",
        )
    )
    assert spec.code == "5"
    assert spec.rules[0].office == "7"
    assert spec.rules[0].area_codes == ["3", "101"]
    rows = rule_rows(spec, {("1", "3"), ("1", "101")})
    assert {r["area_code"] for r in rows} == {"3", "101"}


def test_an_unquoted_category_code_gets_a_hint(tmp_path: Path) -> None:
    spec = read_manifest(
        manifest(tmp_path, HEAD + OFFICE + "rules: [{service_codes: [001], office: A}]\n")
    )
    with pytest.raises(InvalidImport) as refused:
        rule_rows(spec, set())
    assert refused.value.problems == [
        "rule 1 (office A): unknown category '1' (write it quoted, '001': unquoted, YAML reads "
        "001 as a number)"
    ]


def test_area_codes_without_area_level_say_which_levels_there_are(tmp_path: Path) -> None:
    spec = read_manifest(
        manifest(
            tmp_path,
            HEAD + OFFICE + "rules:\n  - {service_codes: ['001'], office: A}\n"
            "  - {service_codes: ['002'], office: A, area_codes: ['3']}\n"
            "  - {service_codes: ['003'], office: A, area_level: x, area_codes: ['3']}\n",
        )
    )
    with pytest.raises(InvalidImport) as refused:
        rule_rows(spec, {("stadtbezirk", "3")})
    assert refused.value.problems == [
        "rule 2 (office A): area_codes without area_level; name the level the codes belong to "
        "(one of: stadtbezirk)",
        "rule 3 (office A): unknown area level 'x' (the levels are: stadtbezirk)",
    ]


def test_holidays_must_be_known_to_the_holidays_package(tmp_path: Path) -> None:
    rules = "rules: []\n"
    assert problems(
        tmp_path, HEAD + "holidays: {country: DE, subdivision: XX}\n" + OFFICE + rules
    ) == [
        "jurisdiction.yaml: holidays: unknown subdivision 'XX' of DE (the holidays package knows "
        "BB, BE, BW, BY, HB, HE, HH, MV, NI, NW, RP, SH, SL, SN, ST, TH, Augsburg)"
    ]
    assert problems(tmp_path, HEAD + "holidays: {country: QQ}\n" + OFFICE + rules)[0].startswith(
        "jurisdiction.yaml: holidays: unknown country 'QQ'"
    )
    spec = read_manifest(
        manifest(tmp_path, HEAD + "holidays: {country: DE, subdivision: SN}\n" + OFFICE + rules)
    )
    assert spec.holidays is not None
    assert spec.holidays.subdivision == "SN"


def test_duplicate_codes_and_unknown_disabled_categories_are_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        HEAD
        + "disabled_service_codes: ['011', '999']\n"
        + "offices:\n  - {code: A, name: A, email: a@x.example}\n"
        + "  - {code: A, name: A2, email: a2@x.example}\n"
        + "rules: []\n",
    )
    assert found == [
        "jurisdiction.yaml: office 2 (A): the same code as office 1",
        "jurisdiction.yaml: disabled_service_codes: unknown category '999'",
    ]


def test_warnings_name_categories_without_an_office_and_offices_without_a_rule(
    tmp_path: Path,
) -> None:
    spec = read_manifest(
        manifest(
            tmp_path,
            HEAD
            + "disabled_service_codes: ['011', '012']\n"
            + "offices:\n  - {code: A, name: A, email: a@x.example}\n"
            + "  - {code: IDLE, name: Idle, email: idle@x.example}\n"
            + "rules:\n  - {service_codes: ['001', '002', '003', '004', '005', '006', '007', "
            "'008', '009', '010', '012'], office: A}\n",
        )
    )
    found = warnings(spec)
    assert len(found) == 3, found
    assert found[0].startswith("category 013 (")
    assert "no rule names an office" in found[0]
    assert found[1] == "office 2 (IDLE): no rule sends reports to it"
    assert found[2].startswith("rule 1 (office A): category 012 is switched off")
    # Köln's manifest leaves out only graffiti, which it switched off: nothing to warn about.
    assert warnings(read_manifest(DATA / "koeln" / "jurisdiction.yaml")) == []
