"""A citizen reports a defect in a real browser on a phone, over the real stack."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from devstack.browser import MARKT, OUTSIDE, RATE_LIMIT_PER_EMAIL, BrowserStack, wait_until
from devstack.pictures import phone_jpeg
from devstack.testing import body_text

REPORT_ID = re.compile(r"/reports/([0-9a-f-]{36})")


def outlines_drawn(page: Page) -> None:
    expect(page.locator("#form-map svg path").first).to_be_attached()


def click_map(page: Page, at: tuple[float, float] = (0.5, 0.5)) -> None:
    """Click the form's map at a fraction of its size, once the outlines are drawn."""
    outlines_drawn(page)
    box = page.locator("#form-map").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * at[0], box["y"] + box["height"] * at[1])


def pin_at(page: Page, lat: float, long: float) -> None:
    """Place the pin through the coordinate fields (the map follows them)."""
    page.fill("#lat", str(lat))
    page.fill("#long", str(long))
    page.locator("#long").dispatch_event("change")


def report_id_of(page: Page) -> str:
    found = REPORT_ID.search(page.url)
    assert found, page.url
    return found.group(1)


def test_a_citizen_reports_with_map_and_photo_and_follows_it(
    page: Page, browser_stack: BrowserStack, tmp_path: Any
) -> None:
    photo = tmp_path / "schlagloch.jpg"
    photo.write_bytes(phone_jpeg(3000, 2250))  # GPS EXIF, larger than 2,000 px
    page.goto("/")
    page.select_option("#service_code", "008")
    click_map(page)
    expect(page.locator("#place-status")).to_have_text(re.compile("innerhalb von Leipzig"))
    assert page.input_value("#lat")
    assert page.input_value("#long")
    page.set_input_files("#photos", str(photo))
    expect(page.locator("#photos-status")).to_have_text(re.compile("1 Foto"))
    page.fill("#description", "Ast hängt tief über dem Gehweg")
    page.fill("#email", "e2e@example.org")
    page.click("#send")

    expect(page.locator("h1")).to_have_text("Meldung gesendet")
    report_id = report_id_of(page)
    tracking = page.locator("#tracking-link")
    expect(tracking).to_have_attribute("href", f"{browser_stack.web}/reports/{report_id}")

    # The photo was scaled in the browser (at most 2,000 px) and arrived without its GPS tags.
    stored = browser_stack.report(report_id)["photos"]
    assert len(stored) == 1
    original = httpx.get(
        stored[0]["original_url"].replace("http://127.0.0.1:8000", browser_stack.intake)
    )
    image = Image.open(io.BytesIO(original.content))
    assert max(image.size) <= 2000
    assert 0x8825 not in image.getexif()

    # The report page names the office once geo-router has routed it.
    def office_shown() -> bool:
        page.goto(f"/reports/{report_id}")
        return "wird ermittelt" not in page.locator("#office").inner_text()

    wait_until(office_shown)
    expect(page.locator("#office")).to_have_text(re.compile("Stadtgrün|Amt"))
    expect(page.locator(".photos img")).to_have_count(1)

    # The reporter's mail links to this page on web.
    mail = wait_until(lambda: browser_stack.mails_to("e2e@example.org"))
    assert f"{browser_stack.web}/reports/{report_id}" in body_text(mail[0])


def test_a_second_report_nearby_shows_the_duplicate_and_this_is_mine_too_follows_it(
    page: Page, browser_stack: BrowserStack
) -> None:
    near = (51.3301, 12.3598)
    first = browser_stack.submit(*near, service_code="011", description="Graffiti am Trafohaus")
    page.goto("/")
    page.select_option("#service_code", "011")
    pin_at(page, near[0] + 0.0001, near[1])
    nearby = page.locator("#nearby")
    expect(nearby).to_be_visible()
    expect(nearby).to_contain_text("Graffiti am Trafohaus")
    # "Graffiti – zugewiesen" and "15 m entfernt · …" are two lines, not run together.
    expect(nearby.locator(".meta").first).to_have_css("display", "block")
    page.fill("#email", "metoo@example.org")
    nearby.get_by_role("button", name="Das ist auch meins").first.click()

    expect(page.locator("h1")).to_have_text("Sie folgen der Meldung")
    expect(page.get_by_role("link", name="Die Meldung ansehen")).to_have_attribute(
        "href", f"/reports/{first}"
    )


def test_a_different_defect_nearby_is_sent_after_saying_so(
    page: Page, browser_stack: BrowserStack
) -> None:
    near = (51.3352, 12.3651)
    browser_stack.submit(*near, service_code="006")
    page.goto("/")
    page.select_option("#service_code", "006")
    pin_at(page, *near)
    expect(page.locator("#nearby")).to_be_visible()
    page.click("#nearby-different")
    expect(page.locator("#nearby")).to_be_hidden()
    page.click("#send")
    expect(page.locator("h1")).to_have_text("Meldung gesendet")


@pytest.mark.parametrize("path", ["/", "/reports"])
def test_the_pages_do_not_shift_when_their_scripts_run(page: Page, path: str) -> None:
    """The maps, their buttons and the category questions are in place from the first paint:
    nothing moves under the citizen's thumb when the deferred scripts run (Lighthouse's
    cumulative layout shift; the form's was 0.53 when the scripts unhid the map)."""
    shifts: list[float] = []
    page.expose_function("layoutShift", lambda value: shifts.append(value))
    page.add_init_script(
        "new PerformanceObserver(list => list.getEntries().forEach("
        "e => { if (!e.hadRecentInput) window.layoutShift(e.value); })"
        ").observe({type: 'layout-shift', buffered: true});"
    )
    page.goto(path)
    if path == "/":
        outlines_drawn(page)
    page.wait_for_load_state("networkidle")
    assert sum(shifts) < 0.01, shifts


def test_a_click_outside_the_city_says_so_before_sending(page: Page) -> None:
    page.goto("/")
    page.select_option("#service_code", "001")
    click_map(page, at=(0.97, 0.08))  # the map shows the whole city; its corner lies outside
    status = page.locator("#place-status")
    expect(status).to_have_text(re.compile("außerhalb von Leipzig"))
    expect(status).to_have_class(re.compile("is-outside"))
    page.click("#send")  # intake refuses too: the message stands beside the place
    expect(page.locator("#place-error")).to_contain_text("außerhalb von Leipzig")


@pytest.fixture
def no_js_page(browser: Browser, browser_context_args: dict[str, Any]) -> Any:
    context = browser.new_context(**browser_context_args, java_script_enabled=False)
    yield context.new_page()
    context.close()


def test_the_same_submission_works_without_javascript(
    no_js_page: Page, browser_stack: BrowserStack, tmp_path: Any
) -> None:
    page = no_js_page
    photo = tmp_path / "laterne.jpg"
    photo.write_bytes(phone_jpeg())
    page.goto(browser_stack.web + "/")
    expect(page.locator("#form-map")).to_be_hidden()
    # Nor the map's status line: it would only leave a gap above the coordinates.
    expect(page.locator("#place-status")).to_be_hidden()
    page.select_option("#service_code", "003")
    page.fill("#attribute-003-pole_number", "12-345")
    page.fill("#lat", "51,3455")  # a German decimal comma is fine
    page.fill("#long", "12.3810")
    page.set_input_files("#photos", str(photo))
    page.fill("#description", "Laterne flackert")
    page.click("#send")
    expect(page.locator("h1")).to_have_text("Meldung gesendet")
    report = browser_stack.report(report_id_of(page))
    assert report["service_code"] == "003"
    assert len(report["photos"]) == 1

    # The same place and kind again: without JavaScript the duplicate shows after sending.
    page.goto(browser_stack.web + "/")
    page.select_option("#service_code", "003")
    page.fill("#lat", "51.3455")
    page.fill("#long", "12.3810")
    page.click("#send")
    expect(page.locator("h1")).to_have_text("Wurde das schon gemeldet?")
    expect(page.locator(".report-list li")).to_have_count(1)
    page.get_by_role("button", name="Als neuen Mangel senden").click()
    expect(page.locator("h1")).to_have_text("Meldung gesendet")


def test_without_javascript_a_place_outside_the_city_is_refused_beside_the_field(
    no_js_page: Page, browser_stack: BrowserStack
) -> None:
    page = no_js_page
    page.goto(browser_stack.web + "/")
    page.select_option("#service_code", "001")
    page.fill("#lat", str(OUTSIDE[0]))
    page.fill("#long", str(OUTSIDE[1]))
    page.click("#send")
    expect(page.locator("#error-summary")).to_contain_text("außerhalb von Leipzig")
    expect(page.locator("#lat")).to_have_attribute("aria-invalid", "true")
    # The optional address is not what is wrong: it keeps its black border.
    expect(page.locator("#address")).to_have_css("border-top-color", "rgb(11, 12, 12)")
    expect(page.locator("#lat")).to_have_css("border-top-color", "rgb(177, 14, 30)")
    expect(page.locator("#service_code")).to_have_value("001")  # what was entered stays


def tab_to(page: Page, element_id: str, limit: int = 60) -> None:
    """Press Tab until the element has the focus (fails if it is not reachable)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} not reached with the Tab key")


def test_the_whole_form_can_be_completed_with_the_keyboard(
    page: Page, browser_stack: BrowserStack
) -> None:
    page.goto("/")
    outlines_drawn(page)
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    tab_to(page, "service_code")
    for _ in range(3):  # "Bitte wählen" → 001 → 002 → 003 "Straßenbeleuchtung defekt"
        page.keyboard.press("ArrowDown")
    expect(page.locator("#service_code")).to_have_value("003")
    tab_to(page, "attribute-003-pole_number")
    page.keyboard.type("7-12")
    tab_to(page, "form-map")
    page.keyboard.press("ArrowUp")  # pan a little, then pin the centre
    page.keyboard.press("Enter")
    expect(page.locator("#place-status")).to_have_text(re.compile("innerhalb von Leipzig"))
    tab_to(page, "description")
    page.keyboard.type("Laterne aus, nur mit der Tastatur gemeldet")
    tab_to(page, "email")
    page.keyboard.type("keys@example.org")
    tab_to(page, "send")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Meldung gesendet")
    report = browser_stack.report(report_id_of(page))
    assert report["description"] == "Laterne aus, nur mit der Tastatur gemeldet"


def test_my_location_places_the_pin(
    browser: Browser, browser_context_args: dict[str, Any], browser_stack: BrowserStack
) -> None:
    context = browser.new_context(
        **browser_context_args,
        geolocation={"latitude": MARKT[0], "longitude": MARKT[1]},
        permissions=["geolocation"],
    )
    page = context.new_page()
    page.goto(browser_stack.web + "/")
    page.click("#locate")
    expect(page.locator("#lat")).to_have_value(f"{MARKT[0]:.6f}")
    expect(page.locator("#place-status")).to_have_text(re.compile("innerhalb von Leipzig"))
    context.close()


def test_after_the_limit_per_email_address_a_friendly_429(
    no_js_page: Page, browser_stack: BrowserStack
) -> None:
    page = no_js_page
    statuses = []
    for i in range(RATE_LIMIT_PER_EMAIL + 1):
        page.goto(browser_stack.web + "/")
        page.select_option("#service_code", "013")
        page.fill("#lat", f"{51.30 + i * 0.002:.4f}")
        page.fill("#long", "12.40")
        page.fill("#email", "eager@example.org")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("#send")
        statuses.append(answer.value.status)
    assert statuses == [303] * RATE_LIMIT_PER_EMAIL + [429]
    assert int(answer.value.headers["retry-after"]) > 0
    expect(page.locator("h1")).to_have_text("Bitte einen Moment Geduld")
