"""The console in a real browser: Playwright driving the system's Chromium
(`/usr/bin/chromium`, Debian's package; `.ci/run` installs it), against a real `sandbox serve`.

Every page is watched: a request to anywhere but the service fails the test (the console must
work on a closed network), and so does an error in the page's console or a refused script."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import Cast, cast_of, run_server

CHROMIUM = Path(os.environ.get("SANDBOX_TEST_CHROMIUM", "/usr/bin/chromium"))
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"the browser tests drive Chromium at {CHROMIUM} (Debian: apt-get install chromium; "
            "or set SANDBOX_TEST_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("console")
    with run_server(root, "local") as server, cast_of(server, root) as cast:
        yield cast


class Watched:
    """A browser tab on the site, with what it asked for and what went wrong in it."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base = page, base
        self.outside: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _request(self, request: Any) -> None:
        url = request.url
        if not (url.startswith(self.base) or url.startswith(("data:", "blob:", "about:"))):
            self.outside.append(url)

    def _response(self, response: Any) -> None:
        # A page may answer 4xx (a refusal shown to the person); its assets may not.
        if response.status >= 400 and response.request.resource_type != "document":
            self.errors.append(f"{response.status} for {response.url}")

    def _console(self, message: Any) -> None:
        # Chromium also reports each 4xx page as a failed load: those are judged above.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None
        return response


@pytest.fixture
def tab(browser: Any, site: Cast) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    watched = Watched(context.new_page(), site.server.url)
    yield watched
    context.close()
    assert not watched.outside, f"requests outside the service: {watched.outside}"
    assert not watched.errors, f"errors in the page: {watched.errors}"


@pytest.fixture
def phone(browser: Any, site: Cast) -> Iterator[Watched]:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
    watched = Watched(context.new_page(), site.server.url)
    yield watched
    context.close()
    assert not watched.outside, f"requests outside the service: {watched.outside}"
    assert not watched.errors, f"errors in the page: {watched.errors}"


def follow(page: Any, target: Any) -> None:
    """Click what loads another page and wait for that page.

    Waiting for the load state after a click can return at once, on the page clicked on, when the
    next page has not begun to load: what the test reads then is the old page or a blank one.
    """
    with page.expect_navigation():
        if isinstance(target, str):
            page.click(target)
        else:
            target.click()


def sign_in(tab: Watched, token: str) -> None:
    tab.go("/signin")
    tab.page.fill("#token", token)
    follow(tab.page, "button[type=submit]")


SHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


def shot(page: Any, name: str) -> None:
    """A picture of the page for the docs, only when asked for (CI writes nothing)."""
    if os.environ.get("SANDBOX_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
