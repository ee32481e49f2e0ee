"""Browser tests of web over the real stack (see :mod:`devstack.browser`): started once per
session; the citizen pages' and the staff console's tests share it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.browser import CHROMIUM, CHROMIUM_ARGS, PHONE, BrowserStack, running_browser_stack

TEST_DATABASE = os.environ.get("MM_TEST_DATABASE", "mangelmelder_test") + "_browser"


BROWSER_FIXTURES = {"page", "browser", "context", "browser_stack"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps its event loop running in the main
    thread from the first browser test to the end of the session, and no asyncio test can run
    after it (pytest-asyncio's runner refuses a running loop)."""
    items.sort(key=lambda item: bool(BROWSER_FIXTURES & set(getattr(item, "fixturenames", ()))))


@pytest.fixture(scope="session")
def browser_stack() -> Iterator[BrowserStack]:
    with running_browser_stack(TEST_DATABASE) as stack:
        yield stack


# pytest-playwright's fixtures, pointed at Debian's chromium (Playwright cannot download its own
# browser builds here) and at the browser stack's web.
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": PHONE, "locale": "de-DE"}


@pytest.fixture(scope="session")
def base_url(browser_stack: BrowserStack) -> str:
    return browser_stack.web
