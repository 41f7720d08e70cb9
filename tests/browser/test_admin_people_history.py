"""People and History of the admin in Chromium (issue 15 points 5 and 7): an admin adds a
user and makes an API token (shown once); a configuration change shows in the history
with its diff, and is reverted from the page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, screenshot, sign_in


def test_an_admin_adds_a_user_and_makes_a_token(page: Page, server: Server) -> None:
    login = server.user("admin", display_name="Ada Admin")
    sign_in(page, server, login, "/login?next=/admin/people")
    expect(page.get_by_role("heading", name="People", exact=True)).to_be_visible()
    page.get_by_role("link", name="Add a user").click()
    page.get_by_label("Login").fill("carol")
    page.get_by_label("Display name").fill("Carol Agent")
    page.get_by_role("checkbox", name=re.compile("^agent")).check()
    page.get_by_label("Sender number").fill("not a number")
    page.get_by_label("Password", exact=True).fill("a long password")
    page.get_by_label("Password again").fill("a long password")
    page.get_by_role("button", name="Add the user").click()
    sender = page.get_by_label("Sender number")
    expect(sender).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-sender_number-error")).to_contain_text("phone number")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")  # never echoed
    sender.fill("+14155550199")
    page.get_by_label("Password", exact=True).fill("a long password")
    page.get_by_label("Password again").fill("a long password")
    page.get_by_role("button", name="Add the user").click()
    expect(page.get_by_role("status")).to_have_text("User carol added.")
    expect(page.get_by_role("cell", name="Carol Agent")).to_be_visible()
    screenshot(page, "admin-people")

    page.get_by_role("link", name="API tokens").click()
    page.get_by_role("link", name="Make a token").click()
    page.get_by_label("User", exact=True).select_option("carol")
    page.get_by_role("checkbox", name=re.compile("^send")).check()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Make the token").click()
    assert answer.value.status == 201
    assert answer.value.headers["cache-control"] == "no-store"  # no cache keeps it
    token = page.get_by_label("Token", exact=True).input_value()
    assert token.startswith("smst-")
    key = token.split("-")[1]
    expect(page.get_by_text("shown this once")).to_be_visible()
    page.get_by_role("link", name="Back to the tokens").click()
    expect(page.get_by_role("cell", name=key)).to_be_visible()
    assert token not in page.content()
    page.goto(server.url("/admin/people/tokens"))
    screenshot(page, "admin-tokens")
    page.get_by_role("row", name=re.compile(key)).get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke the token").click()
    expect(page.get_by_role("status")).to_contain_text(f"API token {key} revoked")
    assert server.api.get("/api/messages", headers={
        "Authorization": f"Bearer {token}"}).status_code == 401


def test_a_change_shows_in_the_history_with_its_diff_and_is_reverted(
        page: Page, server: Server) -> None:
    changed = server.api.patch("/api/config/purge", json={
        "days": 45, "note": "keep 45 days"}, headers={"If-Match": "*"})
    assert changed.status_code == 200, changed.text
    login = server.user("admin")
    sign_in(page, server, login, "/login?next=/admin/history")
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    page.get_by_label("Source").select_option("api")
    page.get_by_role("button", name="Show").click()
    row = page.get_by_role("row", name=re.compile("keep 45 days"))
    expect(row).to_be_visible()
    screenshot(page, "admin-history")
    row.get_by_role("link").first.click()
    diff = page.get_by_role("region", name="Changes (secrets masked)")
    expect(diff.locator("ins")).to_contain_text("+days = 45")
    expect(diff.locator(".diff-line.file").first).to_contain_text("--- a/smshost.toml")
    screenshot(page, "admin-history-entry")

    page.get_by_label(re.compile("Add a note about")).fill("checked with the team")
    page.get_by_role("button", name="Add the note").click()
    expect(page.get_by_role("status")).to_have_text("Note added.")
    expect(page.get_by_text("checked with the team")).to_be_visible()

    first = server.api.get("/api/history", params={"source": "start"}).json()["entries"][-1]
    page.goto(server.url(f"/admin/history/{first['id']}"))
    page.get_by_role("link", name="Revert to this version…").click()
    page.get_by_label("Note for the history (optional)").fill("undo the purge change")
    page.get_by_role("button", name=f"Revert to version {first['id']}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Reverted to version {first['id']}")
    expect(page.get_by_text("a revert to")).to_be_visible()
    expect(page.get_by_role("region", name="Changes (secrets masked)").locator("del")
           ).to_contain_text("-days = 45")
    assert server.host is not None and server.host.settings.purge.days != 45
    latest = server.api.get("/api/history").json()["entries"][0]
    assert (latest["source"], latest["actor"], latest["reverts"]) == \
        ("revert", login, first["id"])
