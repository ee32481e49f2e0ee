"""The notifier's tables (schema ``notifier``): contacts, the status events they hear about, and
one notification per event × contact × channel; and the repositories of ``notifier.ports`` over
them, with the unit of work (one transaction) that holds them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mm_shared.events import ReportRouted, ReportStatus
from mm_shared.outbox import first_deliveries, first_delivery, inbox_table
from notifier.domain import (
    AlertRequest,
    AlertSubscription,
    City,
    Claimed,
    Contact,
    NewContact,
    Notification,
    Office,
    Outcome,
    ParkedNotification,
    Preference,
    StatusChange,
)

SCHEMA = "notifier"
metadata = sa.MetaData(schema=SCHEMA)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("first_name", sa.Text),
    sa.Column("last_name", sa.Text),
    sa.Column("locale", sa.Text, nullable=False),
    sa.Column("preference", sa.Text, nullable=False),
    sa.Column("unsubscribe_token", sa.Text, nullable=False, unique=True),
    #: Changes from this moment on are told to this contact (a follower hears no old news).
    sa.Column("subscribed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    #: The reporter's token (intake's HMAC of the report id; None for followers): their
    #: mails link the report with it, and it proves a request to erase this contact.
    sa.Column("reporter_token", sa.Text),
)

#: Area alerts: mails about new reports in an area (a code, or a circle around a point),
#: optionally of one category. Confirmed by the subscriber's click (double opt-in).
alert_subscriptions = sa.Table(
    "alert_subscriptions",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("locale", sa.Text, nullable=False),
    sa.Column("service_code", sa.Text),
    sa.Column("area_code", sa.Text),
    sa.Column("lat", sa.Float),
    sa.Column("long", sa.Float),
    sa.Column("radius_m", sa.Float),
    #: The jurisdiction whose reports it is about (None: any, as before there were several).
    sa.Column("jurisdiction", sa.Text),
    sa.Column("confirm_token", sa.Text, nullable=False, unique=True),
    sa.Column("unsubscribe_token", sa.Text, nullable=False, unique=True),
    sa.Column("confirmed_at", sa.DateTime(timezone=True)),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

status_events = sa.Table(
    "status_events",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", pg.JSONB, nullable=False),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("report_id", pg.UUID(as_uuid=True), nullable=False),
    #: NULL for the webhook, which tells the city app's push backend, not a person, for mails
    #: to offices and for area alerts (``subscription_id``).
    sa.Column("contact_id", sa.BigInteger, sa.ForeignKey(contacts.c.id)),
    sa.Column(
        "subscription_id",
        sa.BigInteger,
        sa.ForeignKey(alert_subscriptions.c.id, ondelete="CASCADE"),
    ),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("event", pg.JSONB, nullable=False),
    #: pending → sending (claimed) → sent | skipped | parked
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column(
        "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("last_error", sa.Text),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    #: The instance holding the claim (state ``sending``); see ``instances``.
    sa.Column("claimed_by", sa.Text),
)

#: Live notifier instances: each writes its heartbeat every few seconds (database time). The
#: claims of an instance whose heartbeat is older than ``NOTIFIER_INSTANCE_DEAD_AFTER_S`` go
#: back to the queue.
instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column(
        "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "heartbeat_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

inbox = inbox_table(metadata)

offices = sa.Table(
    "offices",
    metadata,
    sa.Column("jurisdiction", sa.Text, primary_key=True),
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
)

#: What makes a city's mails its own: its name (from geo-router's boundary event) and the
#: sender name of its mails (from its office directory). Either may be unknown (None).
jurisdictions = sa.Table(
    "jurisdictions",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("sender_name", sa.Text),
)

#: Each report's jurisdiction, from the first event about it that names one (a reporter's
#: contact may come without it).
report_jurisdictions = sa.Table(
    "report_jurisdictions",
    metadata,
    sa.Column("report_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("jurisdiction", sa.Text, nullable=False),
)


# The repositories (see notifier.ports for what each promises).


class SqlInbox:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def first_deliveries(self, event_ids: Sequence[UUID]) -> set[UUID]:
        return await first_deliveries(self._conn, inbox, event_ids)

    async def first_delivery(self, event_id: UUID) -> bool:
        return await first_delivery(self._conn, inbox, event_id)


#: The columns of a :class:`Contact`, in the order :func:`_contacts` reads them.
_CONTACT = (
    "id, report_id, email, locale, preference, unsubscribe_token, subscribed_at, first_name,"
    " last_name, reporter_token"
)


def _contacts(rows: Iterable[Sequence[Any]]) -> list[Contact]:
    """Contacts from rows of :data:`_CONTACT` (by position: the statements below that return
    many contacts are driver SQL, whose rows come without SQLAlchemy's processing)."""
    return [
        Contact(
            id=id_,
            report_id=report_id,
            email=email,
            locale=locale,
            preference=Preference(preference),
            unsubscribe_token=unsubscribe_token,
            subscribed_at=subscribed_at,
            first_name=first_name,
            last_name=last_name,
            reporter_token=reporter_token,
        )
        for (
            id_,
            report_id,
            email,
            locale,
            preference,
            unsubscribe_token,
            subscribed_at,
            first_name,
            last_name,
            reporter_token,
        ) in rows
    ]


_CONTACT_COLUMNS = tuple(contacts.c[name.strip()] for name in _CONTACT.split(","))


def _columns(rows: Sequence[Any], *attributes: str) -> tuple[list[Any], ...]:
    """One list per attribute of ``rows``, in order: the arrays an ``unnest`` statement
    takes."""
    return tuple([getattr(row, name) for row in rows] for name in attributes)


# The statements a consumed batch runs take one array per column (unnest), written for the
# driver: as a list of rows, each row cost SQLAlchemy a dict of parameters to process and
# PostgreSQL a parsed VALUES row, or (without RETURNING) an execution of its own, as asyncpg
# runs executemany. Through ``exec_driver_sql`` they stay in the unit of work's transaction.
_ADD_CONTACTS = (
    "INSERT INTO notifier.contacts (report_id, email, first_name, last_name, locale,"
    " preference, unsubscribe_token, subscribed_at, reporter_token)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
    "                      $6::text[], $7::text[], $8::timestamptz[], $9::text[])"
    f" ON CONFLICT DO NOTHING RETURNING {_CONTACT}"
)
_CONTACTS_OF_REPORTS = (
    f"SELECT {_CONTACT} FROM notifier.contacts WHERE report_id = ANY($1::uuid[]) ORDER BY id"
)


class SqlContacts:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, new: Sequence[NewContact]) -> list[Contact]:
        if not new:
            return []
        inserted = await self._conn.exec_driver_sql(
            _ADD_CONTACTS,
            # The preference as it is: a StrEnum is the text it stands for.
            _columns(
                new,
                "report_id",
                "email",
                "first_name",
                "last_name",
                "locale",
                "preference",
                "unsubscribe_token",
                "subscribed_at",
                "reporter_token",
            ),
        )
        return _contacts(inserted)

    async def of_reports(self, report_ids: Collection[UUID]) -> list[Contact]:
        if not report_ids:
            return []
        return _contacts(
            await self._conn.exec_driver_sql(_CONTACTS_OF_REPORTS, (list(report_ids),))
        )

    async def reporters_of(self, report_id: UUID) -> list[Contact]:
        rows = await self._conn.execute(
            sa.select(*_CONTACT_COLUMNS)
            .where(contacts.c.report_id == report_id, contacts.c.reporter_token.is_not(None))
            .with_for_update()
        )
        return _contacts(rows)

    async def ids_with_unsubscribe_tokens(self, tokens: Collection[str]) -> list[int]:
        if not tokens:
            return []
        rows = await self._conn.scalars(
            sa.select(contacts.c.id).where(contacts.c.unsubscribe_token.in_(list(tokens)))
        )
        return list(rows)

    async def preference_of(self, unsubscribe_token: str) -> Preference | None:
        value = await self._conn.scalar(
            sa.select(contacts.c.preference)
            .where(contacts.c.unsubscribe_token == unsubscribe_token)
            .limit(1)
        )
        return None if value is None else Preference(value)

    async def set_preference(self, unsubscribe_token: str, preference: Preference) -> bool:
        result = await self._conn.execute(
            contacts.update()
            .where(contacts.c.unsubscribe_token == unsubscribe_token)
            .values(preference=preference.value)
        )
        return bool(result.rowcount)

    async def of_reports_closed_before(
        self, cutoff: datetime, closed: Collection[ReportStatus]
    ) -> list[int]:
        rows = await self._conn.scalars(
            sa.text(
                "WITH latest AS ("
                "  SELECT DISTINCT ON (report_id) report_id, event->>'status' AS status,"
                "         occurred_at"
                "  FROM notifier.status_events ORDER BY report_id, occurred_at DESC)"
                " SELECT c.id FROM notifier.contacts c JOIN latest l USING (report_id)"
                " WHERE l.status = ANY(CAST(:closed AS text[])) AND l.occurred_at < :cutoff"
                " AND NOT EXISTS (SELECT 1 FROM notifier.notifications n"
                "                 WHERE n.contact_id = c.id AND n.state IN ('pending', 'sending'))"
            ),
            {"closed": [s.value for s in closed], "cutoff": cutoff},
        )
        return list(rows)

    async def erase(self, contact_ids: Collection[int]) -> int:
        if not contact_ids:
            return 0
        erased = await self._conn.execute(
            sa.text(
                "WITH sent AS (DELETE FROM notifier.notifications"
                "              WHERE contact_id = ANY(CAST(:ids AS bigint[])))"
                " DELETE FROM notifier.contacts WHERE id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"ids": list(contact_ids)},
        )
        return int(erased.rowcount)


_ADD_STATUS_EVENTS = (
    "INSERT INTO notifier.status_events (event_id, report_id, occurred_at, event)"
    " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::jsonb[])"
    " ON CONFLICT DO NOTHING"
)
_STATUS_EVENTS_OF_REPORTS = (
    "SELECT event_id, report_id, occurred_at, event::text FROM notifier.status_events"
    " WHERE report_id = ANY($1::uuid[]) ORDER BY occurred_at"
)


class SqlStatusChanges:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, changes: Sequence[StatusChange]) -> None:
        if changes:
            await self._conn.exec_driver_sql(
                _ADD_STATUS_EVENTS,
                _columns(changes, "event_id", "report_id", "occurred_at", "event_json"),
            )

    async def of_reports(self, report_ids: Collection[UUID]) -> list[StatusChange]:
        if not report_ids:
            return []
        rows: Iterable[Sequence[Any]] = await self._conn.exec_driver_sql(
            _STATUS_EVENTS_OF_REPORTS, (list(report_ids),)
        )
        return [
            StatusChange(event_id, report_id, occurred_at, event_json)
            for event_id, report_id, occurred_at, event_json in rows
        ]

    async def originals_of(self, report_id: UUID) -> list[UUID]:
        rows = await self._conn.scalars(
            sa.select(status_events.c.event["duplicate_of"].astext).where(
                status_events.c.report_id == report_id,
                status_events.c.event["duplicate_of"].astext.is_not(None),
            )
        )
        return [UUID(r) for r in rows]


#: Outcomes of many notifications in one statement: one row of arrays each. Written for the
#: driver itself (see :func:`_on_driver`).
_RECORD_OUTCOMES = (
    "UPDATE notifier.notifications n SET state = o.state,"
    " attempts = coalesce(o.attempts, n.attempts),"
    " last_error = coalesce(o.last_error, n.last_error),"
    " next_attempt_at = coalesce(o.next_attempt_at, n.next_attempt_at),"
    " sent_at = coalesce(o.sent_at, n.sent_at),"
    " claimed_by = CASE WHEN o.give_back THEN NULL ELSE n.claimed_by END"
    " FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::timestamptz[],"
    "             $6::timestamptz[], $7::boolean[])"
    "      AS o(id, state, attempts, last_error, next_attempt_at, sent_at, give_back)"
    " WHERE n.id = o.id"
    # Not over a claim another instance holds now (ours was released meanwhile).
    " AND (n.claimed_by = ANY($8::text[]) OR n.state = 'pending')"
)


async def _on_driver(conn: AsyncConnection, statement: str, *args: Any) -> None:
    """Runs one statement (``$n`` parameters) on the driver's own connection (asyncpg) under
    SQLAlchemy's pooled one: for a small statement that is run very often (every few mails'
    outcomes), SQLAlchemy's execution costs several times what the driver's does. Whatever
    fails invalidates the connection, so that the pool never hands it out again (as
    SQLAlchemy does with a connection it finds broken); the error is raised as the driver
    raised it. Only on an autocommitting connection: on a transactional one the driver would
    run it before SQLAlchemy's BEGIN, outside the unit of work, so it goes through
    SQLAlchemy there."""
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    if options.get("isolation_level") != "AUTOCOMMIT":
        await conn.exec_driver_sql(statement, args)
        return
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None, "a checked-out connection has its driver's"
    try:
        await driver.execute(statement, *args)
    except BaseException:
        with suppress(Exception):  # the driver's error is the one to tell
            await conn.invalidate()
        raise


_QUEUE = (
    "INSERT INTO notifier.notifications"
    " (event_id, report_id, contact_id, subscription_id, channel, event, state)"
    " SELECT *, 'pending' FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[],"
    "                                $5::text[], $6::jsonb[])"
    " ON CONFLICT DO NOTHING"
)

#: Claims from before instances had heartbeats (no ``claimed_by``) expire the old way.
LEGACY_CLAIM_LEASE = timedelta(minutes=5)


class SqlNotificationQueue:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def queue(self, due: Sequence[Notification]) -> None:
        if due:
            await self._conn.exec_driver_sql(
                _QUEUE,
                _columns(
                    due,
                    "event_id",
                    "report_id",
                    "contact_id",
                    "subscription_id",
                    "channel",
                    "event_json",
                ),
            )

    async def claim_due_in_order_per_recipient(
        self, instance_id: str, limit: int, now: datetime
    ) -> list[Claimed]:
        n, c, s = notifications, contacts, alert_subscriptions
        rj, j = report_jurisdictions, jurisdictions
        jurisdiction = sa.func.coalesce(n.c.event["jurisdiction"].astext, rj.c.jurisdiction)
        earlier = n.alias("earlier")
        ids = (
            await self._conn.scalars(
                sa.select(n.c.id)
                .where(n.c.state == "pending", n.c.next_attempt_at <= now)
                .where(
                    ~sa.exists().where(
                        earlier.c.state.in_(["pending", "sending"]),
                        earlier.c.channel == n.c.channel,
                        earlier.c.report_id == n.c.report_id,
                        sa.func.coalesce(earlier.c.contact_id, 0)
                        == sa.func.coalesce(n.c.contact_id, 0),
                        sa.func.coalesce(earlier.c.subscription_id, 0)
                        == sa.func.coalesce(n.c.subscription_id, 0),
                        earlier.c.id < n.c.id,
                    )
                )
                .order_by(n.c.id)
                .limit(limit)
                .with_for_update(of=n, skip_locked=True)
            )
        ).all()
        if not ids:
            return []
        claimed = n.c.id == sa.func.any(sa.cast(sa.literal(list(ids)), pg.ARRAY(sa.BigInteger)))
        await self._conn.execute(
            n.update()
            .where(claimed)
            .values(state="sending", claimed_at=now, claimed_by=instance_id)
        )
        rows = await self._conn.execute(
            sa.select(
                n.c.id,
                n.c.channel,
                n.c.event,
                n.c.attempts,
                n.c.contact_id,
                n.c.subscription_id,
                # A reporter's contact, or a subscriber to area alerts.
                sa.func.coalesce(c.c.email, s.c.email).label("email"),
                c.c.first_name,
                sa.func.coalesce(c.c.locale, s.c.locale).label("locale"),
                c.c.preference,
                sa.func.coalesce(c.c.unsubscribe_token, s.c.unsubscribe_token).label(
                    "unsubscribe_token"
                ),
                c.c.reporter_token,
                s.c.area_code,
                jurisdiction.label("jurisdiction"),
                j.c.name.label("jurisdiction_name"),
                j.c.sender_name,
            )
            .select_from(
                n.outerjoin(c, c.c.id == n.c.contact_id)
                .outerjoin(s, s.c.id == n.c.subscription_id)
                .outerjoin(rj, rj.c.report_id == n.c.report_id)
                .outerjoin(j, j.c.code == jurisdiction)
            )
            .where(claimed)
            .order_by(n.c.id)
        )
        return [Claimed(**r._mapping) for r in rows]

    async def record_outcomes(
        self, outcomes: Sequence[Outcome], claimants: Collection[str]
    ) -> None:
        if not outcomes:
            return
        await _on_driver(
            self._conn,
            _RECORD_OUTCOMES,
            *_columns(
                outcomes,
                "notification_id",
                "state",
                "attempts",
                "last_error",
                "next_attempt_at",
                "sent_at",
            ),
            ["claimed_by" in o.values() for o in outcomes],
            list(claimants),
        )

    async def give_back_claims_of(
        self, claimants: Collection[str], keeping: Collection[int] = ()
    ) -> int:
        n = notifications
        released = await self._conn.execute(
            n.update()
            .where(
                n.c.state == "sending",
                n.c.claimed_by.in_(list(claimants)),
                n.c.id.not_in(list(keeping)),
            )
            .values(state="pending", claimed_by=None)
        )
        return int(released.rowcount)

    async def release_claims_of_dead_instances(self, dead_after: timedelta) -> int:
        n, i = notifications, instances
        live = sa.exists().where(
            i.c.id == n.c.claimed_by, i.c.heartbeat_at > sa.func.now() - dead_after
        )
        released = await self._conn.execute(
            n.update()
            .where(
                n.c.state == "sending",
                sa.or_(
                    sa.and_(n.c.claimed_by.is_not(None), ~live),
                    sa.and_(
                        n.c.claimed_by.is_(None),
                        n.c.claimed_at < sa.func.now() - LEGACY_CLAIM_LEASE,
                    ),
                ),
            )
            .values(state="pending", claimed_by=None)
        )
        return int(released.rowcount)

    async def parked(self, limit: int) -> list[ParkedNotification]:
        n = notifications
        rows = await self._conn.execute(
            sa.select(
                n.c.id,
                n.c.event_id,
                n.c.report_id,
                n.c.channel,
                n.c.attempts,
                n.c.last_error,
                n.c.created_at,
            )
            .where(n.c.state == "parked")
            .order_by(n.c.id)
            .limit(limit)
        )
        return [ParkedNotification(**r._mapping) for r in rows]

    async def retry_parked(self, notification_id: int) -> bool:
        result = await self._conn.execute(
            notifications.update()
            .where(notifications.c.id == notification_id, notifications.c.state == "parked")
            .values(state="pending", attempts=0, next_attempt_at=sa.func.now())
        )
        return bool(result.rowcount)


class SqlInstances:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def renew(self, instance_id: str, dead_after: timedelta) -> bool:
        alive = await self._conn.scalar(
            instances.update()
            .where(
                instances.c.id == instance_id,
                instances.c.heartbeat_at > sa.func.now() - dead_after,
            )
            .values(heartbeat_at=sa.func.now())
            .returning(instances.c.id)
        )
        return alive is not None

    async def join(self, instance_id: str) -> None:
        await self._conn.execute(instances.insert().values(id=instance_id))

    async def forget_dead(self, dead_after: timedelta) -> None:
        await self._conn.execute(
            instances.delete().where(instances.c.heartbeat_at < sa.func.now() - dead_after)
        )

    async def leave(self, instance_ids: Collection[str]) -> None:
        await self._conn.execute(instances.delete().where(instances.c.id.in_(list(instance_ids))))


class SqlOffices:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def replace(self, jurisdiction: str, listed: Sequence[Office]) -> None:
        await self._conn.execute(offices.delete().where(offices.c.jurisdiction == jurisdiction))
        if listed:
            await self._conn.execute(
                offices.insert(),
                [
                    {"jurisdiction": jurisdiction, "code": o.code, "name": o.name, "email": o.email}
                    for o in listed
                ],
            )

    async def find(self, jurisdiction: str | None, code: str) -> Office | None:
        in_jurisdiction = [offices.c.jurisdiction == jurisdiction] if jurisdiction else []
        row = (
            await self._conn.execute(
                sa.select(offices.c.code, offices.c.name, offices.c.email)
                .where(offices.c.code == code, *in_jurisdiction)
                .limit(1)
            )
        ).first()
        return Office(row.code, row.name, row.email) if row else None


class SqlJurisdictions:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def city(self, jurisdiction: str | None) -> City:
        if not jurisdiction:
            return City()
        row = (
            await self._conn.execute(
                sa.select(jurisdictions.c.name, jurisdictions.c.sender_name).where(
                    jurisdictions.c.code == jurisdiction
                )
            )
        ).first()
        return City(row.name, row.sender_name) if row else City()

    async def _upsert(self, jurisdiction: str, column: str, value: str | None) -> None:
        upsert = pg.insert(jurisdictions).values({"code": jurisdiction, column: value})
        await self._conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[jurisdictions.c.code], set_={column: upsert.excluded[column]}
            )
        )

    async def set_name(self, jurisdiction: str, name: str) -> None:
        await self._upsert(jurisdiction, "name", name)

    async def set_sender_name(self, jurisdiction: str, sender_name: str | None) -> None:
        await self._upsert(jurisdiction, "sender_name", sender_name)

    async def record_reports(self, jurisdiction_of: Mapping[UUID, str]) -> None:
        if jurisdiction_of:
            await self._conn.execute(
                sa.text(
                    "INSERT INTO notifier.report_jurisdictions (report_id, jurisdiction)"
                    " SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:codes AS text[]))"
                    " ON CONFLICT DO NOTHING"
                ),
                {"ids": list(jurisdiction_of), "codes": list(jurisdiction_of.values())},
            )


def _subscription(row: Any) -> AlertSubscription:
    point = (row.lat, row.long, row.radius_m) if row.lat is not None else None
    return AlertSubscription(
        id=row.id,
        email=row.email,
        locale=row.locale,
        confirm_token=row.confirm_token,
        unsubscribe_token=row.unsubscribe_token,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        service_code=row.service_code,
        area_code=row.area_code,
        jurisdiction=row.jurisdiction,
        point=point,
    )


#: See AlertSubscriptions.queue_alerts_to_confirmed_subscriptions_covering (equirectangular
#: distance: exact enough in a city).
_QUEUE_ALERTS = sa.text(
    "INSERT INTO notifier.notifications"
    " (event_id, report_id, subscription_id, channel, event, state)"
    " SELECT e.event_id, e.report_id, s.id, 'alert', e.event, 'pending'"
    " FROM jsonb_to_recordset(CAST(:events AS jsonb)) AS e(event_id uuid, report_id uuid,"
    "      jurisdiction text, service_code text, lat float8, long float8, area_codes jsonb,"
    "      event jsonb)"
    " JOIN notifier.alert_subscriptions s ON s.confirmed_at IS NOT NULL"
    "  AND (s.jurisdiction IS NULL OR e.jurisdiction IS NULL OR s.jurisdiction = e.jurisdiction)"
    "  AND (s.service_code IS NULL OR s.service_code = e.service_code)"
    "  AND (s.area_code IN (SELECT jsonb_array_elements_text(e.area_codes))"
    "       OR 6371008.8 * sqrt(power(radians(e.lat - s.lat), 2)"
    "          + power(cos(radians((e.lat + s.lat) / 2)) * radians(e.long - s.long), 2))"
    "          <= s.radius_m)"
    " ON CONFLICT DO NOTHING"
)


class SqlAlertSubscriptions:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, request: AlertRequest, confirm_token: str, unsubscribe_token: str) -> None:
        lat, long, radius_m = request.point or (None, None, None)
        await self._conn.execute(
            alert_subscriptions.insert().values(
                email=request.email,
                locale=request.locale,
                service_code=request.service_code,
                area_code=request.area_code,
                jurisdiction=request.jurisdiction,
                lat=lat,
                long=long,
                radius_m=radius_m,
                confirm_token=confirm_token,
                unsubscribe_token=unsubscribe_token,
            )
        )

    async def unconfirmed_since(self, email: str, since: datetime) -> int:
        s = alert_subscriptions
        count = await self._conn.scalar(
            sa.select(sa.func.count()).where(
                sa.func.lower(s.c.email) == email.lower(),
                s.c.confirmed_at.is_(None),
                s.c.created_at > since,
            )
        )
        return int(count or 0)

    async def _one(self, condition: sa.ColumnElement[bool]) -> AlertSubscription | None:
        row = (await self._conn.execute(sa.select(alert_subscriptions).where(condition))).first()
        return _subscription(row) if row else None

    async def by_confirm_token(self, token: str) -> AlertSubscription | None:
        return await self._one(alert_subscriptions.c.confirm_token == token)

    async def by_unsubscribe_token(self, token: str) -> AlertSubscription | None:
        return await self._one(alert_subscriptions.c.unsubscribe_token == token)

    async def confirm(self, confirm_token: str, at: datetime) -> bool:
        s = alert_subscriptions
        confirmed = await self._conn.execute(
            s.update()
            .where(s.c.confirm_token == confirm_token)
            .values(confirmed_at=sa.func.coalesce(s.c.confirmed_at, at))
        )
        return bool(confirmed.rowcount)

    async def delete(self, unsubscribe_token: str) -> bool:
        deleted = await self._conn.execute(
            alert_subscriptions.delete().where(
                alert_subscriptions.c.unsubscribe_token == unsubscribe_token
            )
        )
        return bool(deleted.rowcount)

    async def delete_unconfirmed_created_before(self, cutoff: datetime) -> int:
        deleted = await self._conn.execute(
            alert_subscriptions.delete().where(
                alert_subscriptions.c.confirmed_at.is_(None),
                alert_subscriptions.c.created_at < cutoff,
            )
        )
        return int(deleted.rowcount)

    async def queue_alerts_to_confirmed_subscriptions_covering(
        self, reports: Sequence[ReportRouted]
    ) -> int:
        if not reports:
            return 0
        rows = [
            {
                "event_id": str(e.event_id),
                "report_id": str(e.report_id),
                "jurisdiction": e.jurisdiction,
                "service_code": e.service_code,
                "lat": e.lat,
                "long": e.long,
                "area_codes": [a.code for a in e.areas],
                "event": e.model_dump(mode="json"),
            }
            for e in reports
        ]
        queued = await self._conn.execute(_QUEUE_ALERTS, {"events": json.dumps(rows)})
        return int(queued.rowcount)


class SqlUnitOfWork:
    """The repositories over one connection (in one transaction, unless autocommitted)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self.inbox = SqlInbox(connection)
        self.contacts = SqlContacts(connection)
        self.status_changes = SqlStatusChanges(connection)
        self.notifications = SqlNotificationQueue(connection)
        self.instances = SqlInstances(connection)
        self.offices = SqlOffices(connection)
        self.jurisdictions = SqlJurisdictions(connection)
        self.alerts = SqlAlertSubscriptions(connection)


class SqlUnitOfWorkFactory:
    """Opens a unit of work: a transaction, committed when the block ends without an exception.
    With ``autocommit`` each statement commits by itself (one round trip, no BEGIN and COMMIT
    around it): for single statements whose effect must not wait for anything else."""

    def __init__(self, engine: AsyncEngine, *, autocommit: bool = False) -> None:
        self._engine = engine
        self._autocommit = autocommit
        self._autocommitting = engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[SqlUnitOfWork]:
        if self._autocommit:
            async with self._autocommitting.connect() as conn:
                yield SqlUnitOfWork(conn)
        else:
            async with self._engine.begin() as conn:
                yield SqlUnitOfWork(conn)
