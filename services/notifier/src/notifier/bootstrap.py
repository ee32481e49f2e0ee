"""The notifier's composition root."""

from __future__ import annotations

from fastapi import FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from mm_shared.db import create_engine
from mm_shared.kafka import create_broker
from mm_shared.observability import configure_logging
from mm_shared.service import create_service_app
from notifier.adapters.mail import SmtpSender
from notifier.entrypoints import http
from notifier.entrypoints.consumers import register_consumers
from notifier.handlers import Dispatcher
from notifier.settings import NotifierSettings

SERVICE = "notifier"


def create_messaging(
    settings: NotifierSettings,
) -> tuple[KafkaBroker, AsyncEngine, Dispatcher]:
    engine = create_engine(settings.database_url)
    broker = create_broker(settings.kafka_bootstrap_servers, SERVICE)
    dispatcher = Dispatcher(engine, SmtpSender(settings), settings)
    register_consumers(broker, engine, dispatcher, settings)
    return broker, engine, dispatcher


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    configure_logging(settings.log_level)
    broker, engine, dispatcher = create_messaging(settings)

    return create_service_app(
        service=SERVICE,
        title="Mängelmelder notifier",
        description="Tells reporters about every status change of their reports.",
        broker=broker,
        engine=engine,
        routers=[http.router(engine)],
        background=[dispatcher.run],
    )


def asyncapi_app() -> FastStream:
    """For ``faststream docs gen --factory notifier.bootstrap:asyncapi_app``."""
    broker, _, _ = create_messaging(NotifierSettings())
    return FastStream(
        broker, specification=AsyncAPI(title="Mängelmelder notifier", version="0.1.0")
    )
