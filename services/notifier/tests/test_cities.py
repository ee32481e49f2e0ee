"""Each city's mails are its own: the sender name and the city named in the wording come from
the jurisdiction of the report (or of the office, or of the alert subscription). The events are
published directly, as geo-router and intake would, each test under a jurisdiction code of its
own (the boundary and directory topics are compacted: a real code would be overwritten)."""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage
from uuid import UUID, uuid4

from conftest import Stack
from devstack.testing import body_text, eventually, publish, run_sql
from mm_shared.events import (
    JurisdictionBoundaryChanged,
    MatchedArea,
    OfficeContact,
    OfficeDirectoryChanged,
    OfficeRef,
    OfficeReminderDue,
    OverdueTicket,
    ReporterContactSubmitted,
    ReportRouted,
    ReportStatus,
    ReportStatusChanged,
    utcnow,
)
from notifier.settings import NotifierSettings

KOELN_FROM = "Mängelmelder Köln <noreply@maengelmelder.leipzig.example>"
#: The Ordnungsamt: Leipzig (loaded in the test stack) has an office of the same code.
ORDNUNGSAMT = OfficeRef(code="OA", name="Ordnungsamt der Stadt Köln")


async def a_city(stack: Stack) -> str:
    """A new jurisdiction named "Stadt Köln" whose mails come from "Mängelmelder Köln", as
    geo-router announces one; returns its code once the notifier knows both names."""
    code = f"koeln-{uuid4().hex[:8]}"
    await publish(
        stack.kafka,
        # Retired, with an empty outline: intake in the test stack takes no reports there.
        JurisdictionBoundaryChanged(
            jurisdiction=code,
            name="Stadt Köln",
            version="test",
            boundary={"type": "MultiPolygon", "coordinates": []},
            retired=True,
        ),
        OfficeDirectoryChanged(
            jurisdiction=code,
            offices=(OfficeContact(code="OA", name="Ordnungsamt", email=f"oa@{code}.example"),),
            sender_name="Mängelmelder Köln",
        ),
    )

    async def known() -> bool:
        rows = await run_sql(
            stack.database_url,
            "SELECT name, sender_name FROM notifier.jurisdictions WHERE code = :code",
            code=code,
        )
        return [tuple(r) for r in rows] == [("Stadt Köln", "Mängelmelder Köln")]

    await eventually(known)
    return code


def changed(report_id: UUID, jurisdiction: str | None, **fields: object) -> ReportStatusChanged:
    defaults: dict[str, object] = {
        "service_code": "005",
        "previous_status": ReportStatus.RECEIVED,
        "status": ReportStatus.ASSIGNED,
        "office": ORDNUNGSAMT,
        "changed_by": "test",
    }
    return ReportStatusChanged(
        report_id=report_id,
        jurisdiction=jurisdiction,
        **(defaults | fields),
    )


def mails_to(stack: Stack, address: str, count: int = 1):  # type: ignore[no-untyped-def]
    async def probe() -> list[EmailMessage] | None:
        mails = stack.smtp.to(address)
        return mails if len(mails) >= count else None

    return probe


async def test_a_reporter_hears_from_their_city_which_an_earlier_event_named(
    stack: Stack,
) -> None:
    code = await a_city(stack)
    report_id = uuid4()
    # Neither the contact nor the status change names the jurisdiction; the routing did.
    routed = ReportRouted(
        report_id=report_id,
        jurisdiction=code,
        office=ORDNUNGSAMT,
        areas=(MatchedArea(level="stadtteil", code="101", name="Altstadt-Süd"),),
        rule="test",
    )
    await publish(stack.kafka, routed)

    async def stored() -> bool:
        rows = await run_sql(
            stack.database_url,
            "SELECT jurisdiction FROM notifier.report_jurisdictions WHERE report_id = :id",
            id=report_id,
        )
        return [r[0] for r in rows] == [code]

    await eventually(stored)
    await publish(
        stack.kafka,
        ReporterContactSubmitted(report_id=report_id, email="koeln@example.org", locale="en"),
        changed(report_id, None),
    )
    [mail] = await eventually(mails_to(stack, "koeln@example.org"))
    assert str(mail["From"]) == KOELN_FROM
    assert body_text(mail).rstrip().endswith("Your Mängelmelder team, Stadt Köln")
    assert "Leipzig" not in body_text(mail)


async def test_a_report_of_no_known_city_comes_from_the_configured_sender(stack: Stack) -> None:
    report_id, unknown = uuid4(), uuid4()
    await publish(
        stack.kafka,
        ReporterContactSubmitted(report_id=report_id, email="nowhere@example.org"),
        changed(report_id, None),
        ReporterContactSubmitted(report_id=unknown, email="unknown-city@example.org"),
        changed(unknown, f"unknown-{uuid4().hex[:8]}"),
    )
    for address in ("nowhere@example.org", "unknown-city@example.org"):
        [mail] = await eventually(mails_to(stack, address))
        assert str(mail["From"]) == NotifierSettings().mail_from
        assert body_text(mail).rstrip().endswith("Ihr Mängelmelder-Team")


async def test_the_offices_hear_from_their_city_and_only_about_their_own_tickets(
    stack: Stack,
) -> None:
    code = await a_city(stack)
    # The daily reminder.
    report_id = uuid4()
    ticket = OverdueTicket(
        report_id=report_id,
        service_code="005",
        status=ReportStatus.ASSIGNED,
        since=utcnow(),
        days=5,
    )
    await publish(
        stack.kafka,
        OfficeReminderDue(
            jurisdiction=code,
            office_code="OA",
            day=date.today(),
            not_accepted=(ticket,),
            stalled=(),
        ),
    )
    [reminder] = await eventually(mails_to(stack, f"oa@{code}.example"))
    assert str(reminder["From"]) == KOELN_FROM
    assert body_text(reminder).rstrip().endswith("Ihr Mängelmelder – Stadt Köln")

    # The reporter says it is not fixed: the city's own Ordnungsamt hears it, not Leipzig's.
    reopened = changed(
        report_id,
        code,
        previous_status=ReportStatus.RESOLVED,
        changed_by="reporter",
        reopened_by_reporter=True,
        public_note="Liegt noch da",
    )
    await publish(stack.kafka, reopened)
    [_, to_office] = await eventually(mails_to(stack, f"oa@{code}.example", count=2))
    assert str(to_office["From"]) == KOELN_FROM
    assert str(report_id) in body_text(to_office)
    leipzig = await run_sql(
        stack.database_url,
        "SELECT email FROM notifier.offices WHERE jurisdiction = 'leipzig' AND code = 'OA'",
    )
    assert not [m for r in leipzig for m in stack.smtp.to(r[0]) if str(report_id) in body_text(m)]


async def test_area_alerts_of_a_city_come_from_it_and_are_about_its_reports_only(
    stack: Stack,
) -> None:
    code = await a_city(stack)
    email = f"alerts-{code}@example.org"
    response = await stack.notifier.post(
        "/api/v1/alerts", json={"email": email, "area": {"code": "101"}, "jurisdiction": code}
    )
    assert response.status_code == 202, response.text
    [confirmation] = stack.smtp.to(email)
    assert str(confirmation["From"]) == KOELN_FROM
    assert body_text(confirmation).rstrip().endswith("Ihr Mängelmelder-Team – Stadt Köln")
    path = next(
        line[line.index("/alerts/confirm/") :].strip()
        for line in body_text(confirmation).splitlines()
        if "/alerts/confirm/" in line
    )
    assert (await stack.notifier.post(path)).status_code == 200

    # The same area code in another jurisdiction is another place; a report whose event names
    # no jurisdiction (from before there were several) is of any.
    elsewhere, here, unnamed = uuid4(), uuid4(), uuid4()
    for report_id, jurisdiction in (
        (elsewhere, f"other-{code}"),
        (here, code),
        (unnamed, None),
    ):
        await publish(
            stack.kafka,
            ReportRouted(
                report_id=report_id,
                jurisdiction=jurisdiction,
                office=ORDNUNGSAMT,
                areas=(MatchedArea(level="stadtteil", code="101", name="Altstadt-Süd"),),
                rule="test",
                service_code="005",
                lat=50.9375,
                long=6.9603,
            ),
        )
    [_, *alerts] = await eventually(mails_to(stack, email, count=3))
    [alert] = [m for m in alerts if str(here) in body_text(m)]
    assert [m for m in alerts if str(unnamed) in body_text(m)]
    assert str(alert["From"]) == KOELN_FROM
    assert body_text(alert).rstrip().endswith("Ihr Mängelmelder-Team – Stadt Köln")

    # Once the other report's routing is recorded (in the transaction that would have queued
    # its alert), no alert is queued for it.
    async def recorded() -> bool:
        return bool(
            await run_sql(
                stack.database_url,
                "SELECT 1 FROM notifier.report_jurisdictions WHERE report_id = :id",
                id=elsewhere,
            )
        )

    await eventually(recorded)
    rows = await run_sql(
        stack.database_url,
        "SELECT report_id FROM notifier.notifications WHERE channel = 'alert'"
        " AND report_id = ANY(CAST(:ids AS uuid[]))",
        ids=[elsewhere, here, unnamed],
    )
    assert {r[0] for r in rows} == {here, unnamed}
