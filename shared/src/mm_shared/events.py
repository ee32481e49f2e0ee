"""Event contracts v1: the one interface between the services.

Every event travels as JSON on its own topic, keyed by the report id so that all events of one
report stay ordered within a partition. Envelope fields (event id, type, schema version,
correlation id, time) are part of the body *and* copied into Kafka headers so that tooling can
route or filter without parsing the body.

Compatibility rule: within a schema version only optional fields may be added; consumers ignore
fields they do not know. Anything else is a new version on a new topic (``….v2``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, EmailStr, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Topic(StrEnum):
    """Every topic of the platform. Producer and consumers are listed in docs/architecture.md."""

    REPORT_SUBMITTED = "reports.submitted.v1"
    REPORTER_CONTACT = "private.reporter-contacts.v1"
    REPORT_ROUTED = "reports.routed.v1"
    REPORT_ROUTING_FAILED = "reports.routing-failed.v1"
    REPORT_STATUS_CHANGED = "reports.status-changed.v1"
    REPORT_REASSIGNED = "reports.reassigned.v1"
    ROUTING_CONFIG_CHANGED = "geo.routing-config-changed.v1"
    JURISDICTION_BOUNDARY = "geo.jurisdiction-boundaries.v1"
    OFFICE_DIRECTORY = "geo.office-directory.v1"
    OFFICE_REMINDER_DUE = "offices.reminders.v1"
    DEAD_LETTER = "dead-letter.v1"


#: Partitions per topic. Fixed at creation: the key → partition mapping depends on it.
TOPIC_PARTITIONS: dict[Topic, int] = {
    Topic.REPORT_SUBMITTED: 4,
    Topic.REPORTER_CONTACT: 4,
    Topic.REPORT_ROUTED: 4,
    Topic.REPORT_ROUTING_FAILED: 4,
    Topic.REPORT_STATUS_CHANGED: 4,
    Topic.REPORT_REASSIGNED: 4,
    Topic.ROUTING_CONFIG_CHANGED: 1,
    Topic.JURISDICTION_BOUNDARY: 1,
    Topic.OFFICE_DIRECTORY: 1,
    Topic.OFFICE_REMINDER_DUE: 1,
    Topic.DEAD_LETTER: 1,
}

#: Topics that keep only the latest event per key (Kafka log compaction).
COMPACTED_TOPICS = frozenset({Topic.JURISDICTION_BOUNDARY, Topic.OFFICE_DIRECTORY})


class Event(BaseModel):
    """Envelope common to all events."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: ClassVar[Topic]
    event_type: str
    schema_version: int = 1
    event_id: UUID = Field(default_factory=uuid4)
    correlation_id: UUID = Field(default_factory=uuid4)
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> bytes:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {
            "event_type": self.event_type,
            "schema_version": str(self.schema_version),
            "event_id": str(self.event_id),
            "correlation_id": str(self.correlation_id),
        }


class ReportEvent(Event):
    """An event about one report, keyed by its id so that a report's events stay in order."""

    report_id: UUID
    #: The jurisdiction the report belongs to (added within v1: events written before carry
    #: none, and mean the deployment's only jurisdiction of that time).
    jurisdiction: str | None = None

    @property
    def key(self) -> bytes:
        return str(self.report_id).encode()


class ReportStatus(StrEnum):
    RECEIVED = "received"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"

    @property
    def is_closed(self) -> bool:
        return self in {ReportStatus.RESOLVED, ReportStatus.REJECTED, ReportStatus.DUPLICATE}


#: How citizens and mails name each status.
STATUS_LABELS: dict[str, dict[ReportStatus, str]] = {
    "de": {
        ReportStatus.RECEIVED: "eingegangen",
        ReportStatus.ASSIGNED: "zugewiesen",
        ReportStatus.IN_PROGRESS: "in Bearbeitung",
        ReportStatus.RESOLVED: "erledigt",
        ReportStatus.REJECTED: "abgelehnt",
        ReportStatus.DUPLICATE: "mit einer gleichen Meldung zusammengeführt",
    },
    "en": {
        ReportStatus.RECEIVED: "received",
        ReportStatus.ASSIGNED: "assigned",
        ReportStatus.IN_PROGRESS: "in progress",
        ReportStatus.RESOLVED: "resolved",
        ReportStatus.REJECTED: "rejected",
        ReportStatus.DUPLICATE: "merged as a duplicate",
    },
}


class ReportSubmitted(ReportEvent):
    """A citizen's report was accepted by intake. Carries no personal data."""

    topic: ClassVar[Topic] = Topic.REPORT_SUBMITTED
    event_type: Literal["ReportSubmitted"] = "ReportSubmitted"
    jurisdiction: str
    service_code: str
    lat: float
    long: float
    submitted_at: datetime
    #: Set when intake re-publishes a report that was not routed in time; geo-router then
    #: re-announces a decision it already took instead of ignoring the duplicate.
    resubmission: bool = False


class ReporterContactSubmitted(ReportEvent):
    """Contact data of a reporter. Private topic: only the notifier may consume it."""

    topic: ClassVar[Topic] = Topic.REPORTER_CONTACT
    event_type: Literal["ReporterContactSubmitted"] = "ReporterContactSubmitted"
    email: EmailStr
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    locale: Literal["de", "en"] = "de"
    #: The reporter's own handle on the report (intake's HMAC of its id): their mails link
    #: the report with it, and it authorises reporter actions ("not fixed", erase my contact).
    #: None for followers, who did not file the report.
    reporter_token: str | None = None


class MatchedArea(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: str
    code: str
    name: str


class OfficeRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    name: str


class ReportRouted(ReportEvent):
    """Geo-router decided which office is responsible for a report, and why."""

    topic: ClassVar[Topic] = Topic.REPORT_ROUTED
    event_type: Literal["ReportRouted"] = "ReportRouted"
    office: OfficeRef
    areas: tuple[MatchedArea, ...]
    rule: str
    #: True when staff chose the office (ReportReassigned) rather than the rules.
    override: bool = False
    #: What and where, for subscribers to new reports in an area (the notifier's alerts).
    service_code: str | None = None
    lat: float | None = None
    long: float | None = None


class RoutingFailureReason(StrEnum):
    OUTSIDE_JURISDICTION = "outside_jurisdiction"
    NO_RESPONSIBLE_OFFICE = "no_responsible_office"
    UNKNOWN_JURISDICTION = "unknown_jurisdiction"


class ReportRoutingFailed(ReportEvent):
    topic: ClassVar[Topic] = Topic.REPORT_ROUTING_FAILED
    event_type: Literal["ReportRoutingFailed"] = "ReportRoutingFailed"
    reason: RoutingFailureReason
    detail: str


class ReportStatusChanged(ReportEvent):
    """The report's owner (intake) moved it to a new status, or (``note_only``) staff left a
    public note and kept the status. Public data only."""

    topic: ClassVar[Topic] = Topic.REPORT_STATUS_CHANGED
    event_type: Literal["ReportStatusChanged"] = "ReportStatusChanged"
    service_code: str
    previous_status: ReportStatus | None
    status: ReportStatus
    office: OfficeRef | None = None
    public_note: str | None = None
    changed_by: str
    #: With status ``duplicate``: the report this one was merged into. Its reporters follow
    #: that report from now on.
    duplicate_of: UUID | None = None
    #: Nothing changed but the ``public_note``: news for the reporter, no new status.
    note_only: bool = False
    #: The reporter said a resolved report is not fixed and reopened it: the office is told.
    reopened_by_reporter: bool = False


class ReportReassigned(ReportEvent):
    """Staff moved a report to another office; geo-router records it as an override of its
    rules and announces the new routing."""

    topic: ClassVar[Topic] = Topic.REPORT_REASSIGNED
    event_type: Literal["ReportReassigned"] = "ReportReassigned"
    jurisdiction: str
    office_code: str
    reassigned_by: str
    reason: str | None = None


class RoutingConfigChanged(Event):
    """Areas, offices or rules of a jurisdiction changed: every geo-router instance reloads."""

    topic: ClassVar[Topic] = Topic.ROUTING_CONFIG_CHANGED
    event_type: Literal["RoutingConfigChanged"] = "RoutingConfigChanged"
    jurisdiction: str

    @property
    def key(self) -> bytes:
        return self.jurisdiction.encode()


class JurisdictionBoundaryChanged(Event):
    """The outline of a jurisdiction (union of its areas), for intake's outside-the-city check.
    Compacted topic: the latest event per jurisdiction is the current boundary."""

    topic: ClassVar[Topic] = Topic.JURISDICTION_BOUNDARY
    event_type: Literal["JurisdictionBoundaryChanged"] = "JurisdictionBoundaryChanged"
    jurisdiction: str
    name: str
    version: str
    #: GeoJSON MultiPolygon geometry, WGS84 lon/lat.
    boundary: dict[str, Any]
    #: Where jurisdictions overlap, the higher precedence takes the report; on a tie, the
    #: smaller area (added within v1, from the manifest).
    precedence: int = 0
    #: Categories of the shared catalogue this jurisdiction does not take (added within v1).
    disabled_service_codes: tuple[str, ...] = ()
    #: The jurisdiction was retired: intake accepts no more reports there (added within v1).
    retired: bool = False

    @property
    def key(self) -> bytes:
        return self.jurisdiction.encode()


class OfficeContact(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    email: str


class OfficeDirectoryChanged(Event):
    """The offices of a jurisdiction and where they are reached. Compacted topic: the latest
    event per jurisdiction is the current directory."""

    topic: ClassVar[Topic] = Topic.OFFICE_DIRECTORY
    event_type: Literal["OfficeDirectoryChanged"] = "OfficeDirectoryChanged"
    jurisdiction: str
    offices: tuple[OfficeContact, ...]
    #: The sender name of the platform's mails about this jurisdiction's reports, e.g.
    #: "Mängelmelder Köln" (added within v1; None: the notifier's configured default).
    sender_name: str | None = None
    #: Public holidays the office reminders skip: the `holidays` package's country and
    #: subdivision codes, e.g. DE and SN (added within v1; None: the service's default).
    holidays_country: str | None = None
    holidays_subdivision: str | None = None

    @property
    def key(self) -> bytes:
        return self.jurisdiction.encode()


class OverdueTicket(BaseModel):
    model_config = ConfigDict(frozen=True)

    report_id: UUID
    service_code: str
    status: ReportStatus
    since: datetime
    days: float


class OfficeReminderDue(Event):
    """The daily summary of an office's tickets that wait too long (from intake, the owner of
    the tickets); the notifier mails it to the office."""

    topic: ClassVar[Topic] = Topic.OFFICE_REMINDER_DUE
    event_type: Literal["OfficeReminderDue"] = "OfficeReminderDue"
    jurisdiction: str
    office_code: str
    day: date
    not_accepted: tuple[OverdueTicket, ...]
    stalled: tuple[OverdueTicket, ...]
    #: Other open tickets past their category's service level (optional, added within v1).
    past_service_level: tuple[OverdueTicket, ...] = ()
    #: The thresholds the tickets were found overdue by (intake's settings), for the mail to
    #: name them (optional, added within v1; absent from earlier events).
    accept_within_working_days: int | None = None
    work_within_days: float | None = None

    @property
    def key(self) -> bytes:
        return self.office_code.encode()


ALL_EVENTS: tuple[type[Event], ...] = (
    ReportSubmitted,
    ReporterContactSubmitted,
    ReportRouted,
    ReportRoutingFailed,
    ReportStatusChanged,
    ReportReassigned,
    RoutingConfigChanged,
    JurisdictionBoundaryChanged,
    OfficeDirectoryChanged,
    OfficeReminderDue,
)
