"""The route pages in Chromium (issue 15 point 3): add an inbound route, move it above
another and see the route tester pick it; add an outbound route and preview the
number it sends to. Screenshots admin-routes.png and admin-outbound.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import SIMULATOR, Server, screenshot, sign_in

ROUTES = """\
[routing]
enabled = false

[[inbound]]
name = "sales"
pattern = "(?i)sales.*"
destination = "chat"

[[inbound]]
name = "default"
default = true
destination = "chat"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("browser-routes")
    running = Server(root, brokers=SIMULATOR, routes=ROUTES).start()
    try:
        yield running
    finally:
        running.close()


def test_add_a_route_move_it_up_and_the_tester_picks_it(page: Page, server: Server) -> None:
    sign_in(page, server, server.user("admin"), "/login?next=/admin/routes")
    expect(page.get_by_role("heading", name="Inbound routes")).to_be_visible()
    page.get_by_role("link", name="Add a route").click()
    page.get_by_label("Name").fill("vip")
    page.get_by_label("Match on").select_option("ani")
    page.get_by_label("Pattern").fill(r"\+1415.*")
    page.get_by_label("Destination").select_option("chat")
    page.get_by_label("Note for the history (optional)").fill("VIP senders")
    screenshot(page, "admin-routes-add")
    page.get_by_role("button", name="Add the route").click()
    expect(page.get_by_role("status").first).to_have_text("Added inbound route 'vip'.")
    rows = page.locator("table.routes tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text("vip")

    tester = page.locator("form.tester")
    tester.get_by_label("From (ANI)").fill("(415) 555-0199")
    tester.get_by_label("Text").fill("Sales, please")
    tester.get_by_role("button", name="Test").click()
    result = page.locator(".tester-result")
    expect(result.locator(".taken")).to_have_text("sales")

    page.get_by_role("button", name="Move vip up").click()
    expect(page.get_by_role("status").first).to_have_text("Moved inbound route 'vip' up.")
    expect(rows.nth(0)).to_contain_text("vip")
    page.locator("form.tester").get_by_label("From (ANI)").fill("(415) 555-0199")
    page.locator("form.tester").get_by_label("Text").fill("Sales, please")
    page.locator("form.tester").get_by_role("button", name="Test").click()
    expect(result.locator(".taken")).to_have_text("vip")
    expect(result).to_contain_text("from +14155550199")
    expect(page).to_have_url(server.url("/admin/routes?ani=%28415%29+555-0199&dnis=&"
                                        "region=US&body=Sales%2C+please#tester-title"))
    screenshot(page, "admin-routes")


def test_add_an_outbound_route_and_preview_the_number(page: Page, server: Server) -> None:
    sign_in(page, server, server.user("admin"), "/login?next=/admin/outbound")
    page.get_by_role("link", name="Add an outbound route").click()
    page.get_by_label("Name").fill("uk")
    page.get_by_label("Pattern").fill(r"0(\d{10})")
    page.get_by_label("Send to").fill("+44$1")
    page.get_by_label("Broker").select_option("sim")
    page.get_by_label("Account").select_option("main")
    page.get_by_role("button", name="Add the route").click()
    expect(page.get_by_role("status").first).to_have_text("Added outbound route 'uk'.")
    page.get_by_role("textbox", name="Number").fill("07700900123")
    page.get_by_role("button", name="Preview").click()
    result = page.locator(".tester-result")
    expect(result.locator(".taken")).to_have_text("uk")
    expect(result.locator(".number")).to_have_text("+447700900123")
    screenshot(page, "admin-outbound")
