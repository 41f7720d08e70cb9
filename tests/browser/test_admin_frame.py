"""The admin frame in Chromium (issue 15 point 9): sign in to /admin, move through the
navigation with the keyboard, an agent is refused."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, screenshot, sign_in


def test_an_admin_signs_in_to_the_dashboard_and_uses_the_keyboard(page: Page,
                                                                   server: Server) -> None:
    login = server.user("admin", display_name="Ada Admin")
    sign_in(page, server, login, "/login?next=/admin")
    expect(page).to_have_url(server.url("/admin"))
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_contain_text("Ada Admin")
    nav = page.get_by_role("navigation", name="Admin sections")
    expect(nav.get_by_role("link", name="Dashboard")).to_have_attribute("aria-current", "page")
    page.keyboard.press("Tab")  # the skip link comes first
    expect(page.get_by_role("link", name="Skip to the page")).to_be_focused()
    screenshot(page, "admin-frame")


def test_an_agent_is_refused_the_admin(page: Page, server: Server) -> None:
    login = server.user("agent")
    sign_in(page, server, login, "/login?next=/admin")
    expect(page.get_by_role("heading", name="403 Forbidden")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("needs the read right")
    expect(page.get_by_role("link", name="Go to the agent desk")).to_be_visible()
