"""Area alerts: subscribe (double opt-in), be mailed about new reports in the area or around
a point, and about none elsewhere; unconfirmed subscriptions get nothing; one-click
unsubscribe — end to end over the real broker, database and SMTP server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import create_async_engine

from conftest import WEB_STYLESHEET, Stack
from devstack.testing import body_text, eventually, run_sql
from notifier.adapters.db import SqlUnitOfWorkFactory
from notifier.handlers import erase_expired_contacts

MARKT = (51.3397, 12.3731)
#: Grünau, far from the Markt in the west of the city.
GRUENAU = (51.3167, 12.2833)


async def ortsteil_at(stack: Stack, lat: float, long: float) -> str:
    async def route() -> Any:
        response = await stack.geo_router.get(
            "/v1/route", params={"lat": lat, "long": long, "service_code": "001"}
        )
        return response.json() if response.status_code == 200 else None

    [code] = [a["code"] for a in (await eventually(route))["areas"] if a["level"] == "ortsteil"]
    return str(code)


def link(mail: Any, path: str) -> str:
    line = next(line for line in body_text(mail).splitlines() if path in line)
    return line[line.index(path) :].strip()


async def subscribe(stack: Stack, email: str, *, confirm: bool = True, **place: Any) -> None:
    response = await stack.notifier.post("/api/v1/alerts", json={"email": email, **place})
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "confirmation_sent"}
    [mail] = stack.smtp.to(email)  # sent before the answer
    confirm_path = link(mail, "/alerts/confirm/")
    asked = await stack.notifier.get(confirm_path)  # a mail scanner opening the link
    assert asked.status_code == 200
    assert '<form method="post">' in asked.text
    assert confirm_path.rsplit("/", 1)[1] not in asked.text
    assert f'<link rel="stylesheet" href="{WEB_STYLESHEET}">' in asked.text  # web's look
    if confirm:
        confirmed = await stack.notifier.post(confirm_path)
        assert confirmed.status_code == 200
        assert "Bestätigt" in confirmed.text


async def new_report(stack: Stack, lat: float, long: float) -> UUID:
    response = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "001", "lat": lat, "long": long},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


def alerts_about(stack: Stack, email: str, report_id: UUID):  # type: ignore[no-untyped-def]
    async def probe() -> list[Any]:
        return [m for m in stack.smtp.to(email) if str(report_id) in body_text(m)]

    return probe


async def test_a_confirmed_subscription_hears_of_new_reports_in_its_area_only(
    stack: Stack,
) -> None:
    zentrum, gruenau = await ortsteil_at(stack, *MARKT), await ortsteil_at(stack, *GRUENAU)
    assert zentrum != gruenau
    await subscribe(stack, "zentrum@example.org", area={"code": zentrum})
    await subscribe(stack, "unconfirmed@example.org", area={"code": zentrum}, confirm=False)
    await subscribe(
        stack,
        "nearby@example.org",
        locale="en",
        service_code="001",
        point={"lat": MARKT[0], "long": MARKT[1], "radius_m": 300},
    )
    await subscribe(stack, "gruenau@example.org", area={"code": gruenau})

    elsewhere = await new_report(stack, *GRUENAU)
    # Alerts about one report are queued in one statement: once Grünau's subscriber has
    # theirs, nobody else will get one about that report.
    await eventually(alerts_about(stack, "gruenau@example.org", elsewhere))
    assert not await alerts_about(stack, "zentrum@example.org", elsewhere)()
    assert not await alerts_about(stack, "nearby@example.org", elsewhere)()

    here = await new_report(stack, MARKT[0] + 0.0005, MARKT[1])
    [alert] = await eventually(alerts_about(stack, "zentrum@example.org", here))
    assert alert["Subject"].startswith("Neue Meldung: ")
    unsubscribe = link(alert, "/alerts/unsubscribe/")
    assert alert["List-Unsubscribe"].endswith(f"{unsubscribe}>")
    assert alert["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [english] = await eventually(alerts_about(stack, "nearby@example.org", here))
    assert english["Subject"].startswith("New report: ")
    assert len(stack.smtp.to("unconfirmed@example.org")) == 1  # the confirmation only
    assert not await alerts_about(stack, "gruenau@example.org", here)()

    assert (await stack.notifier.get(unsubscribe)).status_code == 200  # asks only
    one_click = await stack.notifier.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert (await stack.notifier.get(unsubscribe)).status_code == 404
    later = await new_report(stack, MARKT[0] - 0.0005, MARKT[1])
    await eventually(alerts_about(stack, "nearby@example.org", later))
    assert not await alerts_about(stack, "zentrum@example.org", later)()


async def test_subscriptions_refuse_bad_input_clearly(stack: Stack) -> None:
    point = {"lat": MARKT[0], "long": MARKT[1], "radius_m": 300}
    for body, field in (
        ({"email": "x@example.org"}, None),
        ({"email": "x@example.org", "area": {"code": "00"}, "point": point}, None),
        ({"email": "not-an-address", "area": {"code": "00"}}, "email"),
        ({"email": "x@example.org", "area": {"code": ""}}, "area.code"),
        ({"email": "x@example.org", "point": {**point, "lat": 91}}, "point.lat"),
        ({"email": "x@example.org", "point": {**point, "radius_m": 50_000}}, "point.radius_m"),
        ({"email": "x@example.org", "area": {"code": "00"}, "service_code": "999"}, None),
        ({"email": "x@example.org", "area": {"code": "00"}, "locale": "fr"}, "locale"),
    ):
        response = await stack.notifier.post("/api/v1/alerts", json=body)
        assert response.status_code == 422, (body, response.text)
        [error, *_] = response.json()["errors"]
        if field:
            assert error["field"] == field, (body, error)
    nan = await stack.notifier.post(
        "/api/v1/alerts",
        content=b'{"email": "x@example.org", "point": {"lat": NaN, "long": 12, "radius_m": 9}}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422
    for path in ("/alerts/confirm/unknown", "/alerts/unsubscribe/unknown"):
        for method in ("GET", "POST"):
            response = await stack.notifier.request(method, path)
            assert response.status_code == 404
            assert response.headers["content-type"].startswith("text/html")
    # Asking again and again without confirming stops being mailed.
    for n in range(3):
        ok = await stack.notifier.post(
            "/api/v1/alerts", json={"email": "pest@example.org", "area": {"code": f"{n}"}}
        )
        assert ok.status_code == 202
    pest = await stack.notifier.post(
        "/api/v1/alerts", json={"email": "Pest@example.org", "area": {"code": "9"}}
    )
    assert pest.status_code == 429
    assert pest.json()["errors"][0]["code"] == "rate_limited"
    assert len(stack.smtp.to("pest@example.org")) == 3


async def test_unconfirmed_subscriptions_are_deleted_after_a_week(stack: Stack) -> None:
    for email in ("stale@example.org", "fresh@example.org"):
        await subscribe(stack, email, area={"code": "00"}, confirm=False)
    await run_sql(
        stack.database_url,
        "UPDATE notifier.alert_subscriptions SET created_at = now() - interval '8 days'"
        " WHERE email = 'stale@example.org'",
    )
    engine = create_async_engine(stack.database_url)
    try:
        await erase_expired_contacts(SqlUnitOfWorkFactory(engine), timedelta(days=90))
    finally:
        await engine.dispose()
    left = await run_sql(
        stack.database_url,
        "SELECT email FROM notifier.alert_subscriptions"
        " WHERE email IN ('stale@example.org', 'fresh@example.org')",
    )
    assert [e for (e,) in left] == ["fresh@example.org"]
