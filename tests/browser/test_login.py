"""The sign-in page (/login, host.web.ui.login) in Chromium: sign in with a user made
through the API, the wrong-password message, sign out, and the keyboard alone."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Server, focused, sign_in


def test_sign_in_then_sign_out(page: Page, server: Server) -> None:
    login = server.user("admin", display_name="Ada")
    sign_in(page, server, login)
    expect(page).to_have_url(server.url("/login"))
    expect(page.get_by_role("heading", name="Signed in")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {login}")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["smshost_session"]["httpOnly"] is True
    assert page.evaluate("() => document.cookie") == ""  # no script reads the session
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.request.get(server.url("/api/session")).status == 401


def test_a_wrong_password_is_said_and_the_login_kept(page: Page, server: Server) -> None:
    login = server.user("agent")
    sign_in(page, server, login, password="not the password")
    alert = page.get_by_role("alert")
    expect(alert).to_have_text("Wrong login or password.")
    expect(page.get_by_label("Login")).to_have_value(login)
    expect(page.get_by_label("Password")).to_have_value("")
    assert page.request.get(server.url("/api/session")).status == 401


def test_the_keyboard_alone_signs_in(page: Page, server: Server) -> None:
    """Labels name the fields; Tab goes login, password, button; Enter submits."""
    login = server.user("agent")
    page.goto(server.url("/login?next=/login"))
    expect(page.get_by_label("Login")).to_have_attribute("autocomplete", "username")
    expect(page.get_by_label("Password")).to_have_attribute("type", "password")
    page.keyboard.press("Tab")
    assert focused(page)["name"] == "login"
    page.keyboard.type(login)
    page.keyboard.press("Tab")
    assert focused(page)["name"] == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert focused(page) | {"text": re.sub(r"\s+", " ", focused(page)["text"])} == {
        "tag": "button", "id": "", "name": None, "type": "submit", "text": "Sign in"}
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Signed in as {login}")).to_be_visible()
