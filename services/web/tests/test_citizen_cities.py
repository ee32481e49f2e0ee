"""One web front, several cities: Köln at ``/koeln/`` and at its own host name, Leipzig (the
configured default) at ``/``; an unknown city is a friendly 404. The Köln tests need intake's
list of jurisdictions (``GET /api/v1/jurisdictions``) and are skipped without it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from devstack.browser import DOM, KOELN_HOST, BrowserStack, axe_violations, get_json, wait_until
from devstack.processes import ROOT

LINK = re.compile(r'(?:href|action|data-geojson)="(/[^"]*)"')
SCREENSHOTS = ROOT / "var" / "test-screenshots"


def own_links(html: str) -> list[str]:
    """The page's links to web's pages (not its static files or the language switch)."""
    return [
        link for link in LINK.findall(html) if not link.startswith(("/static/", "/language/", "//"))
    ]


@pytest.fixture(scope="module")
def koeln(browser_stack: BrowserStack) -> None:
    """Köln is served: intake lists it (once geo-router's boundary reached it) and web has
    picked up the list."""
    if not browser_stack.has_endpoint("intake", "GET", "/api/v1/jurisdictions"):
        pytest.skip(
            "intake has no GET /api/v1/jurisdictions (branch city-intake): web serves the "
            "default city only"
        )

    def listed() -> bool:
        status, body = get_json(f"{browser_stack.intake}/api/v1/jurisdictions")
        return status == 200 and "koeln" in {j["code"] for j in body["jurisdictions"]}

    assert wait_until(listed, 60), browser_stack.koeln_not_loaded
    wait_until(lambda: httpx.get(f"{browser_stack.web}/koeln/").status_code == 200, 30)


def test_an_unknown_city_is_a_friendly_404_that_leads_home(browser_stack: BrowserStack) -> None:
    for path in ("/atlantis/", "/atlantis/reports", "/atlantis"):
        answer = httpx.get(browser_stack.web + path)
        assert answer.status_code == 404
        assert "Seite nicht gefunden" in answer.text
        assert 'href="/"' in answer.text


def test_the_default_city_is_at_the_root(browser_stack: BrowserStack) -> None:
    form = httpx.get(f"{browser_stack.web}/")
    assert form.status_code == 200
    assert "<title>Einen Mangel melden – Mängelmelder Leipzig</title>" in form.text
    links = own_links(form.text)
    assert {"/", "/reports", "/alerts"} <= set(links)
    # The city's staff console, static files and the language switch are not per city.
    assert httpx.get(f"{browser_stack.web}/leipzig/staff/").status_code == 404


def test_koelns_pages_name_it_and_stay_within_its_prefix(
    browser_stack: BrowserStack, koeln: None
) -> None:
    web = browser_stack.web
    moved = httpx.get(f"{web}/koeln")
    assert moved.status_code == 308
    assert moved.headers["location"] == "/koeln/"
    form = httpx.get(f"{web}/koeln/")
    assert "<title>Einen Mangel melden – Mängelmelder Köln</title>" in form.text
    assert "Leipzig" not in form.text
    # Graffiti is switched off in Köln's manifest.
    assert 'value="011"' not in form.text
    assert 'value="011"' in httpx.get(f"{web}/").text
    # Centred on Köln: intake's bounding box of the city.
    [box] = re.findall(r'data-bbox="([^"]+)"', form.text)
    min_long, min_lat, max_long, max_lat = map(float, box.split(","))
    assert min_long < DOM[1] < max_long
    assert min_lat < DOM[0] < max_lat
    for path in ("/koeln/", "/koeln/reports", "/koeln/alerts"):
        page = httpx.get(web + path)
        assert page.status_code == 200, path
        links = own_links(page.text)
        assert links
        assert all(link.startswith("/koeln/") for link in links), (path, links)
    alerts = httpx.get(f"{web}/koeln/alerts").text
    assert "Altstadt/Süd" in alerts or "Altstadt-Süd" in alerts
    assert "Grünau" not in alerts
    # The map's outlines are Köln's Stadtteile, its outline level marked.
    areas = httpx.get(f"{web}/koeln/areas.geojson").json()["features"]
    assert len(areas) >= 80
    assert all(a["properties"]["outline"] for a in areas)


def test_koeln_at_its_own_host_name_is_at_the_root(
    browser_stack: BrowserStack, koeln: None
) -> None:
    form = httpx.get(f"{browser_stack.web}/", headers={"Host": KOELN_HOST})
    assert "<title>Einen Mangel melden – Mängelmelder Köln</title>" in form.text
    assert {"/", "/reports", "/alerts"} <= set(own_links(form.text))


def test_a_citizen_reports_in_koeln_without_javascript(
    browser: Browser, browser_context_args: dict[str, Any], browser_stack: BrowserStack, koeln: None
) -> None:
    context = browser.new_context(**browser_context_args, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto("/koeln/")
        page.select_option("#service_code", "001")
        page.fill("#lat", str(DOM[0]))
        page.fill("#long", str(DOM[1]))
        page.fill("#description", "Schlagloch vor dem Dom")
        page.click("#send")
        expect(page.locator("h1")).to_have_text("Meldung gesendet")
        found = re.search(r"/koeln/reports/([0-9a-f-]{36})/sent", page.url)
        assert found, page.url
        report_id = found.group(1)
        assert browser_stack.report(report_id)["jurisdiction"] == "koeln"
        # The mails' link has no prefix: it leads to the report as Köln's.
        page.goto(f"/reports/{report_id}")
        assert page.url.endswith(f"/koeln/reports/{report_id}")
        expect(page.locator(".site-name")).to_have_text("Mängelmelder Köln")
    finally:
        context.close()


@pytest.mark.parametrize("width", [390, 1280])
def test_koelns_form_and_map_look_right_and_pass_axe(
    browser: Browser,
    browser_context_args: dict[str, Any],
    browser_stack: BrowserStack,
    koeln: None,
    width: int,
) -> None:
    """Screenshots for a person to look at (var/test-screenshots/), and axe-core."""
    context = browser.new_context(
        **{**browser_context_args, "viewport": {"width": width, "height": 900}}
    )
    page = context.new_page()
    try:
        for name, path, map_id in (
            ("form", "/koeln/", "#form-map"),
            ("map", "/koeln/reports", "#reports-map"),
        ):
            page.goto(path)
            expect(page.locator(f"{map_id} svg path").first).to_be_attached()
            page.wait_for_load_state("networkidle")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot: Path = SCREENSHOTS / f"koeln-{name}-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert axe_violations(page) == [], path
    finally:
        context.close()
