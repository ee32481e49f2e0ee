"""The notifier's composition root."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from mm_shared.db import create_engine
from mm_shared.kafka import create_broker, track_consumer_lag
from mm_shared.observability import configure_logging
from mm_shared.service import create_service_app
from notifier import handlers
from notifier.adapters.db import SqlUnitOfWorkFactory
from notifier.adapters.senders import SmtpSender, WebhookSender
from notifier.entrypoints import http
from notifier.entrypoints.consumers import register_consumers
from notifier.handlers import Dispatcher
from notifier.mails import Mails
from notifier.settings import NotifierSettings

SERVICE = "notifier"
log = logging.getLogger(__name__)


def create_messaging(
    settings: NotifierSettings,
) -> tuple[KafkaBroker, AsyncEngine, Dispatcher]:
    engine = create_engine(settings.database_url)
    unit_of_work = SqlUnitOfWorkFactory(engine)
    broker = create_broker(settings.kafka_bootstrap_servers, SERVICE)
    mail_senders = [SmtpSender(settings) for _ in range(settings.workers)]
    hook_sender = WebhookSender(settings) if settings.webhook_url else None
    dispatcher = Dispatcher(
        unit_of_work,
        list(mail_senders),
        hook_sender,
        settings,
        statements=SqlUnitOfWorkFactory(engine, autocommit=True),
    )
    dispatcher.closers.extend(s.close for s in mail_senders)
    if hook_sender is not None:
        dispatcher.closers.append(hook_sender.close)
    reminder_sender = SmtpSender(settings)
    dispatcher.closers.append(reminder_sender.close)
    register_consumers(broker, unit_of_work, dispatcher, reminder_sender, mails(settings), settings)
    return broker, engine, dispatcher


def mails(settings: NotifierSettings) -> Mails:
    return Mails(settings.public_base_url, settings.tracking_base_url)


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    configure_logging(settings.log_level)
    broker, engine, dispatcher = create_messaging(settings)
    unit_of_work = SqlUnitOfWorkFactory(engine)
    # The alert subscriptions' confirmation mails are sent while the subscriber waits.
    confirmation_sender = SmtpSender(settings)

    async def erase_expired_contacts() -> None:
        """Contact data lives as long as its purpose: telling the reporter about the report."""
        retention = timedelta(days=settings.contact_retention_days)
        while True:
            try:
                if erased := await handlers.erase_expired_contacts(unit_of_work, retention):
                    log.info("erased %d reporters' contact data past retention", erased)
            except Exception:
                log.exception("erasing expired contact data failed; trying again later")
            await asyncio.sleep(settings.contact_erasure_interval_s)

    app = create_service_app(
        service=SERVICE,
        title="Mängelmelder notifier",
        description="Tells reporters about every status change of their reports.",
        broker=broker,
        engine=engine,
        routers=[http.router],
        background=[
            dispatcher.run,
            erase_expired_contacts,
            lambda: track_consumer_lag(broker, SERVICE),
        ],
        on_shutdown=[*dispatcher.closers, confirmation_sender.close],
        refusal=http.refusal(settings),
        refusal_doc=http.refusal_doc,
    )
    app.state.notifier = http.NotifierApi(
        unit_of_work=unit_of_work,
        settings=settings,
        confirmation_sender=confirmation_sender,
        mails=mails(settings),
    )
    return app


def asyncapi_app() -> FastStream:
    """For ``faststream docs gen --factory notifier.bootstrap:asyncapi_app``."""
    broker, _, _ = create_messaging(NotifierSettings())
    return FastStream(
        broker, specification=AsyncAPI(title="Mängelmelder notifier", version="0.1.0")
    )
