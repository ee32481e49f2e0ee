"""Staff accounts and bearer tokens. Tokens are stored only as SHA-256 hashes and can be
revoked. ``authenticate`` is the one seam an OIDC provider would replace: anything that turns a
bearer credential into a :class:`StaffMember` fits."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from intake.adapters.db import metadata
from intake.domain import StaffMember as StaffMember

staff_accounts = sa.Table(
    "staff_accounts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    #: The jurisdiction the member works for (office codes are unique only within one); NULL
    #: only for a deployment-wide admin.
    sa.Column("jurisdiction", sa.Text),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)
staff_offices = sa.Table(
    "staff_offices",
    metadata,
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey(staff_accounts.c.id), primary_key=True),
    sa.Column("office_code", sa.Text, primary_key=True),
)
staff_tokens = sa.Table(
    "staff_tokens",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey(staff_accounts.c.id), nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    #: To the minute: a request within a minute of the last one does not write again.
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
)

#: How long a new token is valid unless the caller says otherwise (INTAKE_STAFF_TOKEN_TTL_DAYS).
DEFAULT_LIFETIME = timedelta(days=90)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OtherJurisdiction(ValueError):
    """The account exists and works for another jurisdiction."""


class TokenExpired(Exception):
    """A local token past its ``expires_at``: the member needs a new one."""

    def __init__(self, expired_at: datetime) -> None:
        super().__init__(f"expired at {expired_at.isoformat(timespec='minutes')}")
        self.expired_at = expired_at


async def create_account(
    conn: AsyncConnection,
    name: str,
    offices: Iterable[str],
    *,
    is_admin: bool = False,
    expires_at: datetime | None = None,
    jurisdiction: str | None = None,
) -> tuple[int, str]:
    """A new account (or more offices for an existing one) with a fresh token, valid until
    ``expires_at`` (:data:`DEFAULT_LIFETIME` from now by default); the token is returned once
    and never stored in clear. ``jurisdiction`` is where the offices are; None only for a
    deployment-wide admin. Raises OtherJurisdiction for an existing account of another one."""
    if jurisdiction is None and not is_admin:
        raise ValueError("a member of staff who is no deployment-wide admin needs a jurisdiction")
    existing = (
        await conn.execute(
            sa.select(staff_accounts.c.jurisdiction).where(staff_accounts.c.name == name)
        )
    ).first()
    if existing is not None and existing.jurisdiction != jurisdiction:
        raise OtherJurisdiction(
            f"account {name} works for {existing.jurisdiction or 'every jurisdiction'}, "
            f"not {jurisdiction or 'every jurisdiction'}: choose another name"
        )
    account_id = await conn.scalar(
        sa.dialects.postgresql.insert(staff_accounts)
        .values(name=name, is_admin=is_admin, jurisdiction=jurisdiction)
        .on_conflict_do_update(index_elements=["name"], set_={"is_admin": is_admin})
        .returning(staff_accounts.c.id)
    )
    assert account_id is not None
    for office in offices:
        await conn.execute(
            sa.dialects.postgresql.insert(staff_offices)
            .values(account_id=account_id, office_code=office)
            .on_conflict_do_nothing()
        )
    token = "mm_" + secrets.token_urlsafe(32)
    await conn.execute(
        staff_tokens.insert().values(
            account_id=account_id,
            token_hash=_hash(token),
            expires_at=expires_at or datetime.now(UTC) + DEFAULT_LIFETIME,
        )
    )
    return int(account_id), token


async def revoke(conn: AsyncConnection, token: str) -> bool:
    result = await conn.execute(
        staff_tokens.update()
        .where(staff_tokens.c.token_hash == _hash(token), staff_tokens.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )
    return bool(result.rowcount)


async def authenticate(conn: AsyncConnection, token: str) -> StaffMember | None:
    """The member a valid token belongs to, its use recorded; None for an unknown or revoked
    token; :class:`TokenExpired` for an expired one (so the member hears why)."""
    row = (
        await conn.execute(
            sa.select(
                staff_accounts.c.id,
                staff_accounts.c.name,
                staff_accounts.c.is_admin,
                staff_accounts.c.jurisdiction,
                staff_tokens.c.id.label("token_id"),
                staff_tokens.c.expires_at,
            )
            .join(staff_tokens, staff_tokens.c.account_id == staff_accounts.c.id)
            .where(staff_tokens.c.token_hash == _hash(token), staff_tokens.c.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    if row.expires_at <= datetime.now(UTC):
        raise TokenExpired(row.expires_at)
    await conn.execute(
        staff_tokens.update()
        .where(
            staff_tokens.c.id == row.token_id,
            sa.or_(
                staff_tokens.c.last_used_at.is_(None),
                staff_tokens.c.last_used_at < sa.func.now() - timedelta(minutes=1),
            ),
        )
        .values(last_used_at=sa.func.now())
    )
    offices = await conn.scalars(
        sa.select(staff_offices.c.office_code).where(staff_offices.c.account_id == row.id)
    )
    return StaffMember(row.id, row.name, frozenset(offices), row.is_admin, row.jurisdiction)


@dataclass
class SqlStaffAccounts:
    """The staff accounts of :mod:`intake.ports`, over one connection."""

    conn: AsyncConnection

    async def authenticate(self, token: str) -> StaffMember | None:
        return await authenticate(self.conn, token)
