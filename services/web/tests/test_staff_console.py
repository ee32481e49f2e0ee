"""The staff console in a real browser over the real stack (intake, geo-router, notifier, web as
processes): signing in, the queue, one ticket and its actions, bulk actions, the CSV export,
the refusals (another office's ticket, a form without its CSRF token, an expired session),
axe-core on every page and work with the keyboard alone."""

from __future__ import annotations

import csv
import io
import json
import random
import secrets
import time
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, Page, ViewportSize, expect

from devstack.browser import BrowserStack, axe_violations, get_json, wait_until
from devstack.pictures import phone_jpeg
from web.settings import WebSettings
from web.staff import session as sessions

DESKTOP: ViewportSize = {"width": 1280, "height": 900}


def staff_token(stack: BrowserStack, office: str) -> str:
    """What ``make staff-token OFFICE=...`` prints as its last line."""
    name = f"browser-{office.lower()}-{random.randrange(10**9)}"
    return stack.cli("intake", "staff-token", "--office", office, "--name", name).split()[-1]


def in_mitte() -> dict[str, str]:
    # Stadtbezirk Mitte: roads are VTA-OST's.
    return {
        "lat": str(round(random.uniform(51.336, 51.342), 6)),
        "long": str(round(random.uniform(12.372, 12.382), 6)),
    }


def report(
    stack: BrowserStack,
    description: str,
    *,
    code: str = "001",
    email: str | None = None,
    photo: bool = False,
    place: dict[str, str] | None = None,
) -> str:
    data = {"service_code": code, **(place or in_mitte()), "description": description}
    if email:
        data["email"] = email
    answer = httpx.post(
        f"{stack.intake}/api/v1/reports",
        data=data,
        files=[("photos", ("p.jpg", phone_jpeg(), "image/jpeg"))] if photo else None,
        headers={"X-Acknowledge-Duplicate": "true"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    report_id: str = answer.json()["id"]
    wait_until(lambda: stack.report(report_id)["status"] == "assigned")
    return report_id


def sign_in(page: Page, base_url: str, token: str) -> None:
    page.goto(base_url + "/staff/")
    page.get_by_label("Zugangsschlüssel").fill(token)
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Meldungen meiner Dienststellen")


def status_of(stack: BrowserStack, report_id: str) -> str:
    return str(stack.report(report_id)["status"])


@pytest.fixture(scope="session")
def office(browser_stack: BrowserStack) -> str:
    return staff_token(browser_stack, "VTA-OST")


def test_a_member_of_staff_works_a_ticket_and_the_reporter_hears_of_it(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    email = f"reporter-{secrets.token_hex(3)}@example.org"
    report_id = report(browser_stack, "Tiefes Loch am Bordstein", email=email, photo=True)
    sign_in(page, base_url, office)

    page.get_by_role("link", name="zugewiesen").first.click()
    expect(page).to_have_url(f"{base_url}/staff/tickets?status=assigned")
    page.get_by_label("Suche").fill(report_id[:8])
    page.get_by_role("button", name="Filtern").click()
    page.get_by_role("link", name=f"{report_id[:8]} Straßenschaden / Schlagloch").click()

    photo = page.get_by_role("img", name="Foto 1 der Meldung (öffnet in voller Größe)")
    expect(photo).to_be_visible()
    # Visible as soon as its declared size is laid out; loaded once it has pixels.
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=photo.element_handle()
    )
    expect(page.locator(".explanation")).to_contain_text("Stadtbezirk Mitte")
    expect(page.locator(".explanation")).to_contain_text("Verkehrs- und Tiefbauamt")
    full_size = page.request.get(page.locator(".photos a").first.get_attribute("href") or "")
    assert full_size.ok
    assert full_size.headers["content-type"] == "image/jpeg"

    page.get_by_label("In Bearbeitung").check()
    page.get_by_label("Interne Notiz").fill("Kolonne 3 fährt hin")
    page.get_by_role("button", name="Speichern").click()
    expect(page.get_by_role("status")).to_have_text("Die Meldung ist in Bearbeitung.")
    expect(page.locator(".note--internal").first).to_contain_text("Kolonne 3 fährt hin")

    page.get_by_label("Erledigt").check()
    page.get_by_label("Öffentliche Notiz").fill("Das Loch ist verfüllt.")
    page.get_by_role("button", name="Speichern").click()
    expect(page.get_by_role("status")).to_have_text("Die Meldung ist erledigt.")
    assert status_of(browser_stack, report_id) == "resolved"

    def resolved_mail() -> Any:
        return [m for m in browser_stack.mails_to(email) if "verfüllt" in _text(m)]

    wait_until(resolved_mail, 30)


def _text(mail: Any) -> str:
    part = mail.get_body(("plain",)) if mail.is_multipart() else mail
    return str(part.get_content())


def test_rejecting_without_a_reason_shows_the_error_beside_the_field(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    report_id = report(browser_stack, "Kein Schaden erkennbar")
    sign_in(page, base_url, office)
    page.goto(f"{base_url}/staff/tickets/{report_id}")
    page.get_by_label("Ablehnen (mit Begründung)").check()
    page.get_by_role("button", name="Speichern").click()
    field = page.locator(".field--error").filter(has=page.get_by_label("Öffentliche Notiz"))
    expect(field.locator(".error-message")).to_have_text(
        "Geben Sie eine öffentliche Begründung für die Ablehnung ein"
    )
    expect(page.get_by_label("Öffentliche Notiz")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Ablehnen (mit Begründung)")).to_be_checked()  # kept
    assert status_of(browser_stack, report_id) == "assigned"
    assert axe_violations(page) == []


def test_another_offices_ticket_is_the_404_page(
    page: Page, base_url: str, browser_stack: BrowserStack
) -> None:
    theirs = report(browser_stack, "Müll", code="006", place=in_mitte())  # SRL's
    sign_in(page, base_url, staff_token(browser_stack, "VTA-OST"))
    token = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    answer = page.goto(f"{base_url}/staff/tickets/{theirs}")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Seite nicht gefunden")
    # Nor can it be worked by posting to it.
    posted = page.request.post(
        f"{base_url}/staff/tickets/{theirs}/work",
        form={"csrf_token": token, "action": "in_progress"},
    )
    assert posted.status == 404
    assert status_of(browser_stack, theirs) == "assigned"


def test_a_post_without_its_csrf_token_is_refused(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    report_id = report(browser_stack, "Ampel aus", code="004")
    sign_in(page, base_url, office)
    for token in (None, "forged"):
        form: dict[str, str | float | bool] = {"action": "in_progress"}
        if token:
            form["csrf_token"] = token
        refused = page.request.post(f"{base_url}/staff/tickets/{report_id}/work", form=form)
        assert refused.status == 403
    assert status_of(browser_stack, report_id) == "assigned"


def test_an_expired_session_returns_to_sign_in(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    sign_in(page, base_url, office)
    [cookie] = [c for c in page.context.cookies() if c["name"] == sessions.COOKIE]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    # The same session, sealed as if its last request had been an idle timeout and a minute ago.
    settings = WebSettings(secret_key=browser_stack.env["WEB_SECRET_KEY"])
    payload = sessions.unseal(settings, sessions.COOKIE, cookie["value"], 60)
    assert payload is not None
    fernet: Fernet = sessions._fernet(settings, sessions.COOKIE)
    stale = fernet.encrypt_at_time(
        json.dumps(payload).encode(), int(time.time()) - settings.staff_idle_timeout_s - 60
    ).decode()
    # A cookie as read back is one to set, but for the optional "url" key the types disagree on.
    page.context.add_cookies([{**cookie, "value": stale}])  # type: ignore[typeddict-item]
    page.goto(f"{base_url}/staff/statistics")
    expect(page).to_have_url(f"{base_url}/staff/?next=%2Fstaff%2Fstatistics&expired=1")
    expect(page.get_by_role("status")).to_contain_text("Ihre Sitzung ist abgelaufen")
    page.get_by_label("Zugangsschlüssel").fill(office)
    page.get_by_role("button", name="Anmelden").click()
    expect(page).to_have_url(f"{base_url}/staff/statistics")  # where they were going

    page.get_by_role("button", name="Abmelden").click()
    expect(page.get_by_role("status")).to_have_text("Sie sind abgemeldet.")
    page.goto(f"{base_url}/staff/tickets")
    expect(page.get_by_role("heading", level=1)).to_have_text("Anmeldung für Dienststellen")


def test_a_bulk_action_changes_every_selected_ticket(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    word = f"bulk{secrets.token_hex(3)}"
    chosen = [report(browser_stack, f"Riss {word} {n}") for n in range(3)]
    left = report(browser_stack, f"Riss {word} bleibt")
    sign_in(page, base_url, office)
    page.goto(f"{base_url}/staff/tickets?q={word}")
    expect(page.get_by_role("heading", name="4 Meldungen")).to_be_visible()
    for report_id in chosen:
        page.get_by_label(f"Meldung {report_id[:8]} auswählen").check()
    page.get_by_label("In Bearbeitung nehmen").check()
    page.get_by_role("button", name="Auf Auswahl anwenden").click()
    expect(page.get_by_role("status")).to_have_text("3 Meldungen geändert, 0 nicht möglich.")
    assert [status_of(browser_stack, r) for r in chosen] == ["in_progress"] * 3
    assert status_of(browser_stack, left) == "assigned"

    # Resolving asks for the one public note all reporters get.
    page.get_by_label("Alle auf dieser Seite auswählen").check()
    page.get_by_label("Als erledigt abschließen").check()
    page.get_by_role("button", name="Auf Auswahl anwenden").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Zum Abschließen geben Sie eine öffentliche Notiz ein."
    )
    assert status_of(browser_stack, left) == "assigned"
    page.get_by_label("Alle auf dieser Seite auswählen").check()
    page.get_by_label("Als erledigt abschließen").check()
    page.get_by_label("Öffentliche Notiz für alle").fill("Alle Risse sind geschlossen.")
    page.get_by_role("button", name="Auf Auswahl anwenden").click()
    expect(page.get_by_role("status")).to_have_text("4 Meldungen geändert, 0 nicht möglich.")
    assert [status_of(browser_stack, r) for r in [*chosen, left]] == ["resolved"] * 4


def test_the_csv_export_holds_the_filtered_rows(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    word = f"csv{secrets.token_hex(3)}"
    # The second reads like a formula to a spreadsheet: it arrives as text.
    roads = [report(browser_stack, text) for text in (f"Loch {word}", f"=SUMME(1;2) Loch {word}")]
    report(browser_stack, f"Laterne {word}", code="003")
    sign_in(page, base_url, office)
    page.goto(f"{base_url}/staff/tickets?q={word}&service_code=001&sort=requested_at")
    with page.expect_download() as download:
        page.get_by_role("link", name="Als CSV herunterladen").click()
    text = download.value.path().read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == roads
    assert {r["service_code"] for r in rows} == {"001"}
    assert all(word in r["description"] for r in rows)
    assert rows[1]["description"] == f"'=SUMME(1;2) Loch {word}"


def test_every_console_page_has_no_axe_violations(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    report_id = report(browser_stack, "Für die Prüfung der Barrierefreiheit", photo=True)
    report(browser_stack, "Gleich daneben", place=None)
    page.goto(base_url + "/staff/")
    assert axe_violations(page) == [], "sign-in"
    sign_in(page, base_url, office)
    paths = [
        "/staff/tickets",
        "/staff/tickets?status=assigned&overdue=1",
        f"/staff/tickets/{report_id}",
        "/staff/map",
        "/staff/statistics",
        "/staff/canned-responses",
    ]
    for viewport in (None, DESKTOP):
        if viewport:
            page.set_viewport_size(viewport)
        for path in paths:
            page.goto(base_url + path)
            page.wait_for_load_state("networkidle")
            assert axe_violations(page) == [], path
    page.goto(f"{base_url}/language/en?next=/staff/tickets")
    expect(page.get_by_role("heading", level=1)).to_have_text("My offices' tickets")
    for path in paths:
        page.goto(base_url + path)
        page.wait_for_load_state("networkidle")
        assert axe_violations(page) == [], f"{path} in English"


def tab_to(page: Page, matches: str, presses: int = 150) -> None:
    """Press Tab until the focused element satisfies the JavaScript predicate ``matches``."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"(el => {matches})(document.activeElement)"):
            return
    raise AssertionError(f"never reached {matches} with Tab")


def test_the_queue_and_a_ticket_can_be_worked_with_the_keyboard_alone(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    word = f"keys{secrets.token_hex(3)}"
    report_id = report(browser_stack, f"Schild {word} verdreht", code="004")
    page.goto(base_url + "/staff/")
    tab_to(page, "el.id === 'token'")
    page.keyboard.type(office)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Meldungen meiner Dienststellen")

    tab_to(page, "el.id === 'q'")
    page.keyboard.type(word)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="1 Meldungen")).to_be_visible()
    tab_to(page, f"el.href && el.href.endsWith('/staff/tickets/{report_id}')")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{base_url}/staff/tickets/{report_id}")

    tab_to(page, "el.id === 'action-note'")
    page.keyboard.press("ArrowDown")  # radios move with the arrow keys
    assert page.evaluate("document.activeElement.id") == "action-in_progress"
    tab_to(page, "el.id === 'public_note'")
    page.keyboard.type("Wir kümmern uns darum.")
    tab_to(page, "el.type === 'submit' && el.textContent.trim() === 'Speichern'")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Die Meldung ist in Bearbeitung.")
    assert status_of(browser_stack, report_id) == "in_progress"
    # Focus is visible: the focused control has an outline or a box shadow.
    tab_to(page, "el.id === 'action-note'")
    style = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return s.outlineStyle + '|' + s.boxShadow; })()"
    )
    assert style != "none|none"


def test_on_a_phone_the_queue_is_cards_whose_dates_say_which_is_which(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    word = f"card{secrets.token_hex(3)}"
    report(browser_stack, f"Poller {word} umgefahren", code="004")
    sign_in(page, base_url, office)
    page.get_by_label("Suche").fill(word)
    page.get_by_role("button", name="Filtern").click()
    expect(page.get_by_role("heading", name="1 Meldungen")).to_be_visible()
    # The table's head is not shown on a phone; its sort links must not take the focus
    # out of sight either (the filter's Sortierung sorts here).
    for name in ("Eingang", "Fällig"):
        expect(page.get_by_role("link", name=name)).to_be_hidden()
    labels = page.evaluate(
        "[...document.querySelectorAll('.queue tbody tr:first-child td[data-label]')]"
        ".map(td => getComputedStyle(td, '::before').content)"
    )
    assert labels == ['"Eingang: "', '"Fällig: "']
    page.set_viewport_size(DESKTOP)  # on a desktop the columns have their headings
    expect(page.get_by_role("link", name="Eingang")).to_be_visible()
    labels = page.evaluate(
        "[...document.querySelectorAll('.queue tbody tr:first-child td[data-label]')]"
        ".map(td => getComputedStyle(td, '::before').content)"
    )
    assert labels == ["none", "none"]


#: Every text of each chart shown, at its size on the screen (its SVG scaled to the column).
CHART_TEXT_PX = """[...document.querySelectorAll('svg.chart')]
  .filter(svg => svg.getBoundingClientRect().width > 0)
  .map(svg => [...svg.querySelectorAll('text')]
    .map(text => parseFloat(getComputedStyle(text).fontSize) * svg.getScreenCTM().a))"""


def test_the_statistics_charts_labels_are_readable_on_a_phone(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    report(browser_stack, "Für die Statistik", code="004")
    sign_in(page, base_url, office)
    page.goto(base_url + "/staff/statistics")
    charts = page.evaluate(CHART_TEXT_PX)
    assert len(charts) == 3, charts  # per category, per month, per Stadtbezirk: one each
    assert all(sizes and min(sizes) >= 12 for sizes in charts), charts
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size(DESKTOP)  # the wide charts, the table beside each
    charts = page.evaluate(CHART_TEXT_PX)
    assert len(charts) == 3, charts
    assert min(charts[0]) >= 12, charts[0]
    table = page.locator("#by-category-heading + .chart-pair table").bounding_box()
    chart = page.locator("#by-category-heading + .chart-pair svg.chart--wide").bounding_box()
    assert table
    assert chart
    assert table["x"] > chart["x"] + chart["width"]


def test_the_console_map_credits_the_citys_outlines(page: Page, base_url: str, office: str) -> None:
    sign_in(page, base_url, office)
    page.goto(base_url + "/staff/map")
    expect(page.locator("#queue-map .leaflet-control-attribution")).to_have_text("© Stadt Leipzig")


def test_without_javascript_the_maps_say_so_instead_of_showing_an_empty_box(
    browser: Browser,
    browser_context_args: dict[str, Any],
    base_url: str,
    browser_stack: BrowserStack,
    office: str,
) -> None:
    ticket = report(browser_stack, "Ohne Skript", place={"lat": "51.3397123", "long": "12.3731456"})
    context = browser.new_context(**browser_context_args, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, base_url, office)
        page.goto(base_url + "/staff/map")
        expect(page.locator("#map-status")).to_contain_text("JavaScript")
        expect(page.locator("#queue-map")).to_be_hidden()
        page.goto(f"{base_url}/staff/tickets/{ticket}")
        expect(page.locator("#ticket-map")).to_be_hidden()
        # The place as the page gives it elsewhere, not to the last binary digit.
        # (Rendered text: a <noscript>'s is not in the page's textContent.)
        shown = page.locator("main").inner_text()
        assert "Die Karte braucht JavaScript. Der Ort: 51.33971, 12.37315 (Breite" in shown
    finally:
        context.close()


def test_canned_responses_are_kept_and_fill_the_public_note(
    page: Page, base_url: str, browser_stack: BrowserStack, office: str
) -> None:
    title = f"Termin {secrets.token_hex(2)}"
    report_id = report(browser_stack, "Ampel blinkt", code="004")
    sign_in(page, base_url, office)
    page.goto(base_url + "/staff/canned-responses")
    page.get_by_role("button", name="Hinzufügen").click()
    expect(page.locator(".error-summary")).to_contain_text("Geben Sie einen Titel ein")
    page.get_by_label("Titel", exact=True).first.fill(title)
    page.get_by_label("Text", exact=True).first.fill("Ein Trupp ist für diese Woche eingeplant.")
    page.get_by_role("button", name="Hinzufügen").click()
    expect(page.get_by_role("status")).to_have_text("Der Textbaustein ist gespeichert.")

    page.goto(f"{base_url}/staff/tickets/{report_id}")
    page.get_by_label("Textbaustein").select_option(label=title)
    expect(page.get_by_label("Öffentliche Notiz")).to_have_value(
        "Ein Trupp ist für diese Woche eingeplant."
    )
    page.get_by_label("In Bearbeitung").check()
    page.get_by_role("button", name="Speichern").click()
    expect(page.locator(".timeline .note").first).to_contain_text("Ein Trupp ist")
    status, body = get_json(
        f"{browser_stack.intake}/api/v1/reports/{report_id}", {"Accept": "application/json"}
    )
    assert status == 200
    assert body["history"][-1]["note"] == "Ein Trupp ist für diese Woche eingeplant."
