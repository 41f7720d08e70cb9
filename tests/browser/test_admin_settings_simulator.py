"""Settings and the simulator phone in Chromium (issue 15 points 6 and 8): an operator
edits the purge and sees the message; texts the server from the simulator phone and
sees its reply (the opt-out HELP answer) appear in the thread with its receipt."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, SIMULATOR, Server, queue_server, screenshot, \
    sign_in


TO_CHAT = """
[[inbound]]
name = "default"
destination = "chat"
default = true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The simulator broker with routing on (every SMS to chat): the opt-out keywords
    are answered."""
    root: Path = tmp_path_factory.mktemp("browser-settings")
    running = Server(root, brokers=SIMULATOR, routes=TO_CHAT).start()
    try:
        yield running
    finally:
        running.close()


def test_an_admin_edits_the_purge(page: Page, server: Server) -> None:
    login = server.user("admin")
    sign_in(page, server, login, "/login?next=/admin/settings")
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    screenshot(page, "admin-settings")
    page.get_by_role("link", name="Change the purge or count what it would delete").click()
    expect(page.get_by_role("heading", name="Purge", exact=True)).to_be_visible()
    page.get_by_label("Run the purge every day").check()
    page.get_by_label("Keep data for (days)").fill("1")
    page.get_by_role("button", name="Save the purge settings").click()
    expect(page.locator("#f-days-error")).to_contain_text("greater than 1")
    expect(page.get_by_label("Keep data for (days)")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Keep data for (days)").fill("45")
    page.get_by_label("Note for the history (optional)").fill("six weeks")
    page.get_by_role("button", name="Save the purge settings").click()
    expect(page.get_by_role("status").first).to_have_text("Purge settings saved.")
    expect(page.get_by_label("Keep data for (days)")).to_have_value("45")
    expect(page.get_by_label("Run the purge every day")).to_be_checked()
    expect(page.locator(".facts dd").first).to_contain_text("(server time)")
    page.get_by_role("button", name="Count now (dry run)").click()
    expect(page.locator("p.count")).to_contain_text("0 messages would be deleted now")
    screenshot(page, "admin-settings-purge")
    entry = server.api.get("/api/history").json()["entries"][0]
    assert (entry["source"], entry["actor"], entry["note"]) == ("admin", login, "six weeks")


def test_an_admin_texts_the_simulator_and_sees_the_reply(page: Page, server: Server) -> None:
    login = server.user("admin")
    sign_in(page, server, login, "/login?next=/admin/simulator")
    expect(page.get_by_role("heading", name="Simulator phone")).to_be_visible()
    page.get_by_label("From (the phone's number)").fill("+14155550177")
    page.get_by_label("To (our number)").select_option(label="+15550100 (sim, main)")
    page.get_by_label("Text").fill("HELP")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status").first).to_have_text("Sent from +14155550177.")
    thread = page.locator("#thread")
    expect(thread.locator(".bubble.mine .text")).to_have_text("HELP")
    # The reply comes with the script's next read, its receipt after it.
    reply = thread.locator(".bubble.theirs")
    expect(reply.locator(".text")).to_have_text("Reply STOP to unsubscribe.")
    expect(reply.locator(".badge")).to_have_text(re.compile("delivered"))
    screenshot(page, "admin-simulator")


QUEUES = """
[[queue.queues]]
name = "support"
members = ["bea"]
"""


@pytest.fixture(scope="module")
def queues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with queue_server(tmp_path_factory.mktemp("notices"), QUEUES, ("bea",)) as running:
        yield running


def test_an_admin_overrides_a_queue_notice(page: Page, queues: Server) -> None:
    login = queues.user("admin", password=PASSWORD)
    sign_in(page, queues, login, "/login?next=/admin/settings/notices")
    expect(page.get_by_label("Queue", exact=True)).to_have_value("support")
    page.get_by_label("Use the default (false)").uncheck()
    page.locator("#n-enabled").check()
    page.get_by_role("button", name="Save this queue's notices").click()
    expect(page.locator("#saved")).to_have_text("Saved.")
    notices = queues.api.get("/api/queues/support/notices").json()
    assert notices["overrides"] == {"enabled": True}
    expect(page.get_by_label("Use the default (false)")).not_to_be_checked()
    screenshot(page, "admin-settings-notices")
