"""Debian's Chromium through Playwright, for the client's status page (as the dashboard's
browser tests use it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A name of another site that resolves to 127.0.0.1, as DNS rebinding makes it.
    "--host-resolver-rules=MAP rebind.example 127.0.0.1",
]
BROWSER_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module (Playwright's sync API keeps an event loop running in the
    main thread while active: tests use asyncio.run() only outside its use)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()
