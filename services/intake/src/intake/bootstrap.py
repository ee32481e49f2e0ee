"""Intake's composition root: wires settings, database, broker, relay and HTTP app together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from intake.adapters import db
from intake.entrypoints import open311
from intake.entrypoints.consumers import register_consumers
from intake.settings import IntakeSettings
from mm_shared.db import create_engine, ping
from mm_shared.kafka import create_broker, keep_broker_connected
from mm_shared.observability import configure_logging, instrument
from mm_shared.outbox import Outbox, broker_publisher

SERVICE = "intake"


def create_messaging(settings: IntakeSettings) -> tuple[KafkaBroker, Outbox]:
    engine = create_engine(settings.database_url)
    broker = create_broker(settings.kafka_bootstrap_servers, SERVICE)
    outbox = Outbox(engine, db.outbox, db.inbox, broker_publisher(broker.publish), SERVICE)
    register_consumers(broker, outbox, settings)
    return broker, outbox


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging(settings.log_level)
    broker, outbox = create_messaging(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The API must accept reports even while the broker is unreachable: connect in the
        # background and let the relay catch up once it is there.
        tasks = [
            asyncio.create_task(keep_broker_connected(broker)),
            asyncio.create_task(outbox.run_relay()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            await outbox.engine.dispose()

    app = FastAPI(
        title="Mängelmelder intake",
        description="Accepts citizens' reports (Open311 GeoReport v2) and owns their status.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(open311.router(outbox, settings))
    instrument(
        app, SERVICE, {"database": lambda: ping(outbox.engine), "broker": lambda: broker.ping(2.0)}
    )
    return app


def asyncapi_app() -> FastStream:
    """For ``faststream docs gen --factory intake.bootstrap:asyncapi_app``."""
    broker, _ = create_messaging(IntakeSettings())
    return FastStream(broker, specification=AsyncAPI(title="Mängelmelder intake", version="0.1.0"))
