"""Intake's composition root: wires settings, database, broker, relay and HTTP app together."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from intake import handlers
from intake.adapters import db
from intake.adapters.boundaries import Boundaries, OfficeDirectory, PublicHolidays
from intake.adapters.geocoder import NominatimGeocoder
from intake.adapters.oidc import JwtAuthenticator
from intake.adapters.photo_variants import PhotoVariantWorker
from intake.adapters.photos import MAX_BYTES, FileSystemPhotoStore
from intake.adapters.rate_limits import RateLimits
from intake.domain import ReporterTokens
from intake.entrypoints import api, open311, schemas, staff
from intake.entrypoints.consumers import register_consumers
from intake.entrypoints.dependencies import Components
from intake.entrypoints.formats import Format, errors
from intake.settings import IntakeSettings
from mm_shared.db import create_engine
from mm_shared.events import (
    OfficeReminderDue,
    ReporterContactSubmitted,
    ReportReassigned,
    ReportStatusChanged,
    ReportSubmitted,
)
from mm_shared.kafka import create_broker, document_publications, track_consumer_lag
from mm_shared.observability import configure_logging
from mm_shared.outbox import Outbox
from mm_shared.service import Problems, create_service_app, problem

SERVICE = "intake"
log = logging.getLogger(__name__)


def create_messaging(
    settings: IntakeSettings,
) -> tuple[KafkaBroker, Outbox, Boundaries, OfficeDirectory]:
    engine = create_engine(settings.database_url)
    broker = create_broker(settings.kafka_bootstrap_servers, SERVICE)
    outbox = Outbox.for_kafka(
        engine,
        db.metadata,
        settings.kafka_bootstrap_servers,
        SERVICE,
        idle_poll_interval_s=settings.idle_poll_interval_s,
    )
    boundaries = Boundaries(engine)
    directory = OfficeDirectory()
    register_consumers(broker, outbox, boundaries, directory, settings)
    document_publications(
        broker,
        ReportSubmitted,
        ReporterContactSubmitted,
        ReportStatusChanged,
        ReportReassigned,
        OfficeReminderDue,
    )
    return broker, outbox, boundaries, directory


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging(settings.log_level)
    tokens = reporter_tokens(settings)
    limits = RateLimits(
        per_address=settings.rate_limit_per_address,
        per_email=settings.rate_limit_per_email,
        window_s=settings.rate_limit_window_s,
        trusted_proxies=settings.trusted_proxies,
    )
    broker, outbox, boundaries, directory = create_messaging(settings)
    writer = db.SubmissionWriter(outbox)
    uows = db.SqlUnitOfWorks(outbox)
    store = FileSystemPhotoStore(Path(settings.photo_dir))
    # Display sizes and thumbnails are made in the background, also those a previous process
    # left undone.
    photo_variants = (
        [PhotoVariantWorker(store, settings.photo_variant_workers).run]
        if settings.photo_variant_workers
        else []
    )

    async def sweep_unrouted() -> None:
        """No accepted report stays unrouted: re-publish what waited too long."""
        older_than = timedelta(seconds=settings.resubmit_after_s)
        while True:
            await asyncio.sleep(settings.resubmit_after_s / 4)
            try:
                await handlers.resubmit_unrouted(uows, older_than)
            except Exception:
                log.exception("resubmitting unrouted reports failed; trying again later")

    async def forget_kept_contacts() -> None:
        """Contacts are kept for re-announcing only, and only for so long."""
        kept_for = timedelta(days=settings.contact_kept_days)
        while True:
            try:
                if erased := await handlers.forget_kept_contacts(uows, kept_for):
                    log.info("erased %d kept contacts past their time", erased)
            except Exception:
                log.exception("erasing kept contacts failed; trying again later")
            await asyncio.sleep(3600)

    async def remind_offices() -> None:
        """Daily, at the configured local hour: the offices' summaries of waiting tickets."""
        tz = ZoneInfo(settings.timezone)
        holidays_of = PublicHolidays(
            directory, settings.holidays_country, settings.holidays_subdivision
        )

        while True:
            now = datetime.now(tz)
            try:
                await handlers.measure_open_tickets(
                    uows,
                    accept_within_working_days=settings.reminder_accept_within_working_days,
                    work_within_days=settings.reminder_work_within_days,
                    holidays_of=holidays_of,
                )
                if now.hour >= settings.reminder_hour:
                    await handlers.send_office_reminders(
                        uows,
                        now.date(),
                        accept_within_working_days=settings.reminder_accept_within_working_days,
                        work_within_days=settings.reminder_work_within_days,
                        holidays_of=holidays_of,
                    )
            except Exception:
                log.exception("office reminders failed; trying again later")
            await asyncio.sleep(60)

    geocoder = (
        NominatimGeocoder(
            settings.geocoder_url,
            city=settings.geocoder_city,
            # Nominatim's usage policy asks for an identifying User-Agent (ASCII only).
            user_agent=f"Maengelmelder-intake/1.0 (+{settings.public_base_url})",
            timeout_s=settings.geocoder_timeout_s,
        )
        if settings.geocoder_url
        else None
    )

    oidc = (
        JwtAuthenticator(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            offices_claim=settings.oidc_offices_claim,
            roles_claim=settings.oidc_roles_claim,
            admin_role=settings.oidc_admin_role,
            jurisdiction_claim=settings.oidc_jurisdiction_claim,
            default_jurisdiction=settings.jurisdiction,
        )
        if settings.oidc_issuer and settings.oidc_jwks_url
        else None
    )

    app = create_service_app(
        service=SERVICE,
        title="Mängelmelder intake",
        description="Accepts citizens' reports (Open311 GeoReport v2 and the city app's API) "
        "and owns their status.",
        broker=broker,
        engine=outbox.engine,
        routers=[open311.router, api.router, staff.router],
        startup=[boundaries.load],
        background=[
            writer.run,
            outbox.run_relay,
            sweep_unrouted,
            forget_kept_contacts,
            remind_offices,
            lambda: track_consumer_lag(broker, SERVICE),
            *photo_variants,
        ],
        on_shutdown=[outbox.close, *([geocoder.close] if geocoder else [])],
        refusal=refused,
        refusal_doc=schemas.refusal_doc,
        refusal_models=[schemas.Open311Error],
        # Five photos of at most 10 MB each, and the form around them.
        max_body_bytes=api.MAX_PHOTOS * MAX_BYTES + 1024 * 1024,
    )

    app.state.components = Components(
        settings=settings,
        uows=uows,
        outbox=outbox,
        writer=writer,
        boundaries=boundaries,
        directory=directory,
        tokens=tokens,
        limits=limits,
        photos=store,
        geocoder=geocoder,
        oidc=oidc,
    )

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Acknowledge-Duplicate",
            ],
            expose_headers=["Retry-After"],
            max_age=3600,
        )

    @app.exception_handler(staff.Refused)
    async def staff_refusal(_: Request, refusal: staff.Refused) -> Response:
        return refusal.response

    @app.exception_handler(staff.Unauthorized)
    async def unauthorized(_: Request, refused: staff.Unauthorized) -> Response:
        return problem(401, ("unauthorized", "Authorization", str(refused)))

    return app


class MissingReporterTokenSecret(RuntimeError):
    pass


def reporter_tokens(settings: IntakeSettings) -> ReporterTokens:
    """Reporters' tokens must stay valid across instances and restarts, so the secret is
    configuration; without it intake does not start (rather than issue tokens that break)."""
    secret = settings.reporter_token_secret
    if secret is None or len(secret.get_secret_value()) < 32:
        raise MissingReporterTokenSecret(
            "INTAKE_REPORTER_TOKEN_SECRET must be set to a secret of at least 32 characters, "
            "the same on every intake instance (e.g. `openssl rand -base64 32`)"
        )
    return ReporterTokens(secret.get_secret_value().encode())


def refused(request: Request, status: int, code: str, problems: Problems) -> Response:
    """Open311's errors under its prefix, the city app's and staff API's elsewhere."""
    path = request.url.path
    if path.startswith(open311.PREFIX):
        # GeoReport v2 knows 400, 403 and 404 only, and answers in the format the path names.
        fmt = Format.XML if path.endswith(".xml") else Format.JSON
        descriptions = [f"{field}: {message}" if field else message for field, message in problems]
        return errors(fmt, 400 if status == 422 else status, *descriptions)
    return problem(status, *[(code, field, message) for field, message in problems])


def asyncapi_app() -> FastStream:
    """For ``faststream docs gen --factory intake.bootstrap:asyncapi_app``."""
    broker, *_ = create_messaging(IntakeSettings())
    return FastStream(broker, specification=AsyncAPI(title="Mängelmelder intake", version="0.1.0"))
