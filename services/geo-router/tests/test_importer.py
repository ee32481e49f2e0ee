"""Reading areas and rules from files: repairs, CRS transforms, validation. No database."""

import json
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import mapping, shape

from geo_router.adapters.importer import read_areas
from geo_router.adapters.manifest import (
    JurisdictionSpec,
    OfficeSpec,
    RuleSpec,
    read_manifest,
    rule_rows,
)
from geo_router.adapters.refusal import InvalidImport

DATA = Path(__file__).resolve().parents[3] / "data"


def test_koeln_marienburg_is_repaired_and_the_repair_is_reported() -> None:
    features, repaired = read_areas(DATA / "koeln" / "stadtteile.geojson", "STT_NR", "STT_NAME")
    assert len(features) == 86
    assert len(repaired) == 1
    assert repaired[0].startswith("202 Marienburg: Ring Self-intersection")
    marienburg = next(g for code, _, g in features if code == "202")
    assert marienburg.is_valid
    assert marienburg.geom_type == "MultiPolygon"


def test_areas_in_a_projected_crs_are_transformed_to_wgs84(tmp_path: Path) -> None:
    source = json.loads((DATA / "leipzig" / "stadtbezirke.geojson").read_text())
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:25833", always_xy=True)
    for feature in source["features"]:
        utm = shapely.transform(
            shape(feature["geometry"]),
            lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])),
        )
        feature["geometry"] = mapping(utm)
    source["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25833"}}
    path = tmp_path / "utm.geojson"
    path.write_text(json.dumps(source))

    features, _ = read_areas(path, "SBZ", "Name")
    mitte = next(g for code, _, g in features if code == "0")
    original = next(
        shape(f["geometry"])
        for f in json.loads((DATA / "leipzig" / "stadtbezirke.geojson").read_text())["features"]
        if f["properties"]["SBZ"] == "0"
    )
    assert mitte.symmetric_difference(original).area < 1e-9


def test_projected_coordinates_without_a_crs_are_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "nocrs.geojson"
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1000, 0], [1000, 1000], [0, 0]]]}
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {"c": "1", "n": "A"}, "geometry": square}
                ],
            }
        )
    )
    with pytest.raises(InvalidImport) as refused:
        read_areas(path, "c", "n")
    assert "--source-crs" in refused.value.problems[0]


def spec(*rules: RuleSpec) -> JurisdictionSpec:
    return JurisdictionSpec(
        code="x",
        name="X",
        offices=[OfficeSpec(code="A", name="A", email="a@x.example")],
        rules=list(rules),
    )


def test_rules_expand_to_one_row_per_category_and_area() -> None:
    rows = rule_rows(
        spec(
            RuleSpec(
                service_codes=["001", "002"], office="A", area_level="l", area_codes=["1", "2"]
            )
        ),
        {("l", "1"), ("l", "2")},
    )
    assert len(rows) == 4


def test_every_rule_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidImport) as refused:
        rule_rows(
            spec(
                RuleSpec(service_codes=["999"], office="NOPE"),
                RuleSpec(service_codes=["001"], office="A", area_level="l", area_codes=["7"]),
                RuleSpec(service_codes=["005"], office="A"),
                RuleSpec(service_codes=["005"], office="A"),
            ),
            {("l", "1")},
        )
    assert refused.value.problems == [
        "rule 1 (office NOPE): unknown office 'NOPE'",
        "rule 1 (office NOPE): unknown category '999'",
        "rule 2 (office A): unknown area of level l: '7'",
        "rule 3 (office A), rule 4 (office A): equal priority 0 for category 005 in the whole "
        "jurisdiction; give one of them a higher priority",
    ]


@pytest.mark.parametrize("suffix", [".gpkg", ".shp"])
def test_geopackage_and_shapefile_in_a_projected_crs_are_read(tmp_path: Path, suffix: str) -> None:
    source = json.loads((DATA / "leipzig" / "stadtbezirke.geojson").read_text())
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:25833", always_xy=True)
    originals = {f["properties"]["SBZ"]: shape(f["geometry"]) for f in source["features"]}
    utm = [
        shapely.transform(
            shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g,
            lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])),
        )
        for g in originals.values()
    ]
    path = tmp_path / f"stadtbezirke{suffix}"
    pyogrio.raw.write(
        path,
        geometry=np.array([g.wkb for g in utm], dtype=object),
        field_data=[np.array(list(originals)), np.array([f"Bezirk {c}" for c in originals])],
        fields=["SBZ", "Name"],
        geometry_type="MultiPolygon",
        crs="EPSG:25833",
    )

    features, _ = read_areas(path, "SBZ", "Name")

    assert {code for code, _, _ in features} == set(originals)
    for code, name, geom in features:
        assert name == f"Bezirk {code}"
        assert geom.symmetric_difference(originals[code]).area < 1e-9


def test_a_file_gdal_cannot_read_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "broken.gpkg"
    path.write_bytes(b"not a geopackage")
    with pytest.raises(InvalidImport, match="not a readable GIS file"):
        read_areas(path, "SBZ", "Name")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "FileNotFoundError"),
        ("[1, 2", "JSONDecodeError"),
        ('{"type": "FeatureCollection", "features": [{"geometry": {"type": "Polygon"}}]}', "Key"),
    ],
)
def test_a_geojson_that_cannot_be_read_is_refused_clearly(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "areas.geojson"
    if content is not None:
        path.write_text(content)
    with pytest.raises(
        InvalidImport, match=f"not a readable GeoJSON FeatureCollection .*{problem}"
    ):
        read_areas(path, "c", "n")


def test_a_feature_without_area_is_refused(tmp_path: Path) -> None:
    point = {"type": "Point", "coordinates": [12.37, 51.34]}
    feature = {"type": "Feature", "properties": {"c": "1", "n": "Pin"}, "geometry": point}
    path = tmp_path / "areas.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    with pytest.raises(InvalidImport, match=r"feature 1 \(1\): a Point with no area"):
        read_areas(path, "c", "n")


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "cannot be read"), ("code: [", "not valid YAML")]
)
def test_a_manifest_that_cannot_be_read_is_refused_clearly(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "jurisdiction.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidImport, match=problem):
        read_manifest(path)


def test_a_wrong_property_name_is_reported_once_with_the_properties_there_are() -> None:
    with pytest.raises(InvalidImport) as refused:
        read_areas(DATA / "leipzig" / "ortsteile.geojson", "NOPE", "Name")
    assert refused.value.problems == [
        "ortsteile.geojson: 63 of 63 features have no property 'NOPE' (the first: feature 1, "
        "which has Name, OT)"
    ]


def test_integer_codes_in_a_geojson_are_read_as_text(tmp_path: Path) -> None:
    source = json.loads((DATA / "leipzig" / "stadtbezirke.geojson").read_text())
    for feature in source["features"]:
        feature["properties"]["SBZ"] = int(feature["properties"]["SBZ"]) + 100
    path = tmp_path / "numbers.geojson"
    path.write_text(json.dumps(source))
    features, _ = read_areas(path, "SBZ", "Name")
    assert sorted(code for code, _, _ in features)[:2] == ["100", "101"]
