"""The dashboard and the handlers page in Chromium (issue 15 points 1 and 8): the
dashboard's figures and chart change by themselves when an SMS arrives (its live
stream, no reload); the handlers page's dry run from its form."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, screenshot, sign_in


def test_the_dashboard_updates_live_when_an_sms_arrives(page: Page, server: Server) -> None:
    login = server.user("supervisor", display_name="Sue Supervisor")
    sign_in(page, server, login, "/login?next=/admin")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    dashboard = page.locator("#dashboard")
    expect(dashboard).to_have_attribute("data-updated", "1")  # the stream's first figures
    expect(page.locator('[data-f="traffic.in"]')).to_have_text("0")  # a new server
    drawn = page.locator('#chart rect.in:not([height="0"])')
    expect(drawn).to_have_count(0)
    made = server.api.post("/api/simulator/mo", json={"from": "+14155550123",
                                                      "text": "hello dashboard"})
    assert made.status_code == 201, made.text
    expect(page.locator('[data-f="traffic.in"]')).to_have_text("1")
    expect(drawn).to_have_count(1)  # the bar of the minute it came in
    expect(page.locator("#reshaped")).to_be_hidden()
    expect(page.get_by_role("figure")).to_contain_text("Messages per minute")
    screenshot(page, "admin-dashboard")


def test_an_admin_runs_a_handler_from_the_handlers_page(page: Page, server: Server) -> None:
    login = server.user("admin")
    sign_in(page, server, login, "/login?next=/admin/handlers")
    expect(page.get_by_role("heading", name="Handlers", exact=True)).to_be_visible()
    page.get_by_label("Handler").select_option("CustomSMSRoutingToHandler")
    page.get_by_label("Message text").fill("hours")
    page.get_by_role("button", name="Run the handler").click()
    expect(page.locator("#result h3")).to_have_text("What CustomSMSRoutingToHandler would do")
    expect(page.locator("#actions")).to_contain_text("reply to +15005550006: We are open")
    screenshot(page, "admin-handlers")
