"""Routing reports in batches, against fakes (conftest.py): each report gets one decision,
stored and announced together; a failure says why; a redelivery changes nothing; a
resubmission announces the stored decision again; staff override the rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID, uuid4

import pytest

from geo_router import handlers
from geo_router.ports import (
    Announcement,
    PreparedDecisions,
    RoutingCache,
    StoredDecision,
    UnitOfWorkFactory,
)
from mm_shared.events import (
    Event,
    MatchedArea,
    OfficeRef,
    ReportReassigned,
    ReportRouted,
    ReportRoutingFailed,
    ReportSubmitted,
    RoutingFailureReason,
    utcnow,
)
from mm_shared.kafka import Message, PermanentFailure

#: A loop of each test's own: on the session's loop, a stack the integration tests started in
#: this process would run meanwhile, and its connections fail (no sockets in this tier).
pytestmark = pytest.mark.asyncio(loop_scope="function")


Prepare = Callable[[Sequence[Announcement]], PreparedDecisions]
Announced = Callable[[], list[Event]]

ZENTRUM = (51.33, 12.37)  # Mitte / Zentrum: the city-wide rule (VTA)
SCHOENEFELD = (51.38, 12.37)  # Nordost / Schönefeld: the district's rule (ASG) wins
OUTSIDE = (48.14, 11.58)  # Munich


def report(
    place: tuple[float, float],
    service_code: str = "001",
    jurisdiction: str = "leipzig",
    *,
    report_id: UUID | None = None,
    resubmission: bool = False,
) -> ReportSubmitted:
    return ReportSubmitted(
        report_id=report_id or uuid4(),
        jurisdiction=jurisdiction,
        service_code=service_code,
        lat=place[0],
        long=place[1],
        submitted_at=utcnow(),
        resubmission=resubmission,
    )


async def route(
    cache: RoutingCache,
    prepare: Prepare,
    unit_of_work: UnitOfWorkFactory,
    *reports: ReportSubmitted,
) -> None:
    await handlers.store_routes(unit_of_work, handlers.route_batch(cache, prepare, reports))


async def test_each_report_of_a_batch_is_decided_stored_and_announced_at_once(
    cache: RoutingCache,
    prepare: Prepare,
    unit_of_work: UnitOfWorkFactory,
    announced: Announced,
    decisions: dict[UUID, StoredDecision],
    units_opened: list[bool],
) -> None:
    central, northern = report(ZENTRUM), report(SCHOENEFELD, "001")
    await route(cache, prepare, unit_of_work, central, northern)

    routed = {e.report_id: e for e in announced() if isinstance(e, ReportRouted)}
    assert set(routed) == {central.report_id, northern.report_id}
    assert routed[central.report_id].office == OfficeRef(
        code="VTA", name="Verkehrs- und Tiefbauamt"
    )
    assert [a.name for a in routed[central.report_id].areas] == ["Mitte", "Zentrum"]
    assert routed[central.report_id].rule.startswith("Regel 1: „Straßenschaden / Schlagloch“")
    assert routed[northern.report_id].office.code == "ASG"
    assert routed[northern.report_id].rule.startswith("Regel 2: ")
    assert "im Stadtbezirk Nordost" in routed[northern.report_id].rule
    # What and where travel along, for area alerts.
    assert (routed[central.report_id].lat, routed[central.report_id].long) == ZENTRUM
    assert routed[central.report_id].service_code == "001"
    # The stored decision is the announcement, event id included.
    assert decisions == routed
    # One unit of work, without a transaction around its statement.
    assert units_opened == [True]


@pytest.mark.parametrize(
    ("place", "service_code", "jurisdiction", "reason", "detail"),
    [
        (OUTSIDE, "001", "leipzig", "outside_jurisdiction", "lies outside every area of Leipzig"),
        (ZENTRUM, "002", "leipzig", "no_responsible_office", "service_code '002'"),
        (ZENTRUM, "001", "atlantis", "unknown_jurisdiction", "unknown jurisdiction 'atlantis'"),
        (ZENTRUM, "001", "altstadt", "unknown_jurisdiction", "'altstadt' was retired"),
    ],
)
async def test_a_report_that_cannot_be_routed_fails_with_the_reason(
    cache: RoutingCache,
    prepare: Prepare,
    unit_of_work: UnitOfWorkFactory,
    announced: Announced,
    decisions: dict[UUID, StoredDecision],
    place: tuple[float, float],
    service_code: str,
    jurisdiction: str,
    reason: str,
    detail: str,
) -> None:
    unroutable = report(place, service_code, jurisdiction)
    await route(cache, prepare, unit_of_work, unroutable, report(ZENTRUM))

    [failed] = [e for e in announced() if isinstance(e, ReportRoutingFailed)]
    assert failed.report_id == unroutable.report_id
    assert failed.reason == RoutingFailureReason(reason)
    assert detail in failed.detail
    assert failed.jurisdiction == jurisdiction
    assert decisions[unroutable.report_id] == failed
    # The other report of the batch is routed all the same.
    assert len([e for e in announced() if isinstance(e, ReportRouted)]) == 1


async def test_a_redelivered_report_keeps_its_first_decision_and_is_not_announced_again(
    cache: RoutingCache,
    prepare: Prepare,
    unit_of_work: UnitOfWorkFactory,
    announced: Announced,
    decisions: dict[UUID, StoredDecision],
) -> None:
    first = report(ZENTRUM)
    await route(cache, prepare, unit_of_work, first, first)  # twice in one batch, too
    [decision] = announced()
    # Redelivered with another place: the decision taken stands.
    await route(cache, prepare, unit_of_work, report(SCHOENEFELD, report_id=first.report_id))
    assert announced() == [decision]
    assert decisions == {first.report_id: decision}


async def test_a_resubmission_announces_the_stored_decision_again_with_its_event_id(
    cache: RoutingCache,
    prepare: Prepare,
    unit_of_work: UnitOfWorkFactory,
    announced: Announced,
) -> None:
    first = report(ZENTRUM)
    await route(cache, prepare, unit_of_work, first)
    again = report(ZENTRUM, report_id=first.report_id, resubmission=True)
    await route(cache, prepare, unit_of_work, again)
    original, repeated = announced()
    assert repeated == original


async def test_a_reassignment_overrides_the_rules_keeping_the_areas(
    cache: RoutingCache,
    prepare: Prepare,
    unit_of_work: UnitOfWorkFactory,
    announced: Announced,
    decisions: dict[UUID, StoredDecision],
) -> None:
    routed = report(ZENTRUM)
    await route(cache, prepare, unit_of_work, routed)
    reassigned = ReportReassigned(
        report_id=routed.report_id,
        correlation_id=routed.correlation_id,
        jurisdiction="leipzig",
        office_code="ASG",
        reassigned_by="sachbearbeiterin",
        reason="Baum auf der Fahrbahn",
    )
    await handlers.reassign(unit_of_work, reassigned)
    await handlers.reassign(unit_of_work, reassigned)  # redelivered: no second announcement

    rules_decision, override = announced()
    assert isinstance(rules_decision, ReportRouted)
    assert isinstance(override, ReportRouted)
    assert override.override is True
    assert override.office == OfficeRef(code="ASG", name="Amt für Stadtgrün und Gewässer")
    assert override.areas == rules_decision.areas
    assert override.rule == "Manuelle Zuweisung durch sachbearbeiterin: Baum auf der Fahrbahn"
    assert override.correlation_id == routed.correlation_id
    # The override is the report's decision now: a resubmission announces it, not the rules'.
    assert decisions[routed.report_id] == override
    await route(
        cache, prepare, unit_of_work, report(ZENTRUM, report_id=routed.report_id, resubmission=True)
    )
    assert announced()[-1] == override


async def test_a_reassignment_of_a_report_never_routed_has_no_areas(
    unit_of_work: UnitOfWorkFactory, announced: Announced
) -> None:
    event = ReportReassigned(
        report_id=uuid4(), jurisdiction="leipzig", office_code="VTA", reassigned_by="admin"
    )
    await handlers.reassign(unit_of_work, event)
    [override] = announced()
    assert isinstance(override, ReportRouted)
    assert override.areas == ()
    assert override.rule == "Manuelle Zuweisung durch admin"


async def test_a_reassignment_to_an_unknown_office_is_refused_for_good_and_changes_nothing(
    cache: RoutingCache,
    prepare: Prepare,
    unit_of_work: UnitOfWorkFactory,
    outbox: list[Message],
    decisions: dict[UUID, StoredDecision],
) -> None:
    routed = report(ZENTRUM)
    await route(cache, prepare, unit_of_work, routed)
    before = (list(outbox), dict(decisions))
    # Leipzig's office code in another jurisdiction, which has no such office.
    event = ReportReassigned(
        report_id=routed.report_id, jurisdiction="umland", office_code="ASG", reassigned_by="x"
    )
    with pytest.raises(PermanentFailure) as refused:
        await handlers.reassign(unit_of_work, event)
    assert refused.value.event_ids == {str(event.event_id)}
    assert "unknown office 'ASG'" in str(refused.value)
    assert (outbox, decisions) == before
    # Nothing of it was committed, not even its delivery: fixed data would let it through.
    with pytest.raises(PermanentFailure):
        await handlers.reassign(unit_of_work, event)


async def test_routing_a_batch_does_no_io_and_counts_each_report_once(
    cache: RoutingCache, prepare: Prepare, units_opened: list[bool]
) -> None:
    same = report(ZENTRUM)
    batch = handlers.route_batch(
        cache, prepare, [same, same, report(OUTSIDE), report(SCHOENEFELD, resubmission=True)]
    )
    assert units_opened == []
    assert len(batch.routes) == 3
    assert isinstance(batch.rows, list)
    assert len(batch.rows) == 3
    assert len(batch.resubmitted) == 1
    areas = batch.routes[same.report_id][1].areas
    assert areas == (
        MatchedArea(level="stadtbezirk", code="0", name="Mitte"),
        MatchedArea(level="ortsteil", code="00", name="Zentrum"),
    )
