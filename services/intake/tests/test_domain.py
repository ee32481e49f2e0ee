import math

import pytest

from intake.domain import (
    Contact,
    InvalidReport,
    TransitionNotAllowed,
    check_coordinates,
    find_problems,
    staff_note,
    staff_transition,
    submit,
)
from mm_shared.events import OfficeRef, ReporterContactSubmitted, ReportStatus, ReportSubmitted


def new_report(contact: Contact | None = None):  # type: ignore[no-untyped-def]
    return submit(
        jurisdiction="leipzig",
        service_code="001",
        lat=51.34,
        long=12.37,
        description="Schlagloch",
        contact=contact,
    )


def test_submission_without_contact_publishes_only_the_public_event() -> None:
    report, events = new_report()
    assert report.status is ReportStatus.RECEIVED
    assert [type(e) for e in events] == [ReportSubmitted]


def test_contact_data_travels_only_in_the_private_event() -> None:
    _, events = new_report(Contact(email="a@example.org", first_name="Anna", locale="en"))
    public, private = events
    assert isinstance(private, ReporterContactSubmitted)
    assert "a@example.org" not in public.model_dump_json()
    assert "Anna" not in public.model_dump_json()
    assert private.locale == "en"


def test_every_problem_is_reported_at_once() -> None:
    problems = find_problems("999", 5_700_000.0, 320_000.0, "x" * 4001)
    assert len(problems) == 3
    assert any("projected metres" in p for p in problems)
    with pytest.raises(InvalidReport) as refused:
        submit(
            jurisdiction="leipzig",
            service_code="",
            lat=None,
            long=None,
            description=None,
            contact=None,
        )
    assert len(refused.value.problems) == 2


def test_a_contact_whose_address_the_event_would_refuse_is_a_problem_not_a_crash() -> None:
    with pytest.raises(InvalidReport) as refused:
        new_report(Contact(email="a@b.org\r\nBcc: x@example.org"))
    [problem] = refused.value.problems
    assert "is not a valid e-mail address" in problem


def test_nul_characters_are_refused_in_every_text_field() -> None:
    with pytest.raises(InvalidReport) as refused:
        submit(
            jurisdiction="leipzig",
            service_code="001",
            lat=51.34,
            long=12.37,
            description="a\x00b",
            contact=Contact(email="a@example.org", first_name="\x00"),
            media_url="http://x/\x00",
        )
    assert sorted(p.split()[0] for p in refused.value.problems) == [
        "description",
        "first_name",
        "media_url",
    ]
    report, _ = new_report()
    with pytest.raises(InvalidReport):
        staff_transition(
            report,
            ReportStatus.IN_PROGRESS,
            "staff",
            public_note=None,
            internal_note="\x00",
            duplicate_of=None,
        )


def test_a_note_keeps_status_and_since_and_only_a_public_one_is_news() -> None:
    report, _ = new_report()
    office = OfficeRef(code="VTA", name="Verkehrs- und Tiefbauamt")
    report.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)
    since = report.updated_at
    assert staff_note(report, "staff:a", public_note=None, internal_note="called") is None
    news = staff_note(report, "staff:a", public_note="Monday", internal_note=None)
    assert news is not None
    assert news.note_only
    assert (news.previous_status, news.status, news.public_note) == (
        ReportStatus.ASSIGNED,
        ReportStatus.ASSIGNED,
        "Monday",
    )
    assert (report.status, report.updated_at) == (ReportStatus.ASSIGNED, since)
    assert [h.internal_note or h.public_note for h in report.history[-2:]] == ["called", "Monday"]
    with pytest.raises(InvalidReport):
        staff_note(report, "staff:a", public_note=" ", internal_note=None)
    assert staff_note(report, "staff:a", public_note=" ", internal_note="no news") is None


@pytest.mark.parametrize(
    ("lat", "long", "hint"),
    [(math.nan, 12.0, "finite"), (91.0, 12.0, "within"), (51.0, 181.0, "within")],
)
def test_implausible_coordinates_get_a_helpful_message(lat: float, long: float, hint: str) -> None:
    assert hint in check_coordinates(lat, long)[0]


def test_status_follows_the_lifecycle_and_records_history() -> None:
    report, _ = new_report()
    office = OfficeRef(code="VTA", name="Verkehrs- und Tiefbauamt")
    change = report.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)
    assert change.previous_status is ReportStatus.RECEIVED
    assert change.office == office
    report.change_status(ReportStatus.IN_PROGRESS, "staff", public_note="Wir sind dran")
    report.change_status(ReportStatus.RESOLVED, "staff")
    assert [c.status for c in report.history][-3:] == [
        ReportStatus.ASSIGNED,
        ReportStatus.IN_PROGRESS,
        ReportStatus.RESOLVED,
    ]
    with pytest.raises(TransitionNotAllowed):
        report.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)


def test_working_days_skip_weekends() -> None:
    from datetime import date

    from intake.domain import working_days_between

    friday, monday = date(2026, 11, 27), date(2026, 11, 30)
    assert working_days_between(friday, monday) == 1
    assert working_days_between(friday, friday) == 0
    assert working_days_between(date(2026, 11, 23), date(2026, 12, 7)) == 10


def test_public_holidays_are_not_working_days() -> None:
    from datetime import date

    import holidays

    from intake.domain import is_working_day, working_days_between

    saxony = holidays.country_holidays("DE", subdiv="SN")
    # Buß- und Bettag (Saxony only) is Wednesday 18 November 2026; Christmas on Friday.
    assert not is_working_day(date(2026, 11, 18), saxony)
    assert is_working_day(date(2026, 11, 18), holidays.country_holidays("DE", subdiv="BE"))
    assert working_days_between(date(2026, 11, 16), date(2026, 11, 20), saxony) == 3
    assert working_days_between(date(2026, 12, 23), date(2026, 12, 28), saxony) == 2


def test_overdue_tickets_are_grouped_per_office() -> None:
    from datetime import timedelta

    from intake.domain import overdue
    from mm_shared.events import utcnow

    now = utcnow()
    office = OfficeRef(code="SRL", name="Stadtreinigung")
    waiting, _ = new_report()
    waiting.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)
    waiting.updated_at = now - timedelta(days=10)
    working, _ = new_report()
    working.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)
    working.change_status(ReportStatus.IN_PROGRESS, "staff")
    working.updated_at = now - timedelta(days=20)
    fresh, _ = new_report()
    fresh.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)
    # Accepted at once, worked on for a day, but its category's service level has run out.
    late, _ = new_report()
    late.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)
    late.change_status(ReportStatus.IN_PROGRESS, "staff")
    late.updated_at = now - timedelta(days=1)
    late.expected_at = now - timedelta(hours=1)
    due = overdue(
        [waiting, working, fresh, late], now, accept_within_working_days=3, work_within_days=14
    )
    assert [t.report_id for t in due["SRL"].not_accepted] == [waiting.id]
    assert [t.report_id for t in due["SRL"].stalled] == [working.id]
    assert [t.report_id for t in due["SRL"].past_service_level] == [late.id]


def test_a_report_is_due_by_its_categorys_service_level() -> None:
    from datetime import timedelta

    from intake.catalogue import SERVICE_LEVEL_DAYS

    report, _ = new_report()
    assert report.expected_at == report.requested_at + timedelta(
        days=SERVICE_LEVEL_DAYS[report.service_code]
    )
    assert not report.is_overdue(report.requested_at)
    assert report.is_overdue(report.expected_at + timedelta(seconds=1))
    report.change_status(ReportStatus.REJECTED, "staff", public_note="not ours")
    assert not report.is_overdue(report.expected_at + timedelta(seconds=1))
    custom, _ = submit(
        jurisdiction="leipzig",
        service_code="001",
        lat=51.34,
        long=12.37,
        description="",
        contact=None,
        service_levels={"001": 2},
    )
    assert custom.expected_at == custom.requested_at + timedelta(days=2)


def test_the_reporter_reopens_a_resolved_report_within_the_period_only() -> None:
    from datetime import timedelta

    from intake.domain import ReopenRefused, reporter_reopen
    from mm_shared.events import utcnow

    report, _ = new_report()
    office = OfficeRef(code="VTA", name="Verkehrs- und Tiefbauamt")
    report.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)
    within = timedelta(days=28)
    with pytest.raises(ReopenRefused) as refused:
        reporter_reopen(report, note=None, now=utcnow(), within=within)
    assert refused.value.code == "not_resolved"
    report.change_status(ReportStatus.RESOLVED, "staff")
    assert report.updated_at is not None
    with pytest.raises(ReopenRefused) as late:
        reporter_reopen(report, note="", now=report.updated_at + timedelta(days=29), within=within)
    assert late.value.code == "reopen_period_over"
    change = reporter_reopen(report, note="  Noch da  ", now=utcnow(), within=within)
    assert change.status is ReportStatus.ASSIGNED
    assert change.previous_status is ReportStatus.RESOLVED
    assert change.reopened_by_reporter
    assert change.office == office
    assert change.public_note == "Noch da"
    assert report.history[-1].changed_by == "reporter"
    # The reporter's way back is theirs alone: nobody else takes a resolved report to assigned.
    report.change_status(ReportStatus.RESOLVED, "staff")
    with pytest.raises(TransitionNotAllowed):
        report.change_status(ReportStatus.ASSIGNED, "geo-router", office=office)
