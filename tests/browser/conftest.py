"""Pages tested in a real browser: Debian's Chromium driven by Playwright for Python.

* ``server``: one real smshost per test module (tests/outbound/conftest.py's
  :class:`Smshost`: uvicorn on a free 127.0.0.1 port in a thread, a temporary config
  and data folder, the simulator broker), with :meth:`Server.user` to make a user
  through the API. Tests make their own users, so they do not see each other's. A test
  needing other brokers, routes or sinks starts its own :class:`Server`.
* ``browser``: one Chromium per test module, ``/usr/bin/chromium`` (``SMSHOST_CHROMIUM``
  names another), launched by Playwright with ``executable_path``: Playwright's own
  browser download (``playwright install``) is never used, and nothing here needs the
  network. Playwright gives each launch a fresh temporary profile (user-data-dir).
  Per module, not per session: while Playwright's sync API runs, the test thread has
  its event loop marked running, and every later test calling ``asyncio.run`` fails
  ("cannot be called from a running event loop"); a module's end stops it.
* ``page``: a new browser context (no cookies) and page per test, with bounded
  timeouts: every wait is Playwright's ``expect``/``wait_for`` with a timeout, never a
  sleep.
* :func:`screenshot` saves a page to ``build/screenshots`` (``SMSHOST_SCREENSHOTS``).

Without Chromium these tests FAIL and say how to install it (``bash
.ci/system-packages``, which CI runs); ``SMSHOST_SKIP_BROWSER=1`` skips them on purpose.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.outbound.conftest import Smshost

CHROMIUM = os.environ.get("SMSHOST_CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = (f"the browser tests need Debian's Chromium at {CHROMIUM}: install it with "
                "`bash .ci/system-packages` (apt-get install chromium, as root or with "
                "sudo), or set SMSHOST_SKIP_BROWSER=1 to skip them on purpose")
#: Chromium's flags: no sandbox (CI runs as root), no GPU, nothing fetched in the
#: background (updates, sync, component downloads: this machine's network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 5_000  # every action and expectation of a page
LAPTOP = {"width": 1366, "height": 768}
PASSWORD = "correct horse battery"
SIMULATOR = """
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "http"

[[brokers.accounts]]
id = "main"
local_address = "+15550100"
"""


def require_chromium() -> None:
    """Fail (not skip) without Chromium, saying how to install it; skip only on request."""
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("SMSHOST_SKIP_BROWSER") == "1":
            pytest.skip(f"SMSHOST_SKIP_BROWSER=1. {INSTALL_HINT}")
        pytest.fail(INSTALL_HINT, pytrace=False)


class Server(Smshost):
    """The session's smshost, and the users the tests make on it."""

    def user(self, *roles: str, display_name: str = "", password: str = PASSWORD) -> str:
        """A new user with ``roles`` and ``password``, made through the API; its login."""
        login = f"u{secrets.token_hex(4)}"
        answer = self.api.post("/api/users", json={
            "login": login, "display_name": display_name, "roles": list(roles),
            "password": password})
        assert answer.status_code == 201, answer.text
        return login

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("browser-smshost")
    running = Server(root, brokers=SIMULATOR).start()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    require_chromium()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                          headless=True, timeout=30_000)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page of its own context (no cookies of other tests), a laptop's screen."""
    context = browser.new_context(viewport=LAPTOP, service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        yield opened
    finally:
        context.close()
    assert not problems, problems  # a script error on a page fails its test


SCREENSHOTS = Path(os.environ.get("SMSHOST_SCREENSHOTS")
                   or Path(__file__).resolve().parents[2] / "build" / "screenshots")
"""Where the tests save screenshots of the pages they visit, for a reviewer (and for
docs/administration.md): ``build/screenshots`` (not committed) unless
``SMSHOST_SCREENSHOTS`` names another folder."""


DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
"""Where ``make screenshots`` (``SMSHOST_DOCS_IMAGES=1``) puts the pictures of
docs/administration.md's walkthrough."""


def screenshot(page: Page, name: str, *, full_page: bool = True, docs: bool = False) -> Path:
    """Save what ``page`` shows as ``<SCREENSHOTS>/<name>.png``; its path. ``docs``: a
    picture of the documentation, also saved (the window only, as a small JPEG) to
    docs/images/<name>.jpg when ``SMSHOST_DOCS_IMAGES=1`` (``make screenshots``)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs and os.environ.get("SMSHOST_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / f"{name}.jpg"), type="jpeg", quality=70)
    return path


def sign_in(page: Page, server: Server, login: str, path: str = "/login",
            password: str = PASSWORD) -> None:
    """Sign in through the sign-in form (``path`` may carry a ``next``)."""
    page.goto(server.url(path))
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def focused(page: Page) -> dict[str, Any]:
    """What has the keyboard focus: its tag, id, name, type and text."""
    found: dict[str, Any] = page.evaluate(
        "() => { const e = document.activeElement; return {tag: e.tagName.toLowerCase(), "
        "id: e.id, name: e.getAttribute('name'), type: e.getAttribute('type'), "
        "text: (e.textContent || '').trim()}; }")
    return found


TO_SUPPORT = """
[[inbound]]
name = "default"
destination = "queue"
target = "support"
default = true
"""
"""routes.toml sending every SMS to the workgroup queue "support"."""


@contextlib.contextmanager
def queue_server(root: Path, sinks: str, agents: tuple[str, ...]) -> Iterator[Server]:
    """A server with the queue sink's ``sinks`` (workgroups imported from it) and every
    SMS routed to "support"; each of ``agents`` an agent with :data:`PASSWORD`."""
    running = Server(root, brokers=SIMULATOR, routes=TO_SUPPORT, sinks=sinks).start()
    try:
        for login in agents:
            made = running.api.patch(f"/api/users/{login}", json={
                "password": PASSWORD, "roles": ["agent"], "display_name": login.title()})
            assert made.status_code == 200, made.text
        yield running
    finally:
        running.close()
