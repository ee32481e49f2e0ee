"""Geo-router's composition root."""

from __future__ import annotations

import time

from fastapi import FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import Gauge

from geo_router import handlers
from geo_router.adapters import db
from geo_router.adapters.index import RoutingCache
from geo_router.entrypoints import http
from geo_router.entrypoints.consumers import register_consumers
from geo_router.ports import UnitOfWorkFactory
from geo_router.settings import GeoRouterSettings
from mm_shared.api_docs import json_refusal
from mm_shared.db import create_engine
from mm_shared.events import (
    JurisdictionBoundaryChanged,
    OfficeDirectoryChanged,
    ReportRouted,
    ReportRoutingFailed,
)
from mm_shared.kafka import create_broker, document_publications, track_consumer_lag
from mm_shared.observability import configure_logging
from mm_shared.outbox import Outbox
from mm_shared.service import create_service_app

SERVICE = "geo-router"
CACHE_AGE = Gauge("mm_routing_cache_age_seconds", "Age of the oldest loaded routing index")


def create_messaging(
    settings: GeoRouterSettings,
) -> tuple[KafkaBroker, Outbox, UnitOfWorkFactory, RoutingCache]:
    engine = create_engine(settings.database_url)
    broker = create_broker(settings.kafka_bootstrap_servers, SERVICE)
    outbox = Outbox.for_kafka(
        engine,
        db.metadata,
        settings.kafka_bootstrap_servers,
        SERVICE,
        idle_poll_interval_s=settings.idle_poll_interval_s,
    )
    unit_of_work = db.unit_of_work_factory(outbox)
    cache = RoutingCache(engine)
    register_consumers(
        broker,
        settings,
        unit_of_work=unit_of_work,
        cache=cache,
        prepare_decisions=db.DecisionRows.of,
    )
    document_publications(
        broker,
        ReportRouted,
        ReportRoutingFailed,
        JurisdictionBoundaryChanged,
        OfficeDirectoryChanged,
    )
    return broker, outbox, unit_of_work, cache


def create_app(settings: GeoRouterSettings | None = None) -> FastAPI:
    settings = settings or GeoRouterSettings()
    configure_logging(settings.log_level)
    broker, outbox, unit_of_work, cache = create_messaging(settings)
    CACHE_AGE.set_function(lambda: time.time() - cache.oldest_load())

    async def load_routing_index() -> None:
        await handlers.reload_and_announce(unit_of_work, cache)

    app = create_service_app(
        service=SERVICE,
        title="Mängelmelder geo-router",
        description="Assigns each report to the responsible office by district polygons and "
        "responsibility rules, and explains its choice.",
        broker=broker,
        engine=outbox.engine,
        routers=[http.router],
        background=[
            outbox.run_relay,
            load_routing_index,
            lambda: track_consumer_lag(broker, SERVICE),
        ],
        on_shutdown=[outbox.close],
        refusal=http.refused,
        refusal_doc=json_refusal("RefusalOut"),
        refusal_models=[http.RefusalOut],
    )
    http.install(app, http.HttpState(unit_of_work, cache, settings.default_jurisdiction))
    return app


def asyncapi_app() -> FastStream:
    """For ``faststream docs gen --factory geo_router.bootstrap:asyncapi_app``."""
    broker, *_ = create_messaging(GeoRouterSettings())
    return FastStream(
        broker, specification=AsyncAPI(title="Mängelmelder geo-router", version="0.1.0")
    )
