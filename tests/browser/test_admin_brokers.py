"""Brokers and accounts in Chromium (issue 15 point 2): an operator adds a broker
account from the broker's page and sees it listed; the password typed never comes
back into the page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, screenshot, sign_in

PASSWORD_TYPED = "tok-3f9a-browser"


def test_an_operator_adds_a_broker_account_and_sees_it_listed(page: Page,
                                                              server: Server) -> None:
    login = server.user("admin", display_name="Ada Admin")
    sign_in(page, server, login, "/login?next=/admin/brokers")
    expect(page.get_by_role("heading", name="Brokers", exact=True)).to_be_visible()
    brokers = page.get_by_role("table", name="Broker instances (1)")
    expect(brokers.get_by_role("link", name="sim", exact=True)).to_be_visible()
    expect(brokers.get_by_text("running")).to_be_visible()
    screenshot(page, "admin-brokers")

    brokers.get_by_role("link", name="sim", exact=True).click()
    expect(page.get_by_role("heading", name="Broker sim")).to_be_visible()
    expect(page.get_by_label("MO (incoming messages)")).to_have_value(
        re.compile(r"^https?://[^/]+/simulator/mo$"))
    page.get_by_role("link", name="Add an account").click()
    page.get_by_label("Account id").fill("sales")
    page.get_by_label("Local address").fill("+15550177")
    page.get_by_label("Login").fill("sales-login")
    page.get_by_label("New value (empty keeps the current one)").fill(PASSWORD_TYPED)
    page.get_by_label("Custom attributes").fill("team = sales")
    page.get_by_role("button", name="Add the account").click()

    expect(page.get_by_role("status")).to_contain_text("Account sales added to sim.")
    accounts = page.get_by_role("table", name="Accounts of sim (2)")
    row = accounts.get_by_role("row").filter(has_text="sales-login")
    expect(row).to_contain_text("+15550177")
    expect(row).to_contain_text("set")
    expect(row).to_contain_text("team = sales")
    assert PASSWORD_TYPED not in page.content()
    screenshot(page, "admin-broker")
    shown = server.api.get("/api/config/brokers/sim/accounts/sales").json()
    assert shown["password"] == {"set": True, "from": "inline"}
