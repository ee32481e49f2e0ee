"""The walking skeleton end to end: intake → geo-router → intake → notifier, over the real broker
and database, with a real SMTP conversation."""

from uuid import UUID

from conftest import API_KEY, Stack
from devstack.testing import body_text, eventually


async def test_a_report_reaches_its_office_and_the_reporter_is_told(stack: Stack) -> None:
    response = await stack.intake.post(
        "/open311/v2/requests.json",
        data={
            "api_key": API_KEY,
            "service_code": "001",
            # Augustusplatz, Ortsteil Zentrum, Stadtbezirk Mitte
            "lat": "51.3397",
            "long": "12.3807",
            "description": "Tiefes Schlagloch vor der Oper",
            "email": "flow@example.org",
        },
    )
    assert response.status_code == 201
    report_id = UUID(response.json()[0]["service_request_id"])

    async def agency() -> str | None:
        r = await stack.intake.get(f"/open311/v2/requests/{report_id}.json")
        return r.json()[0]["agency_responsible"]  # type: ignore[no-any-return]

    assert await eventually(agency) == "Verkehrs- und Tiefbauamt – Bezirk Ost"

    async def mails():  # type: ignore[no-untyped-def]
        return stack.smtp.to("flow@example.org")

    [mail] = await eventually(mails)
    assert "Verkehrs- und Tiefbauamt – Bezirk Ost" in mail["Subject"]
    assert "Zuständig ist: Verkehrs- und Tiefbauamt – Bezirk Ost" in body_text(mail)
    assert str(report_id) in body_text(mail)
