"""Reloading and announcing jurisdictions, re-announcing after a broker lost messages, and the
explain API's use cases, against fakes (conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import pytest

from geo_router import handlers
from geo_router.ports import History, RoutingCache, StoredDecision, UnitOfWorkFactory
from mm_shared.events import (
    Event,
    JurisdictionBoundaryChanged,
    OfficeDirectoryChanged,
    OfficeRef,
    ReportRouted,
    RoutingFailureReason,
    utcnow,
)

#: A loop of each test's own: on the session's loop, a stack the integration tests started in
#: this process would run meanwhile, and its connections fail (no sockets in this tier).
pytestmark = pytest.mark.asyncio(loop_scope="function")


Announced = Callable[[], list[Event]]
LEIPZIG_ONLY = (51.38, 12.37)  # in Leipzig, and in the larger Umland around it
UMLAND_ONLY = (51.1, 12.1)


async def test_a_reload_announces_each_outline_with_its_directory_and_each_retirement(
    cache: RoutingCache, unit_of_work: UnitOfWorkFactory, announced: Announced
) -> None:
    await handlers.reload_and_announce(unit_of_work, cache)

    boundaries = {
        e.jurisdiction: e for e in announced() if isinstance(e, JurisdictionBoundaryChanged)
    }
    directories = {e.jurisdiction: e for e in announced() if isinstance(e, OfficeDirectoryChanged)}
    assert set(boundaries) == {"leipzig", "umland", "altstadt"}
    assert boundaries["leipzig"].name == "Leipzig"
    assert not boundaries["leipzig"].retired
    assert boundaries["leipzig"].boundary["type"] == "MultiPolygon"
    assert len(boundaries["leipzig"].boundary["coordinates"]) == 2  # its two districts
    retirement = boundaries["altstadt"]
    assert retirement.retired
    assert retirement.boundary == {"type": "MultiPolygon", "coordinates": []}
    # A retired jurisdiction's directory is not announced again.
    assert set(directories) == {"leipzig", "umland"}
    assert [(o.code, o.name, o.email) for o in directories["leipzig"].offices] == [
        ("ASG", "Amt für Stadtgrün und Gewässer", "asg@l.de"),
        ("VTA", "Verkehrs- und Tiefbauamt", "vta@l.de"),
    ]
    assert directories["leipzig"].sender_name == "Mängelmelder Leipzig"


async def test_a_change_event_reloads_and_announces_only_a_jurisdiction_that_changed(
    cache: RoutingCache,
    unit_of_work: UnitOfWorkFactory,
    announced: Announced,
    change_jurisdiction: Callable[..., None],
) -> None:
    await handlers.reload_and_announce(unit_of_work, cache, "leipzig", if_changed=True)
    assert announced() == []

    change_jurisdiction("leipzig", version="2")
    await handlers.reload_and_announce(unit_of_work, cache, "leipzig", if_changed=True)
    [boundary, directory] = announced()
    assert isinstance(boundary, JurisdictionBoundaryChanged)
    assert (boundary.jurisdiction, boundary.version) == ("leipzig", "2")
    assert isinstance(directory, OfficeDirectoryChanged)
    assert directory.jurisdiction == "leipzig"
    index = cache.get("leipzig")
    assert index is not None
    assert index.version == "2"


async def test_a_retired_jurisdiction_is_announced_retired_and_routes_no_more(
    cache: RoutingCache,
    unit_of_work: UnitOfWorkFactory,
    announced: Announced,
    retire_jurisdiction: Callable[[str], None],
) -> None:
    retire_jurisdiction("umland")
    await handlers.reload_and_announce(unit_of_work, cache, "umland", if_changed=True)
    [retirement] = announced()
    assert isinstance(retirement, JurisdictionBoundaryChanged)
    assert (retirement.jurisdiction, retirement.name, retirement.retired) == (
        "umland",
        "Umland",
        True,
    )
    route = handlers.explain_route(cache, "umland", *UMLAND_ONLY, "001")
    assert route.failure == RoutingFailureReason.UNKNOWN_JURISDICTION
    assert "retired" in route.detail


async def test_reannouncing_sends_the_decisions_since_then_and_every_outline_again(
    unit_of_work: UnitOfWorkFactory,
    history: History,
    announced: Announced,
    decisions: dict[UUID, StoredDecision],
    decided_at: dict[UUID, datetime],
) -> None:
    now = utcnow()
    for minutes in (90, 30, 20, 10, 5):  # the fake's history reads pages of two
        decision = ReportRouted(
            report_id=uuid4(),
            jurisdiction="leipzig",
            office=OfficeRef(code="VTA", name="VTA"),
            areas=(),
            rule=f"Regel {minutes}",
        )
        decisions[decision.report_id] = decision
        decided_at[decision.report_id] = now - timedelta(minutes=minutes)

    staged = await handlers.reannounce(unit_of_work, history, now - timedelta(hours=1))

    assert staged == 4
    again = [e for e in announced() if isinstance(e, ReportRouted)]
    # As stored, with their event ids, oldest first; not the one from before the hour.
    assert [e.rule for e in again] == ["Regel 30", "Regel 20", "Regel 10", "Regel 5"]
    assert all(decisions[e.report_id] == e for e in again)
    boundaries = [e for e in announced() if isinstance(e, JurisdictionBoundaryChanged)]
    assert {(b.jurisdiction, b.retired) for b in boundaries} == {
        ("leipzig", False),
        ("umland", False),
        ("altstadt", True),
    }
    directories = [e for e in announced() if isinstance(e, OfficeDirectoryChanged)]
    assert {d.jurisdiction for d in directories} == {"leipzig", "umland"}


async def test_the_explained_route_names_areas_office_and_rule(cache: RoutingCache) -> None:
    route = handlers.explain_route(cache, "leipzig", *LEIPZIG_ONLY, "001")
    assert route.decision is not None
    assert route.decision.office.code == "ASG"
    assert route.decision.rule.id == 2
    assert [a.code for a in route.areas] == ["1", "10"]
    assert route.detail == route.decision.explanation

    nothing = handlers.explain_route(cache, "leipzig", *LEIPZIG_ONLY, "002")
    assert nothing.failure == RoutingFailureReason.NO_RESPONSIBLE_OFFICE
    assert [a.code for a in nothing.areas] == ["1", "10"]


async def test_the_covering_jurisdiction_is_the_higher_precedence_then_the_smaller(
    cache: RoutingCache, change_jurisdiction: Callable[..., None]
) -> None:
    assert handlers.covering_jurisdiction(cache, *LEIPZIG_ONLY) == "leipzig"  # the smaller
    assert handlers.covering_jurisdiction(cache, *UMLAND_ONLY) == "umland"
    assert handlers.covering_jurisdiction(cache, 48.14, 11.58) is None

    change_jurisdiction("umland", precedence=1)
    await cache.reload("umland")
    assert handlers.covering_jurisdiction(cache, *LEIPZIG_ONLY) == "umland"
