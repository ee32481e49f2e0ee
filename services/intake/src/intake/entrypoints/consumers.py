"""Intake's Kafka subscriber: routing results from geo-router, in batches (two statements
each). One subscriber per service and group: every extra consumer in a group costs a rebalance.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from intake import handlers
from intake.adapters.boundaries import Boundaries, OfficeDirectory
from intake.adapters.db import SqlUnitOfWorks
from intake.settings import IntakeSettings
from mm_shared.events import (
    JurisdictionBoundaryChanged,
    OfficeDirectoryChanged,
    ReportRouted,
    ReportRoutingFailed,
    Topic,
)
from mm_shared.kafka import batch_subscriber, broadcast_subscriber
from mm_shared.outbox import Outbox

SERVICE = "intake"
INPUTS: dict[str, type[ReportRouted | ReportRoutingFailed]] = {
    Topic.REPORT_ROUTED.value: ReportRouted,
    Topic.REPORT_ROUTING_FAILED.value: ReportRoutingFailed,
}


def register_consumers(
    broker: KafkaBroker,
    outbox: Outbox,
    boundaries: Boundaries,
    directory: OfficeDirectory,
    settings: IntakeSettings,
) -> None:
    uows = SqlUnitOfWorks(outbox)

    @batch_subscriber(
        broker,
        SERVICE,
        INPUTS,
        group_id=settings.consumer_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        idle_fetch_max_wait_ms=settings.kafka_idle_fetch_max_wait_ms,
        # Each write reads and guards the reports it changes (optimistically), so batches of
        # other reports need not wait for each other: without this, most batches under load
        # waited for the previous write (docs/architecture.md, "Consumers are pipelined").
        concurrent_writes=4,
    )
    async def on_routing_results(events: list[ReportRouted | ReportRoutingFailed]) -> None:
        """ReportRouted makes a report assigned; ReportRoutingFailed rejects it."""
        await handlers.record_routing_results(uows, events)

    @broadcast_subscriber(
        broker,
        Topic.JURISDICTION_BOUNDARY,
        settings.kafka_rare_events_fetch_max_wait_ms,
        "The city's outline, for refusing reports from outside",
    )
    async def on_boundary(event: JurisdictionBoundaryChanged) -> None:
        await boundaries.update(event)

    @broadcast_subscriber(
        broker,
        Topic.OFFICE_DIRECTORY,
        settings.kafka_rare_events_fetch_max_wait_ms,
        "The offices staff may hand a ticket to",
    )
    async def on_office_directory(event: OfficeDirectoryChanged) -> None:
        directory.update(event)
