"""axe-core finds no WCAG 2.1 A/AA violation on any citizen page, in German and English, with
JavaScript on and off (BITV 2.0 / EN 301 549)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from devstack.browser import OUTSIDE, BrowserStack, axe_violations


@pytest.fixture(scope="module")
def report_id(browser_stack: BrowserStack) -> str:
    return browser_stack.submit(
        51.3380,
        12.3770,
        service_code="005",
        description="Sperrmüll",
        attributes={"waste_type": ["bulky"]},
    )


@pytest.fixture(params=["de", "en"])
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
def visitor(
    request: pytest.FixtureRequest,
    browser: Browser,
    browser_context_args: dict[str, Any],
    lang: str,
) -> Iterator[Page]:
    context = browser.new_context(
        **{**browser_context_args, "locale": "de-DE" if lang == "de" else "en-GB"},
        extra_http_headers={"Accept-Language": lang},
    )
    if not request.param:
        # The pages as a browser without JavaScript shows them: none of their scripts runs (the
        # one inline script, which marks a page as scripted, takes its mark back when a script
        # fails to load). JavaScript itself stays on, since axe-core runs as a script.
        context.route(re.compile(r"\.js(\?|$)"), lambda route: route.abort())
    yield context.new_page()
    context.close()


#: Places inside the city, ~110 m apart.
PLACES = ((51.3000 + i * 0.001, 12.4100) for i in itertools.count())


def settled(page: Page) -> None:
    """Wait until the scripts have drawn what they draw (maps, markers)."""
    page.wait_for_load_state("networkidle")


PAGES = ["/", "/reports", "/reports?status=all&page=1", "/alerts", "/does-not-exist"]


@pytest.mark.parametrize("path", PAGES)
def test_no_violations_on_the_public_pages(
    visitor: Page, browser_stack: BrowserStack, path: str, lang: str
) -> None:
    visitor.goto(browser_stack.web + path)
    settled(visitor)
    expect(visitor.locator("html")).to_have_attribute("lang", lang)
    assert axe_violations(visitor) == []


def test_no_violations_on_the_report_page_and_the_reporters_view(
    visitor: Page, browser_stack: BrowserStack, report_id: str
) -> None:
    visitor.goto(f"{browser_stack.web}/reports/{report_id}")
    settled(visitor)
    assert axe_violations(visitor) == []
    visitor.goto(f"{browser_stack.web}/reports/{report_id}?token=not-checked-by-web")
    settled(visitor)
    assert axe_violations(visitor) == []


def test_the_question_before_deleting_contact_data_works_with_the_keyboard(
    visitor: Page, browser_stack: BrowserStack, report_id: str, lang: str
) -> None:
    mine = f"{browser_stack.web}/reports/{report_id}?token=not-checked-by-web"
    visitor.goto(mine)
    erase = "Kontaktdaten löschen" if lang == "de" else "Delete contact data"
    visitor.get_by_role("button", name=erase).focus()
    visitor.keyboard.press("Enter")
    expect(visitor.locator("h1")).to_have_text(
        "Kontaktdaten wirklich löschen?" if lang == "de" else "Delete your contact data?"
    )
    settled(visitor)
    assert axe_violations(visitor) == []
    # From the question's answer, Tab reaches the way back.
    visitor.get_by_role("button", name="Ja, löschen" if lang == "de" else "Yes, delete").focus()
    visitor.keyboard.press("Tab")
    expect(
        visitor.get_by_role("link", name="Abbrechen" if lang == "de" else "Cancel")
    ).to_be_focused()
    visitor.keyboard.press("Enter")
    expect(visitor).to_have_url(mine + "#erase-title")


def test_no_violations_on_the_form_with_errors_and_after_sending(
    visitor: Page, browser_stack: BrowserStack, lang: str
) -> None:
    visitor.goto(browser_stack.web + "/")
    visitor.select_option("#service_code", "005")  # a required question left open
    visitor.fill("#lat", str(OUTSIDE[0]))
    visitor.fill("#long", str(OUTSIDE[1]))
    visitor.fill("#email", "not-an-address")
    visitor.click("#send")
    expect(visitor.locator("#error-summary")).to_be_visible()
    settled(visitor)
    assert axe_violations(visitor) == []

    lat, long = next(PLACES)  # a fresh place each time: no duplicate in the way
    visitor.fill("#lat", f"{lat:.5f}")
    visitor.fill("#long", f"{long:.5f}")
    visitor.fill("#email", "")
    visitor.check("#attribute-005-waste_type-rubble")
    visitor.click("#send")
    expect(visitor.locator("h1")).to_have_text(
        "Meldung gesendet" if lang == "de" else "Report sent"
    )
    settled(visitor)
    assert axe_violations(visitor) == []


def test_no_violations_on_the_duplicates_and_follow_pages(
    visitor: Page, browser_stack: BrowserStack, report_id: str
) -> None:
    # Without JavaScript the duplicate shows after sending; with it, before (on the form).
    visitor.goto(browser_stack.web + "/")
    visitor.select_option("#service_code", "005")
    visitor.fill("#lat", "51.3380")
    visitor.fill("#long", "12.3770")
    visitor.locator("#long").dispatch_event("change")
    visitor.check("#attribute-005-waste_type-bulky")
    if visitor.locator("#nearby").is_visible():
        settled(visitor)
        assert axe_violations(visitor) == []
        visitor.locator("#nearby button").first.click()
    else:
        visitor.click("#send")
        settled(visitor)
        assert axe_violations(visitor) == []
        visitor.locator(".report-list button").first.click()
    # No e-mail address given: the follow page asks for one.
    expect(visitor.locator("#email")).to_be_visible()
    settled(visitor)
    assert axe_violations(visitor) == []
