"""The notifier's use cases: remember contacts, turn status changes into notifications, deliver
them — e-mail to each contact, and one signed webhook per change. They work through the ports
(``notifier.ports``): which contact hears of which change, and what becomes of a failed
delivery, are decided here and in ``notifier.domain``, not in SQL."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import os
import secrets
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prometheus_client import Counter, Histogram

from mm_shared.events import (
    JurisdictionBoundaryChanged,
    OfficeDirectoryChanged,
    OfficeReminderDue,
    ReporterContactSubmitted,
    ReportEvent,
    ReportRouted,
    ReportStatus,
    ReportStatusChanged,
)
from notifier import domain
from notifier.domain import (
    ALERT,
    CLOSED_STATUSES,
    OFFICE,
    UNCONFIRMED_COUNTED_FOR,
    UNCONFIRMED_KEPT,
    WEBHOOK,
    AlertRequest,
    AlertSubscription,
    Claimed,
    Mail,
    NewContact,
    Office,
    Outcome,
    ParkedNotification,
    Preference,
    StatusChange,
    hears_about,
    wants,
)
from notifier.mails import Mails
from notifier.ports import HookSender, MailSender, UnitOfWork, UnitOfWorkFactory
from notifier.settings import NotifierSettings

log = logging.getLogger(__name__)

NOTIFICATIONS = Counter(
    "mm_notifications_total", "Notifications by channel and outcome", ["channel", "outcome"]
)
DELIVERY_LATENCY = Histogram(
    "mm_notification_delivery_seconds",
    "From the status change to the delivered notification",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


async def record_contacts(uow: UnitOfWork, events: Sequence[ReporterContactSubmitted]) -> None:
    """Reporters (or followers): tell them of every change from their subscription on —
    including changes that reached us before their contact did. A contact event seen before
    (redelivered, or re-announced by intake after a broker lost messages) is dropped by its
    event id, also when its contact was erased meanwhile."""
    fresh_ids = await uow.inbox.first_deliveries([e.event_id for e in events])
    fresh = [e for e in events if e.event_id in fresh_ids]
    if not fresh:
        return
    added = await uow.contacts.add(
        [
            NewContact(
                report_id=e.report_id,
                email=str(e.email),
                first_name=e.first_name,
                last_name=e.last_name,
                locale=e.locale,
                preference=Preference.EVERY_CHANGE,
                unsubscribe_token=secrets.token_urlsafe(24),
                subscribed_at=e.occurred_at,
                reporter_token=e.reporter_token,
            )
            for e in fresh
        ]
    )
    if added:
        changes_of = defaultdict(list)
        for change in await uow.status_changes.of_reports({c.report_id for c in added}):
            changes_of[change.report_id].append(change)
        await uow.notifications.queue(
            [
                domain.mail_to_contact(change, contact)
                for contact in added
                for change in changes_of[contact.report_id]
                if hears_about(contact, change)
            ]
        )


async def record_status_changes(
    uow: UnitOfWork, events: Sequence[ReportStatusChanged], with_webhook: bool
) -> None:
    """Queue one notification per contact and channel (a redelivery adds nothing). A report
    merged as a duplicate hands its reporters on to the original."""
    fresh_ids = await uow.inbox.first_deliveries([e.event_id for e in events])
    fresh = [e for e in events if e.event_id in fresh_ids]
    if not fresh:
        return
    changes = [
        StatusChange(e.event_id, e.report_id, e.occurred_at, e.model_dump_json()) for e in fresh
    ]
    await uow.status_changes.add(changes)
    contacts = await uow.contacts.of_reports({e.report_id for e in fresh})
    contacts_of = defaultdict(list)
    for contact in contacts:
        contacts_of[contact.report_id].append(contact)
    due = [
        domain.mail_to_contact(change, contact)
        for change in changes
        for contact in contacts_of[change.report_id]
        if hears_about(contact, change)
    ]
    if with_webhook:
        due += [domain.to_nobody(change, WEBHOOK) for change in changes]
    # The office hears that the reporter says it is not fixed.
    due += [
        domain.to_nobody(change, OFFICE)
        for change, event in zip(changes, fresh, strict=True)
        if event.reopened_by_reporter
    ]
    await uow.notifications.queue(due)
    handed_on = [
        domain.handed_on(contact, event.duplicate_of, event.occurred_at)
        for event in fresh
        if event.status is ReportStatus.DUPLICATE and event.duplicate_of is not None
        for contact in contacts_of[event.report_id]
    ]
    if handed_on:
        await uow.contacts.add(handed_on)


async def record_routed(uow: UnitOfWork, events: Sequence[ReportRouted]) -> int:
    """New reports (their first routing: not a staff override, and a re-announcement is the
    same event) become alerts to the subscriptions that cover them. Returns how many."""
    first = [e for e in events if not e.override]
    fresh_ids = await uow.inbox.first_deliveries([e.event_id for e in first])
    fresh = [e for e in first if e.event_id in fresh_ids]
    if not fresh:
        return 0
    return await uow.alerts.queue_alerts_to_confirmed_subscriptions_covering(fresh)


async def record_report_jurisdictions(uow: UnitOfWork, events: Sequence[ReportEvent]) -> None:
    """Each report's jurisdiction, from the first event that names it (the events of one
    report agree on it; a reporter's contact may come without it)."""
    named = {e.report_id: e.jurisdiction for e in events if e.jurisdiction}
    if named:
        await uow.jurisdictions.record_reports(named)


async def record_batch(
    unit_of_work: UnitOfWorkFactory,
    events: Sequence[ReporterContactSubmitted | ReportStatusChanged | ReportRouted],
    with_webhook: bool,
) -> None:
    """A consumed batch of contacts, status changes and new reports, in one transaction."""
    async with unit_of_work() as uow:
        await record_report_jurisdictions(uow, events)
        await record_routed(uow, [e for e in events if isinstance(e, ReportRouted)])
        await record_contacts(uow, [e for e in events if isinstance(e, ReporterContactSubmitted)])
        await record_status_changes(
            uow, [e for e in events if isinstance(e, ReportStatusChanged)], with_webhook
        )


CONTACTS_ERASED = Counter(
    "mm_contacts_erased_total", "Reporters' contact data erased after the retention period"
)


async def erase_expired_contacts(
    unit_of_work: UnitOfWorkFactory, retention: timedelta, now: datetime | None = None
) -> int:
    """Erase the contact data of reports closed longer than ``retention`` ago (storage
    limitation, GDPR Art. 5(1)(e)): the addresses, names, and the notifications sent to them.
    A contact with a delivery still under way waits for the next sweep; a report reopened
    after that is not told to anybody any more. Subscriptions to alerts nobody confirmed are
    no consent: they go after a week. Returns how many contacts were erased."""
    now = now or datetime.now(UTC)
    async with unit_of_work() as uow:
        expired = await uow.contacts.of_reports_closed_before(now - retention, CLOSED_STATUSES)
        erased = await uow.contacts.erase(expired)
        await uow.alerts.delete_unconfirmed_created_before(now - UNCONFIRMED_KEPT)
    CONTACTS_ERASED.inc(erased)
    return erased


CONTACTS_ERASED_ON_REQUEST = Counter(
    "mm_contacts_erased_on_request_total", "Reporters' contact data erased at their request"
)


class WrongReporterToken(PermissionError):
    pass


async def erase_reporter_contact(
    unit_of_work: UnitOfWorkFactory, report_id: UUID, token: str
) -> bool:
    """The reporter asks to erase their contact data (GDPR Art. 17): their address and name,
    the notifications due or sent to them (also those as a follower of the report theirs was
    merged into). The report itself is intake's and stays, without them. False if this report
    has no reporter's contact (any more); WrongReporterToken if the token is not theirs."""
    async with unit_of_work() as uow:
        reporters = await uow.contacts.reporters_of(report_id)
        if not reporters:
            return False
        theirs = [
            c
            for c in reporters
            if hmac.compare_digest((c.reporter_token or "").encode(), token.encode())
        ]
        if not theirs:
            raise WrongReporterToken(report_id)
        # Handed on to the original when this report was merged as a duplicate.
        originals = await uow.status_changes.originals_of(report_id)
        copies = await uow.contacts.ids_with_unsubscribe_tokens(
            {domain.handed_on_token(c.unsubscribe_token, o) for c in theirs for o in originals}
        )
        erased = await uow.contacts.erase({c.id for c in theirs} | set(copies))
    CONTACTS_ERASED_ON_REQUEST.inc(erased)
    return True


async def preference_of(unit_of_work: UnitOfWorkFactory, token: str) -> Preference | None:
    """The reporter's choice for the report this link belongs to; None for an unknown link."""
    async with unit_of_work() as uow:
        return await uow.contacts.preference_of(token)


async def set_preference(
    unit_of_work: UnitOfWorkFactory, token: str, preference: Preference
) -> bool:
    async with unit_of_work() as uow:
        return await uow.contacts.set_preference(token, preference)


async def parked(unit_of_work: UnitOfWorkFactory, limit: int = 100) -> list[ParkedNotification]:
    async with unit_of_work() as uow:
        return await uow.notifications.parked(limit)


async def retry(unit_of_work: UnitOfWorkFactory, notification_id: int) -> bool:
    """Send a parked notification again (after the cause was fixed)."""
    async with unit_of_work() as uow:
        return await uow.notifications.retry_parked(notification_id)


async def record_office_directory(
    unit_of_work: UnitOfWorkFactory, event: OfficeDirectoryChanged
) -> None:
    """Where each office is reached, and the sender name of the jurisdiction's mails."""
    async with unit_of_work() as uow:
        await uow.jurisdictions.set_sender_name(event.jurisdiction, event.sender_name)
        await uow.offices.replace(
            event.jurisdiction, [Office(o.code, o.name, o.email) for o in event.offices]
        )


async def record_jurisdiction_boundary(
    unit_of_work: UnitOfWorkFactory, event: JurisdictionBoundaryChanged
) -> None:
    """The jurisdiction's name, for the wording of its mails (kept when it is retired: its
    reports' reporters still hear about them)."""
    async with unit_of_work() as uow:
        await uow.jurisdictions.set_name(event.jurisdiction, event.name)


async def send_office_reminder(
    unit_of_work: UnitOfWorkFactory, sender: MailSender, mails: Mails, event: OfficeReminderDue
) -> None:
    """The daily summary to the office's address. The inbox row commits only after the mail
    was accepted, so a failure is retried by redelivery (at worst one summary twice)."""
    async with unit_of_work() as uow:
        if not await uow.inbox.first_delivery(event.event_id):
            return
        office = await uow.offices.find(event.jurisdiction, event.office_code)
        if office is None:
            log.warning("no address for office %s: reminder dropped", event.office_code)
            return
        city = await uow.jurisdictions.city(event.jurisdiction)
        await sender.send(mails.office_reminder(event, office, city))
    NOTIFICATIONS.labels("office_reminder", "sent").inc()


# Area alerts: new reports in an area, by e-mail, to whoever subscribed and confirmed.


class TooManyUnconfirmed(Exception):
    """The address has asked for several alerts lately without confirming one: no more mails
    to it for now (else anybody could make us mail anybody)."""


async def subscribe_to_alerts(
    unit_of_work: UnitOfWorkFactory,
    sender: MailSender,
    mails: Mails,
    request: AlertRequest,
    now: datetime | None = None,
) -> None:
    """A subscription waiting for its confirmation (double opt-in): it is stored, and the mail
    asking to confirm it is sent, before the caller is answered. Unconfirmed, it is deleted
    after a week."""
    now = now or datetime.now(UTC)
    confirm_token = secrets.token_urlsafe(24)
    async with unit_of_work() as uow:
        lately = await uow.alerts.unconfirmed_since(request.email, now - UNCONFIRMED_COUNTED_FOR)
        if not domain.may_ask_to_confirm(lately):
            raise TooManyUnconfirmed(request.email)
        await uow.alerts.add(request, confirm_token, secrets.token_urlsafe(24))
        city = await uow.jurisdictions.city(request.jurisdiction)
        # Inside the unit of work: a mail that could not be sent leaves no subscription behind.
        await sender.send(mails.alert_confirmation(request, confirm_token, city))


async def alert_subscription(
    unit_of_work: UnitOfWorkFactory, *, confirm_token: str = "", unsubscribe_token: str = ""
) -> AlertSubscription | None:
    """The subscription a confirm or unsubscribe link belongs to, or None."""
    async with unit_of_work() as uow:
        if confirm_token:
            return await uow.alerts.by_confirm_token(confirm_token)
        return await uow.alerts.by_unsubscribe_token(unsubscribe_token)


async def confirm_alerts(
    unit_of_work: UnitOfWorkFactory, confirm_token: str, now: datetime | None = None
) -> bool:
    async with unit_of_work() as uow:
        return await uow.alerts.confirm(confirm_token, now or datetime.now(UTC))


async def unsubscribe_alerts(unit_of_work: UnitOfWorkFactory, unsubscribe_token: str) -> bool:
    """The subscription is deleted, with the alerts still due to it."""
    async with unit_of_work() as uow:
        return await uow.alerts.delete(unsubscribe_token)


# Delivering the queue.

CLAIMS_RELEASED = Counter(
    "mm_notification_claims_released_total",
    "Claimed notifications taken back from notifier instances that stopped heartbeating",
)


def new_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class OutcomesUnrecorded(Exception):
    """The database did not take the outcomes: they are kept to be recorded later."""


class _GroupRecorder:
    """Outcomes of the workers recorded together: each statement records every outcome
    waiting when it starts. One statement at a time while commits are quick: every outcome
    that arrives meanwhile joins the next, so the statements (and PostgreSQL's work for
    them) are few. Once every statement running has run for ``overlap_after_s`` (a slow
    disk's commit), another starts beside them, up to ``concurrency`` at once: one at a time,
    every connection behind such a commit would wait for it (and PostgreSQL flushes the log
    of concurrent commits together anyway)."""

    def __init__(
        self,
        record: Callable[[list[Outcome]], Awaitable[None]],
        concurrency: int,
        overlap_after_s: float = 0.005,
    ) -> None:
        self._record = record
        self._concurrency = concurrency
        self._overlap_after_s = overlap_after_s
        self._waiting: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        #: When (event loop time) each flushing task's statement started, while it runs.
        self._running: dict[asyncio.Task[None], float] = {}
        #: Looks again once the newest statement running has run for ``overlap_after_s``.
        self._recheck: asyncio.TimerHandle | None = None

    def record(self, outcome: Outcome) -> asyncio.Future[None]:
        """Done once the outcome is recorded (OutcomesUnrecorded if it could not be). A
        future rather than a coroutine: outcomes share the few flushing tasks instead of
        each needing a task of its own."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((outcome, done))
        self._start_if_due()
        return done

    def _start_if_due(self) -> None:
        """A flush for the outcomes waiting: the first, or one more beside statements that
        have all run too long; otherwise a look again when the newest will have."""
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        newest = max(self._running.values(), default=None)
        slow_since = None if newest is None else newest + self._overlap_after_s
        if not self._flushing or (
            len(self._flushing) < self._concurrency
            and slow_since is not None
            and loop.time() >= slow_since
        ):
            task = asyncio.create_task(self._flush())
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        elif (
            slow_since is not None
            and len(self._flushing) < self._concurrency
            and self._recheck is None
        ):
            self._recheck = loop.call_at(slow_since, self._rechecked)

    def _rechecked(self) -> None:
        self._recheck = None
        self._start_if_due()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None, "flushes run as tasks"
        try:
            while self._waiting:
                if any(
                    loop.time() - started < self._overlap_after_s
                    for task, started in self._running.items()
                    if task is not me
                ):
                    # Another statement runs, and not for long: the outcomes waiting join
                    # its next one (commits are quick again: back to one at a time), or one
                    # more starts should it turn slow.
                    self._start_if_due()
                    break
                batch, self._waiting = self._waiting, []
                if self._recheck is not None:
                    self._recheck.cancel()
                    self._recheck = None
                self._running[me] = loop.time()
                try:
                    await self._record([outcome for outcome, _ in batch])
                except BaseException as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(OutcomesUnrecorded(repr(exc)))
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                finally:
                    del self._running[me]
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            # At once, not by the task's done callback, which runs only later: an outcome
            # submitted meanwhile by a connection just woken by this flush would find this
            # flush still counted, and wait for no flush at all.
            self._flushing.discard(me)


class Dispatcher:
    """Delivers pending notifications over several connections at once. Failures back off and
    are parked after ``max_attempts`` without holding up the others.

    Each dispatcher is one instance: it heartbeats and claims under its id. It claims and
    sends only while its lease holds, half of ``instance_dead_after_s`` from the start of its
    last successful heartbeat (local monotonic time), while the others release its claims only
    once its heartbeat is older than the whole of it (database time): a live instance is never
    released while it may still send. One that lost its lease (the database away too long)
    comes back as a new instance, so that its old claims are released like a dead one's.

    ``statements`` opens the units of work that record outcomes: each one statement, best
    autocommitted (one round trip, no BEGIN and COMMIT around it). ``clock`` tells the time
    claims are due by and retries are set from."""

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        mail_senders: list[MailSender],
        hook_sender: HookSender | None,
        settings: NotifierSettings,
        *,
        statements: UnitOfWorkFactory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._unit_of_work = unit_of_work
        self._statements = statements or unit_of_work
        self._clock = clock
        self._mail_senders = mail_senders
        self._hook_sender = hook_sender
        self._settings = settings
        self._mails = Mails(settings.public_base_url, settings.tracking_base_url)
        self._wakeup = asyncio.Event()
        self.instance_id = new_instance_id()
        #: Every id this process has had: its claims under a former one are still its own.
        self._ids = [self.instance_id]
        #: Outcomes the database could not take when they happened (by notification id):
        #: recorded before anything else, never sent again meanwhile.
        self._unsettled: dict[int, Outcome] = {}
        self._outcomes = _GroupRecorder(
            self._record_or_keep, concurrency=max(1, len(mail_senders) // 2)
        )
        #: Until when (event loop time) this instance may claim and send.
        self._lease_until: float | None = None
        #: Closes the senders' connections at shutdown.
        self.closers: list[Callable[[], Awaitable[None]]] = []

    def notify(self) -> None:
        self._wakeup.set()

    def _leased(self) -> bool:
        loop = asyncio.get_running_loop()
        return self._lease_until is not None and loop.time() < self._lease_until

    async def heartbeat(self) -> None:
        """Tell the other instances this one is alive (renewing the lease), then take back the
        claims of instances that are not."""
        s = self._settings
        started = asyncio.get_running_loop().time()
        dead_after = timedelta(seconds=s.instance_dead_after_s)
        async with self._unit_of_work() as uow:
            if not await uow.instances.renew(self.instance_id, dead_after):
                if self._lease_until is not None:
                    log.warning("instance %s lost its lease; rejoining anew", self.instance_id)
                    self.instance_id = new_instance_id()
                    self._ids.append(self.instance_id)
                await uow.instances.join(self.instance_id)
        self._lease_until = started + s.instance_dead_after_s / 2
        # Before anybody's claims are released: ours may be among them under a former id.
        await self._settle()
        await self.release_claims_of_dead_instances()

    async def release_claims_of_dead_instances(self) -> int:
        """Claims of instances silent for ``instance_dead_after_s`` (killed, cut off) go back
        to the queue; returns how many."""
        dead_after = timedelta(seconds=self._settings.instance_dead_after_s)
        async with self._unit_of_work() as uow:
            released = await uow.notifications.release_claims_of_dead_instances(dead_after)
            await uow.instances.forget_dead(dead_after)
        if released:
            CLAIMS_RELEASED.inc(released)
            log.warning("released %d claims of notifier instances gone", released)
        return released

    async def leave(self) -> None:
        """On shutdown: give back this instance's claims at once (no need to wait until it
        counts as dead), after recording what it kept."""
        with contextlib.suppress(Exception):
            await self._settle()
        async with self._unit_of_work() as uow:
            await uow.notifications.give_back_claims_of(self._ids, keeping=list(self._unsettled))
            await uow.instances.leave(self._ids)

    async def deliver_due(self, *, refill: bool = False) -> int:
        """Claim a batch of due notifications, deliver them over several connections at once,
        and record each outcome before that connection's next mail goes out for good. Returns
        how many were claimed.

        With ``refill`` (the run loop's way) the next batch is claimed while the last mails of
        this one go out, for as long as claims come back full: the connections do not stand
        idle while a claim's transaction runs."""
        await self._settle()
        if not self._leased():
            return 0
        size = 25 * len(self._mail_senders)
        claimed = await self._claim(size)
        total = len(claimed)
        queue = collections.deque(claimed)
        more = refill and total == size
        refilling: asyncio.Task[list[Claimed]] | None = None

        def refilled(task: asyncio.Task[list[Claimed]]) -> None:
            nonlocal refilling, more, total
            refilling = None
            if task.cancelled() or task.exception() is not None:
                # The next round claims again (and says why it cannot).
                more = False
                return
            fresh = task.result()
            queue.extend(fresh)
            total += len(fresh)
            more = len(fresh) == size

        async def next_claim() -> Claimed | None:
            """The next notification to send; None once there is none or sending must stop:
            without the lease the rest stays claimed (the others may be releasing it), and
            with an outcome unrecorded the database is away (no more sending until it is
            back)."""
            nonlocal refilling
            while self._leased() and not self._unsettled:
                if more and refilling is None and len(queue) <= size // 2:
                    refilling = asyncio.create_task(self._claim(size))
                    refilling.add_done_callback(refilled)
                if queue:
                    return queue.popleft()
                if refilling is None:
                    return None
                # Not cancelled with this worker: a claim cancelled during its COMMIT may have
                # taken rows without this instance knowing which.
                await asyncio.wait({refilling})
            return None

        async def worker(sender: MailSender) -> None:
            # The previous outcome is recorded while the next mail's envelope goes out, and
            # waited for before the server takes that mail: a crash repeats at most the mail
            # in flight on each connection.
            recording: asyncio.Future[None] | None = None

            async def previous_outcome_recorded() -> None:
                nonlocal recording
                if recording is not None:
                    recorded, recording = recording, None
                    await recorded

            try:
                while (claim := await next_claim()) is not None:
                    try:
                        outcome = await self._attempt(claim, sender, previous_outcome_recorded)
                    except OutcomesUnrecorded:
                        log.warning("notification %s not sent: database away", claim.id)
                        self._unsettled[claim.id] = domain.given_back(claim.id)
                        break
                    except Exception as exc:
                        # Cannot even be attempted (a bug, bad data): parked, never blocking.
                        log.exception("notification %s parked", claim.id)
                        outcome = domain.unattemptable(claim.id, repr(exc))
                    try:
                        await previous_outcome_recorded()
                    except OutcomesUnrecorded:
                        self._unsettled[claim.id] = outcome
                        break
                    recording = self._outcomes.record(outcome)
            finally:
                try:
                    await previous_outcome_recorded()
                except OutcomesUnrecorded:
                    log.warning("outcomes kept to record once the database is back")

        try:
            await asyncio.gather(*(worker(s) for s in self._mail_senders))
        finally:
            if refilling is not None:
                # Also when cancelled: a claim under way commits anyway, and what it took must
                # be this instance's before its claims are handed back on the way out.
                await asyncio.wait({refilling})
        if self._leased():
            # Claimed but not attempted (the database went away): back to the queue.
            for claim in queue:
                self._unsettled[claim.id] = domain.given_back(claim.id)
            queue.clear()
        with contextlib.suppress(Exception):
            await self._settle()
        return total

    async def _claim(self, limit: int) -> list[Claimed]:
        async with self._unit_of_work() as uow:
            return await uow.notifications.claim_due_in_order_per_recipient(
                self.instance_id, limit, self._clock()
            )

    async def _compose(self, claim: Claimed) -> Mail | None:
        """The mail a notification stands for; None if it is not to be sent (the recipient
        does not want it, or the office has no address)."""
        if claim.channel == ALERT:
            return self._mails.alert(ReportRouted.model_validate(claim.event), claim)
        event = ReportStatusChanged.model_validate(claim.event)
        if claim.channel == OFFICE:
            return await self._office_mail(event, claim)
        if not wants(Preference(claim.preference or ""), event.status):
            return None
        return self._mails.status_changed(event, claim)

    async def _office_mail(self, event: ReportStatusChanged, claim: Claimed) -> Mail | None:
        """To the office a reporter sent their report back to, from the office directory
        (office codes are unique within a jurisdiction only)."""
        if event.office is None:
            return None
        async with self._unit_of_work() as uow:
            office = await uow.offices.find(claim.jurisdiction, event.office.code)
        if office is None:
            log.warning("no address for office %s: reopening not mailed", event.office.code)
            return None
        return self._mails.office_reopened(event, office, claim)

    async def _attempt(
        self, claim: Claimed, mail_sender: MailSender, ready: Callable[[], Awaitable[None]]
    ) -> Outcome:
        """Deliver one notification (``ready`` awaited before it goes out for good); returns
        its outcome. Raises what ``ready`` raises (then nothing was sent)."""
        channel = claim.channel
        try:
            if channel == WEBHOOK:
                assert self._hook_sender is not None, "webhook not configured"
                await ready()
                await self._hook_sender.send(claim.event, str(claim.event["event_id"]))
            else:
                mail = await self._compose(claim)
                if mail is None:
                    NOTIFICATIONS.labels(channel, "skipped").inc()
                    return domain.skipped(claim.id)
                await mail_sender.send(mail, ready)
        except OutcomesUnrecorded:
            raise
        except Exception as exc:
            outcome = domain.failed(claim, repr(exc), self._clock(), self._settings.max_attempts)
            parked = outcome.state == "parked"
            NOTIFICATIONS.labels(channel, "parked" if parked else "failed").inc()
            log.warning("%s %s failed (attempt %d): %r", channel, claim.id, outcome.attempts, exc)
            return outcome
        now = self._clock()
        NOTIFICATIONS.labels(channel, "sent").inc()
        occurred_at = datetime.fromisoformat(claim.event["occurred_at"])
        DELIVERY_LATENCY.labels(channel).observe((now - occurred_at).total_seconds())
        return domain.sent(claim.id, now)

    async def _record_or_keep(self, outcomes: list[Outcome]) -> None:
        """Record outcomes right after their attempts, with those of the other connections
        finished meanwhile. Should the database be away, they are kept and recorded once it
        is back (so that a sent mail is not sent again), and the error raised."""
        try:
            await self._record(outcomes)
        except BaseException:
            for outcome in outcomes:
                self._unsettled[outcome.notification_id] = outcome
            raise

    async def _settle(self) -> None:
        """Record the outcomes kept while the database was away (raises while it still is)."""
        if not self._unsettled:
            return
        kept = dict(self._unsettled)
        await self._record(list(kept.values()))
        for notification_id, outcome in kept.items():
            # The heartbeat may have settled it meanwhile, or a newer outcome replaced it.
            if self._unsettled.get(notification_id) is outcome:
                del self._unsettled[notification_id]

    async def _record(self, outcomes: list[Outcome]) -> None:
        async with self._statements() as uow:
            await uow.notifications.record_outcomes(outcomes, self._ids)

    async def _keep_heartbeat(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except Exception:
                log.exception("notifier heartbeat failed; trying again")
            await asyncio.sleep(self._settings.instance_heartbeat_interval_s)

    async def run(self, poll_interval_s: float = 0.5) -> None:
        """Deliver due notifications; woken by new ones of this process, and polling for the
        rest (retries, other instances' released claims): every ``poll_interval_s`` while
        there is work, doubling up to ``idle_poll_interval_s`` while there is none."""
        heartbeat = asyncio.create_task(self._keep_heartbeat())
        idle_poll_interval_s = max(self._settings.idle_poll_interval_s, poll_interval_s)
        wait_s = poll_interval_s
        try:
            while True:
                # Cleared before delivering: a notify() meanwhile then ends the wait below at
                # once instead of being lost until the next poll.
                self._wakeup.clear()
                try:
                    delivered = False
                    while await self.deliver_due(refill=True):
                        delivered = True
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("notification dispatch failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
                wait_s = poll_interval_s if delivered else min(idle_poll_interval_s, 2 * wait_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait_s)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.leave(), 5)
