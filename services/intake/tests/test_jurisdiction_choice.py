"""Which jurisdiction a report belongs to, from the outlines geo-router announces: the one
covering the place, by precedence, then the smaller area; a named one must cover it; a retired
one is forgotten; a category a city switched off is refused there. In memory, no broker."""

from datetime import date

import pytest

from intake.adapters.boundaries import Boundaries, OfficeDirectory, PublicHolidays
from intake.handlers import (
    OutsideJurisdiction,
    ServiceDisabled,
    UnknownJurisdiction,
    choose_jurisdiction,
    offered_categories,
)
from mm_shared.events import JurisdictionBoundaryChanged, OfficeContact, OfficeDirectoryChanged


def square(west: float, south: float, east: float, north: float) -> dict[str, object]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "MultiPolygon", "coordinates": [[ring]]}


def outline(code: str, box: dict[str, object], **more: object) -> JurisdictionBoundaryChanged:
    return JurisdictionBoundaryChanged(
        jurisdiction=code, name=f"Stadt {code.title()}", version="1", boundary=box, **more
    )


@pytest.fixture
def served() -> Boundaries:
    boundaries = Boundaries(None)  # type: ignore[arg-type] # remember() needs no database
    # A country around two cities; the city in the west outranks it, the one in the east only
    # by being smaller.
    boundaries.remember(outline("country", square(0, 0, 10, 10)))
    boundaries.remember(
        outline("west", square(1, 1, 3, 3), precedence=10, disabled_service_codes=("011",))
    )
    boundaries.remember(outline("east", square(6, 6, 8, 8)))
    return boundaries


def choose(boundaries: Boundaries, lat: float, long: float, named: str | None = None) -> str:
    return choose_jurisdiction(boundaries, named, "default", "001", lat, long)


def test_the_higher_precedence_then_the_smaller_area_takes_the_report(served: Boundaries) -> None:
    assert choose(served, 2, 2) == "west"
    assert choose(served, 7, 7) == "east"
    assert choose(served, 5, 5) == "country"


def test_a_higher_precedence_beats_a_smaller_area() -> None:
    boundaries = Boundaries(None)  # type: ignore[arg-type]
    boundaries.remember(outline("big", square(0, 0, 10, 10), precedence=1))
    boundaries.remember(outline("small", square(1, 1, 2, 2)))
    assert choose(boundaries, 1.5, 1.5) == "big"


def test_a_named_jurisdiction_takes_the_report_if_it_covers_the_place(served: Boundaries) -> None:
    assert choose(served, 2, 2, named="country") == "country"
    with pytest.raises(OutsideJurisdiction, match="outside the area of Stadt East"):
        choose(served, 2, 2, named="east")
    with pytest.raises(UnknownJurisdiction, match="country, east, west"):
        choose(served, 2, 2, named="atlantis")


def test_outside_every_one_the_refusal_names_them_all(served: Boundaries) -> None:
    with pytest.raises(OutsideJurisdiction) as refused:
        choose(served, 20, 20)
    assert (
        "outside the areas this service covers: Stadt Country, Stadt East, Stadt West"
        in refused.value.problems[0]
    )


def test_swapped_coordinates_get_a_hint() -> None:
    boundaries = Boundaries(None)  # type: ignore[arg-type]
    boundaries.remember(outline("leipzig", square(12.2, 51.2, 12.6, 51.5)))
    with pytest.raises(OutsideJurisdiction, match=r"did you mean lat=51\.34, long=12\.37"):
        choose(boundaries, 12.37, 51.34)


def test_a_switched_off_category_is_refused_there_only(served: Boundaries) -> None:
    with pytest.raises(ServiceDisabled, match="'011' is not offered in Stadt West"):
        choose_jurisdiction(served, None, "default", "011", 2, 2)
    assert choose_jurisdiction(served, None, "default", "011", 7, 7) == "east"
    assert "011" not in {c.code for c in offered_categories(served, "west")}
    assert "011" in {c.code for c in offered_categories(served, "east")}
    assert "011" in {c.code for c in offered_categories(served, None)}


def test_a_retired_jurisdiction_is_forgotten(served: Boundaries) -> None:
    served.remember(outline("west", {"type": "MultiPolygon", "coordinates": []}, retired=True))
    assert [j.code for j in served.all()] == ["country", "east"]
    assert choose(served, 2, 2) == "country"
    with pytest.raises(UnknownJurisdiction):
        choose(served, 2, 2, named="west")


def test_without_any_outline_the_named_or_the_default_one_is_taken() -> None:
    nothing = Boundaries(None)  # type: ignore[arg-type]
    assert choose(nothing, 2, 2) == "default"
    assert choose(nothing, 2, 2, named="koeln") == "koeln"


def test_the_bounding_box_is_the_published_outline_s(served: Boundaries) -> None:
    west = served.get("west")
    assert west is not None
    assert west.bbox == (1.0, 1.0, 3.0, 3.0)


def test_each_jurisdiction_s_reminders_skip_its_own_public_holidays() -> None:
    directory = OfficeDirectory()
    office = OfficeContact(code="OA", name="Ordnungsamt", email="oa@koeln.example")
    directory.update(
        OfficeDirectoryChanged(
            jurisdiction="koeln",
            offices=(office,),
            holidays_country="DE",
            holidays_subdivision="NW",
        )
    )
    holidays_of = PublicHolidays(directory, "DE", "SN")
    all_saints, reformation = date(2030, 11, 1), date(2030, 10, 31)
    # Köln (North Rhine-Westphalia) keeps All Saints' Day, Leipzig (Saxony, the configured
    # default) Reformation Day.
    assert all_saints in holidays_of("koeln")
    assert reformation not in holidays_of("koeln")
    assert reformation in holidays_of("leipzig")
    assert all_saints not in holidays_of("leipzig")
