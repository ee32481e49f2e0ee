"""Intake's composition root: wires settings, database, broker, relay and HTTP app together."""

from __future__ import annotations

from fastapi import FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from intake.adapters import db
from intake.entrypoints import open311
from intake.entrypoints.consumers import register_consumers
from intake.settings import IntakeSettings
from mm_shared.db import create_engine
from mm_shared.events import ReporterContactSubmitted, ReportStatusChanged, ReportSubmitted
from mm_shared.kafka import create_broker, document_publications
from mm_shared.observability import configure_logging
from mm_shared.outbox import KafkaPublisher, Outbox
from mm_shared.service import create_service_app

SERVICE = "intake"


def create_messaging(settings: IntakeSettings) -> tuple[KafkaBroker, Outbox]:
    engine = create_engine(settings.database_url)
    broker = create_broker(settings.kafka_bootstrap_servers, SERVICE)
    outbox = Outbox(
        engine,
        db.outbox,
        db.inbox,
        KafkaPublisher(settings.kafka_bootstrap_servers, SERVICE),
        SERVICE,
    )
    register_consumers(broker, outbox, settings)
    document_publications(broker, ReportSubmitted, ReporterContactSubmitted, ReportStatusChanged)
    return broker, outbox


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging(settings.log_level)
    broker, outbox = create_messaging(settings)
    writer = db.SubmissionWriter(outbox)

    return create_service_app(
        service=SERVICE,
        title="Mängelmelder intake",
        description="Accepts citizens' reports (Open311 GeoReport v2) and owns their status.",
        broker=broker,
        engine=outbox.engine,
        routers=[open311.router(outbox, writer, settings)],
        on_shutdown=[outbox.close],
        background=[writer.run, outbox.run_relay],
    )


def asyncapi_app() -> FastStream:
    """For ``faststream docs gen --factory intake.bootstrap:asyncapi_app``."""
    broker, _ = create_messaging(IntakeSettings())
    return FastStream(broker, specification=AsyncAPI(title="Mängelmelder intake", version="0.1.0"))
