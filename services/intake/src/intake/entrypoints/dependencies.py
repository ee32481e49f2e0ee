"""What intake's routes are given: the parts the composition root (``bootstrap``) built, read
from ``app.state.components`` as FastAPI dependencies. A route names what it needs by these
aliases, e.g. ``boundaries: BoundariesDep``.

The dependencies are ``async`` on purpose: FastAPI runs a plain function dependency in its
thread pool, a hop per request and dependency for a mere attribute read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, Request

from intake.adapters.boundaries import Boundaries, OfficeDirectory
from intake.adapters.geocoder import NominatimGeocoder
from intake.adapters.oidc import JwtAuthenticator
from intake.adapters.photos import PhotoStore
from intake.adapters.rate_limits import RateLimits
from intake.domain import ReporterTokens
from intake.ports import SubmissionWriter, UnitOfWorkFactory
from intake.settings import IntakeSettings
from mm_shared.outbox import Outbox


@dataclass(frozen=True)
class Components:
    """Everything the HTTP entrypoints use, built once by ``bootstrap.create_app``."""

    settings: IntakeSettings
    #: Opens the units of work the handlers run in.
    uows: UnitOfWorkFactory
    #: For what streams rows straight from the database (the CSV exports).
    outbox: Outbox
    writer: SubmissionWriter
    boundaries: Boundaries
    directory: OfficeDirectory
    tokens: ReporterTokens
    limits: RateLimits
    photos: PhotoStore
    geocoder: NominatimGeocoder | None = None
    oidc: JwtAuthenticator | None = None

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)


def components_of(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


async def _settings(request: Request) -> IntakeSettings:
    return components_of(request).settings


async def _uows(request: Request) -> UnitOfWorkFactory:
    return components_of(request).uows


async def _outbox(request: Request) -> Outbox:
    return components_of(request).outbox


async def _writer(request: Request) -> SubmissionWriter:
    return components_of(request).writer


async def _boundaries(request: Request) -> Boundaries:
    return components_of(request).boundaries


async def _directory(request: Request) -> OfficeDirectory:
    return components_of(request).directory


async def _tokens(request: Request) -> ReporterTokens:
    return components_of(request).tokens


async def _limits(request: Request) -> RateLimits:
    return components_of(request).limits


async def _photos(request: Request) -> PhotoStore:
    return components_of(request).photos


async def _geocoder(request: Request) -> NominatimGeocoder | None:
    return components_of(request).geocoder


async def _oidc(request: Request) -> JwtAuthenticator | None:
    return components_of(request).oidc


async def _timezone(request: Request) -> ZoneInfo:
    return components_of(request).timezone


SettingsDep = Annotated[IntakeSettings, Depends(_settings)]
UnitsOfWorkDep = Annotated[UnitOfWorkFactory, Depends(_uows)]
OutboxDep = Annotated[Outbox, Depends(_outbox)]
WriterDep = Annotated[SubmissionWriter, Depends(_writer)]
BoundariesDep = Annotated[Boundaries, Depends(_boundaries)]
DirectoryDep = Annotated[OfficeDirectory, Depends(_directory)]
TokensDep = Annotated[ReporterTokens, Depends(_tokens)]
LimitsDep = Annotated[RateLimits, Depends(_limits)]
PhotoStoreDep = Annotated[PhotoStore, Depends(_photos)]
GeocoderDep = Annotated[NominatimGeocoder | None, Depends(_geocoder)]
OidcDep = Annotated[JwtAuthenticator | None, Depends(_oidc)]
#: The city's time zone (``INTAKE_TIMEZONE``).
TimezoneDep = Annotated[ZoneInfo, Depends(_timezone)]
