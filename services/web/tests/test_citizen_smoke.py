from playwright.sync_api import Page, expect

from devstack.browser import axe_violations


def test_the_form_page_is_german_by_default(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    assert axe_violations(page) == []
