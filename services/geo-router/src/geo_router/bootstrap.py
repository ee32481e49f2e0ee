"""Geo-router's composition root."""

from __future__ import annotations

from fastapi import FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from geo_router.adapters import db
from geo_router.entrypoints import http
from geo_router.entrypoints.consumers import register_consumers
from geo_router.settings import GeoRouterSettings
from mm_shared.db import create_engine
from mm_shared.events import ReportRouted, ReportRoutingFailed
from mm_shared.kafka import create_broker, document_publications
from mm_shared.observability import configure_logging
from mm_shared.outbox import Outbox, broker_publisher
from mm_shared.service import create_service_app

SERVICE = "geo-router"


def create_messaging(settings: GeoRouterSettings) -> tuple[KafkaBroker, Outbox]:
    engine = create_engine(settings.database_url)
    broker = create_broker(settings.kafka_bootstrap_servers, SERVICE)
    outbox = Outbox(engine, db.outbox, db.inbox, broker_publisher(broker.publish), SERVICE)
    register_consumers(broker, outbox, settings)
    document_publications(broker, ReportRouted, ReportRoutingFailed)
    return broker, outbox


def create_app(settings: GeoRouterSettings | None = None) -> FastAPI:
    settings = settings or GeoRouterSettings()
    configure_logging(settings.log_level)
    broker, outbox = create_messaging(settings)

    return create_service_app(
        service=SERVICE,
        title="Mängelmelder geo-router",
        description="Assigns each report to the responsible office by district polygons and "
        "responsibility rules, and explains its choice.",
        broker=broker,
        engine=outbox.engine,
        routers=[http.router(outbox, settings.default_jurisdiction)],
        background=[outbox.run_relay],
    )


def asyncapi_app() -> FastStream:
    """For ``faststream docs gen --factory geo_router.bootstrap:asyncapi_app``."""
    broker, _ = create_messaging(GeoRouterSettings())
    return FastStream(
        broker, specification=AsyncAPI(title="Mängelmelder geo-router", version="0.1.0")
    )
