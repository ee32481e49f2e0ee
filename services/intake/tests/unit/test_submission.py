"""Submitting a report: the jurisdiction it belongs to, what is refused, the events it stages,
and a retry under an Idempotency-Key. Against the fakes of tests/unit/conftest.py."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

import pytest

from intake import handlers
from intake.domain import Contact, InvalidReport, Report, ReporterTokens
from intake.ports import Outlines, SubmissionWriter, UnitOfWorkFactory
from mm_shared.events import Event, ReporterContactSubmitted, ReportStatus, ReportSubmitted

IN_LEIPZIG = (51.34, 12.37)
IN_SACHSEN = (51.05, 13.74)
NOWHERE = (48.14, 11.58)


def submission(
    at: tuple[float, float] = IN_LEIPZIG,
    *,
    jurisdiction: str | None = None,
    service_code: str = "001",
    description: str = "Schlagloch",
    contact: Contact | None = None,
) -> handlers.Submission:
    return handlers.Submission(
        jurisdiction=jurisdiction,
        service_code=service_code,
        lat=at[0],
        long=at[1],
        description=description,
        contact=contact,
        default_jurisdiction="leipzig",
    )


async def test_a_report_belongs_to_the_ranked_jurisdiction_that_covers_its_place(
    writer: SubmissionWriter,
    outlines: Outlines,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
) -> None:
    in_city = await handlers.submit_report(writer, outlines, tokens, submission(IN_LEIPZIG))
    in_land = await handlers.submit_report(writer, outlines, tokens, submission(IN_SACHSEN))
    named = await handlers.submit_report(
        writer, outlines, tokens, submission(IN_LEIPZIG, jurisdiction="sachsen")
    )
    assert (in_city.jurisdiction, in_land.jurisdiction) == ("leipzig", "sachsen")
    assert named.jurisdiction == "sachsen"  # a named one that covers the place is taken
    assert {r.jurisdiction for r in stored.values()} == {"leipzig", "sachsen"}
    assert len(stored) == 3


async def test_a_report_outside_every_jurisdiction_is_refused_and_not_stored(
    writer: SubmissionWriter,
    outlines: Outlines,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    with pytest.raises(handlers.OutsideJurisdiction) as outside:
        await handlers.submit_report(writer, outlines, tokens, submission(NOWHERE))
    assert "Leipzig, Sachsen" in outside.value.problems[0]
    with pytest.raises(handlers.OutsideJurisdiction) as swapped:
        await handlers.submit_report(writer, outlines, tokens, submission((12.37, 51.34)))
    assert "did you mean lat=51.34, long=12.37" in swapped.value.problems[0]
    with pytest.raises(handlers.OutsideJurisdiction) as not_there:
        await handlers.submit_report(
            writer, outlines, tokens, submission(IN_SACHSEN, jurisdiction="leipzig")
        )
    assert "the area of Leipzig" in not_there.value.problems[0]
    assert stored == {}
    assert outbox == []


async def test_an_unknown_jurisdiction_is_refused_while_outlines_are_known(
    writer: SubmissionWriter,
    outlines: Outlines,
    no_outlines: Outlines,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
) -> None:
    with pytest.raises(handlers.UnknownJurisdiction) as unknown:
        await handlers.submit_report(writer, outlines, tokens, submission(jurisdiction="atlantis"))
    assert unknown.value.code == "atlantis"
    assert "served: leipzig, sachsen" in str(unknown.value)
    assert stored == {}
    # Before geo-router announced any outline, routing decides: the named one, else the default.
    named = await handlers.submit_report(
        writer, no_outlines, tokens, submission(NOWHERE, jurisdiction="atlantis")
    )
    unnamed = await handlers.submit_report(writer, no_outlines, tokens, submission(NOWHERE))
    assert (named.jurisdiction, unnamed.jurisdiction) == ("atlantis", "leipzig")


async def test_a_category_switched_off_in_the_jurisdiction_is_refused_there_only(
    writer: SubmissionWriter,
    outlines: Outlines,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
) -> None:
    with pytest.raises(handlers.ServiceDisabled) as disabled:
        await handlers.submit_report(writer, outlines, tokens, submission(service_code="011"))
    assert "services?jurisdiction=leipzig" in disabled.value.problems[0]
    assert stored == {}
    elsewhere = await handlers.submit_report(
        writer, outlines, tokens, submission(IN_SACHSEN, service_code="011")
    )
    assert elsewhere.jurisdiction == "sachsen"
    assert "011" not in {c.code for c in handlers.offered_categories(outlines, "leipzig")}
    assert "011" in {c.code for c in handlers.offered_categories(outlines, "sachsen")}


async def test_an_invalid_submission_is_refused_with_its_problems(
    writer: SubmissionWriter,
    outlines: Outlines,
    tokens: ReporterTokens,
    outbox: list[Event],
) -> None:
    with pytest.raises(InvalidReport) as invalid:
        await handlers.submit_report(
            writer, outlines, tokens, submission(service_code="999", description="")
        )
    assert any("999" in p for p in invalid.value.problems)
    assert outbox == []


async def test_a_report_is_stored_with_its_history_and_announced_with_its_contact_kept(
    writer: SubmissionWriter,
    outlines: Outlines,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
    outbox: list[Event],
    kept: list[tuple[datetime, ReporterContactSubmitted]],
) -> None:
    report = await handlers.submit_report(
        writer, outlines, tokens, submission(contact=Contact("anna@example.org", locale="en"))
    )
    assert stored[report.id].status is ReportStatus.RECEIVED
    assert [h.status for h in stored[report.id].history] == [ReportStatus.RECEIVED]
    submitted, contact = outbox
    assert isinstance(submitted, ReportSubmitted)
    assert submitted.report_id == report.id
    assert isinstance(contact, ReporterContactSubmitted)
    assert contact.reporter_token is not None
    assert tokens.valid(report.id, contact.reporter_token)
    assert contact.locale == "en"
    assert [c for _, c in kept] == [contact]


async def test_a_retry_under_the_same_key_returns_the_first_report(
    uows: UnitOfWorkFactory,
    outlines: Outlines,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    assert not await handlers.idempotency_key_used(uows, "key-1")
    first, created = await handlers.submit_report_once(
        uows, outlines, tokens, submission(), "key-1"
    )
    assert created
    assert await handlers.idempotency_key_used(uows, "key-1")
    again, created_again = await handlers.submit_report_once(
        uows, outlines, tokens, submission(), "key-1"
    )
    assert not created_again
    assert again.id == first.id
    assert list(stored) == [first.id]
    assert [type(e) for e in outbox] == [ReportSubmitted]


async def test_the_same_key_for_another_request_is_a_conflict_that_writes_nothing(
    uows: UnitOfWorkFactory,
    outlines: Outlines,
    tokens: ReporterTokens,
    stored: dict[UUID, Report],
    outbox: list[Event],
) -> None:
    first, _ = await handlers.submit_report_once(uows, outlines, tokens, submission(), "key-2")
    with pytest.raises(handlers.IdempotencyConflict):
        await handlers.submit_report_once(
            uows, outlines, tokens, submission(description="Anderes Loch"), "key-2"
        )
    assert list(stored) == [first.id]
    assert len(outbox) == 1
    # A refused submission under a fresh key leaves the key unused.
    with pytest.raises(handlers.OutsideJurisdiction):
        await handlers.submit_report_once(uows, outlines, tokens, submission(NOWHERE), "key-3")
    assert not await handlers.idempotency_key_used(uows, "key-3")


async def test_a_followers_contact_is_staged_and_kept_without_a_reporter_token(
    uows: UnitOfWorkFactory,
    new_report: Callable[..., Awaitable[Report]],
    outbox: list[Event],
    kept: list[tuple[datetime, ReporterContactSubmitted]],
    new_id: Callable[[], UUID],
) -> None:
    report = await new_report()
    before = len(outbox)
    assert await handlers.follow(uows, report.id, Contact("bernd@example.org"))
    (following,) = outbox[before:]
    assert isinstance(following, ReporterContactSubmitted)
    assert (following.report_id, following.email) == (report.id, "bernd@example.org")
    assert following.reporter_token is None
    assert kept[-1][1] == following
    assert not await handlers.follow(uows, new_id(), Contact("bernd@example.org"))
    assert len(outbox) == before + 1
