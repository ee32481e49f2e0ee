"""The notifier's composition root."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from mm_shared.db import create_engine, ping
from mm_shared.kafka import create_broker, keep_broker_connected
from mm_shared.observability import configure_logging, instrument
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

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(keep_broker_connected(broker)),
            asyncio.create_task(dispatcher.run()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            await engine.dispose()

    app = FastAPI(
        title="Mängelmelder notifier",
        description="Tells reporters about every status change of their reports.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(http.router(engine))
    instrument(app, SERVICE, {"database": lambda: ping(engine), "broker": lambda: broker.ping(2.0)})
    return app


def asyncapi_app() -> FastStream:
    """For ``faststream docs gen --factory notifier.bootstrap:asyncapi_app``."""
    broker, _, _ = create_messaging(NotifierSettings())
    return FastStream(
        broker, specification=AsyncAPI(title="Mängelmelder notifier", version="0.1.0")
    )
