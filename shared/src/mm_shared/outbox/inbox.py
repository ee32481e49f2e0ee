"""The inbox: event ids a service processed, so that a redelivery is dropped."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection


async def first_deliveries(
    conn: AsyncConnection, inbox: sa.Table, event_ids: Sequence[UUID]
) -> set[UUID]:
    """Record a batch of event ids as processed; returns those not seen before."""
    if not event_ids:
        return set()
    # One array parameter, not a row of parameters per id: a batch of hundreds costs
    # SQLAlchemy and PostgreSQL the same as one id, not hundreds of binds and VALUES rows.
    ids = sa.select(sa.func.unnest(sa.bindparam("ids", type_=pg.ARRAY(pg.UUID(as_uuid=True)))))
    inserted = await conn.execute(
        pg.insert(inbox)
        .from_select([inbox.c.event_id], ids)
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id),
        {"ids": list(event_ids)},
    )
    return set(inserted.scalars())


async def first_delivery(conn: AsyncConnection, inbox: sa.Table, event_id: UUID) -> bool:
    """Record ``event_id`` as processed in the caller's transaction; False if it already was."""
    inserted = await conn.scalar(
        pg.insert(inbox)
        .values(event_id=event_id)
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )
    return inserted is not None
