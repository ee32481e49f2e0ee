"""What the command line shows about the loaded jurisdictions, read over plain asyncpg: SQLAlchemy,
the GIS libraries and the service's frame are not imported for a listing, so that an
administrator's ``geo-router jurisdictions list`` answers at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class JurisdictionListed:
    code: str
    name: str
    precedence: int
    retired_at: datetime | None
    areas: int
    offices: int
    rules: int


@dataclass(frozen=True)
class LevelShown:
    code: str
    name: str
    rank: int
    article: str
    areas: int
    version: int | None


@dataclass(frozen=True)
class OfficeShown:
    code: str
    public_name: str
    email: str
    rules: int


@dataclass(frozen=True)
class JurisdictionShown:
    listed: JurisdictionListed
    disabled_service_codes: list[str]
    mail_sender_name: str | None
    holidays_country: str | None
    holidays_subdivision: str | None
    levels: list[LevelShown]
    offices: list[OfficeShown]


_LISTED = """
SELECT j.code, j.name, j.precedence, j.retired_at,
  (SELECT count(*) FROM geo_router.areas a
    WHERE a.jurisdiction = j.code AND a.valid_to IS NULL) AS areas,
  (SELECT count(*) FROM geo_router.offices o WHERE o.jurisdiction = j.code) AS offices,
  (SELECT count(*) FROM geo_router.rules r
    WHERE r.jurisdiction = j.code AND r.valid_to IS NULL) AS rules
FROM geo_router.jurisdictions j
"""


def asyncpg_dsn(database_url: str) -> str:
    """SQLAlchemy's URL (postgresql+asyncpg://…) as asyncpg takes it."""
    scheme, _, rest = database_url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


async def _connect(database_url: str) -> Any:
    return await asyncpg.connect(asyncpg_dsn(database_url))


def _listed(row: Any) -> JurisdictionListed:
    return JurisdictionListed(
        code=row["code"],
        name=row["name"],
        precedence=row["precedence"],
        retired_at=row["retired_at"],
        areas=row["areas"],
        offices=row["offices"],
        rules=row["rules"],
    )


async def list_jurisdictions(database_url: str) -> list[JurisdictionListed]:
    conn = await _connect(database_url)
    try:
        return [_listed(r) for r in await conn.fetch(_LISTED + " ORDER BY j.code")]
    finally:
        await conn.close()


async def show_jurisdiction(database_url: str, code: str) -> JurisdictionShown | None:
    conn = await _connect(database_url)
    try:
        row = await conn.fetchrow(_LISTED + " WHERE j.code = $1", code)
        if row is None:
            return None
        settings = await conn.fetchrow(
            "SELECT disabled_service_codes, mail_sender_name, holidays_country,"
            " holidays_subdivision FROM geo_router.jurisdictions WHERE code = $1",
            code,
        )
        levels = await conn.fetch(
            "SELECT l.code, l.name, l.rank, l.article, count(a.id) AS areas,"
            " max(a.version) AS version FROM geo_router.area_levels l"
            " LEFT JOIN geo_router.areas a ON a.jurisdiction = l.jurisdiction"
            "  AND a.level = l.code AND a.valid_to IS NULL"
            " WHERE l.jurisdiction = $1 GROUP BY l.code, l.name, l.rank, l.article"
            " ORDER BY l.rank, l.code",
            code,
        )
        offices = await conn.fetch(
            "SELECT o.code, o.public_name, o.email, count(r.id) AS rules"
            " FROM geo_router.offices o LEFT JOIN geo_router.rules r"
            "  ON r.jurisdiction = o.jurisdiction AND r.office_code = o.code"
            "  AND r.valid_to IS NULL"
            " WHERE o.jurisdiction = $1 GROUP BY o.code, o.public_name, o.email"
            " ORDER BY o.code",
            code,
        )
    finally:
        await conn.close()
    return JurisdictionShown(
        listed=_listed(row),
        disabled_service_codes=list(settings["disabled_service_codes"]),
        mail_sender_name=settings["mail_sender_name"],
        holidays_country=settings["holidays_country"],
        holidays_subdivision=settings["holidays_subdivision"],
        levels=[LevelShown(**dict(r)) for r in levels],
        offices=[OfficeShown(**dict(r)) for r in offices],
    )
