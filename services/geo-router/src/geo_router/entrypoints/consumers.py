"""Geo-router's Kafka subscribers.

- Reports and reassignments: one consumer in the ``geo-router`` group, in batches, pipelined:
  a batch is routed in memory while the previous one is being stored (one statement each),
  which is what keeps its throughput close to a bare pass-through (bench/results/geo_router.json).
- Routing configuration changes: every instance must see them, so that subscriber has no group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker

from geo_router import handlers
from geo_router.ports import PrepareDecisions, RoutingCache, UnitOfWorkFactory
from geo_router.settings import GeoRouterSettings
from mm_shared.events import (
    ReportReassigned,
    ReportSubmitted,
    RoutingConfigChanged,
    Topic,
)
from mm_shared.kafka import PermanentFailure, broadcast_subscriber, pipelined_batch_subscriber

SERVICE = "geo-router"
INPUTS: dict[str, type[ReportSubmitted | ReportReassigned]] = {
    Topic.REPORT_SUBMITTED.value: ReportSubmitted,
    Topic.REPORT_REASSIGNED.value: ReportReassigned,
}


def register_consumers(
    broker: KafkaBroker,
    settings: GeoRouterSettings,
    *,
    unit_of_work: UnitOfWorkFactory,
    cache: RoutingCache,
    prepare_decisions: PrepareDecisions,
) -> None:
    @pipelined_batch_subscriber(
        broker,
        SERVICE,
        INPUTS,
        group_id=settings.consumer_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        idle_fetch_max_wait_ms=settings.kafka_idle_fetch_max_wait_ms,
        max_records=settings.batch_max_records,
    )
    async def on_reports(
        events: list[ReportSubmitted | ReportReassigned],
    ) -> Callable[[], Awaitable[None]]:
        """ReportSubmitted: route it. ReportReassigned: a staff override."""
        await cache.ready.wait()
        submitted = [e for e in events if isinstance(e, ReportSubmitted)]
        routed = handlers.route_batch(cache, prepare_decisions, submitted) if submitted else None
        reassigned = [e for e in events if isinstance(e, ReportReassigned)]

        async def store() -> None:
            if routed is not None:
                await handlers.store_routes(unit_of_work, routed)
            refused: list[PermanentFailure] = []
            for event in reassigned:
                try:
                    await handlers.reassign(unit_of_work, event)
                except PermanentFailure as exc:
                    refused.append(exc)
            if refused:
                raise PermanentFailure(
                    "; ".join(map(str, refused)), [e for exc in refused for e in exc.event_ids]
                )

        return store

    # From the start, so that no change slips between start-up and the first fetch; changes
    # the index in memory already holds are skipped, which keeps the replay cheap.
    @broadcast_subscriber(
        broker,
        Topic.ROUTING_CONFIG_CHANGED,
        settings.kafka_rare_events_fetch_max_wait_ms,
        "Areas or rules changed: every instance rebuilds its routing index",
    )
    async def on_routing_config_changed(event: RoutingConfigChanged) -> None:
        """Areas or rules changed: rebuild this instance's routing index from PostGIS."""
        await cache.ready.wait()
        await handlers.reload_and_announce(unit_of_work, cache, event.jurisdiction, if_changed=True)
