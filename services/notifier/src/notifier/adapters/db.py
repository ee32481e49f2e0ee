"""The notifier's tables (schema ``notifier``): contacts, the status events they hear about, and
one notification per event × contact × channel."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from mm_shared.outbox import inbox_table

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
