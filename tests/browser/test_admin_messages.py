"""The admin's messages in Chromium (issue 15 point 4): text the simulator, find the
message in the search, open it and see its timeline and the webhook as received; the
conversation it belongs to."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, screenshot, sign_in


def test_an_operator_finds_a_text_and_its_timeline(page: Page, server: Server) -> None:
    sent = server.api.post("/api/simulator/mo", json={
        "from": "+14155550177", "text": "Is my parcel on its way?"})
    assert sent.status_code in (200, 201, 202), sent.text
    login = server.user("admin")
    sign_in(page, server, login, "/login?next=/admin/messages")
    expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    page.get_by_label("Text contains").fill("PARCEL ON")
    page.get_by_label("Direction").select_option("in")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/admin/messages\?.*text=PARCEL\+ON"))
    rows = page.locator("table.messages tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("+14155550177")
    expect(page.get_by_role("link", name="Export as CSV")).to_be_visible()
    screenshot(page, "admin-messages")

    rows.first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=re.compile(r"^Message \d+"))).to_be_visible()
    timeline = page.locator("table.timeline tbody tr")
    expect(timeline.first).to_contain_text("received")
    expect(timeline.first).to_contain_text("broker")
    expect(page.get_by_role("heading", name="Webhook as received")).to_be_visible()
    expect(page.locator("section.exchange pre").first).to_contain_text("POST")
    screenshot(page, "admin-message")

    page.get_by_role("link", name="Conversation with +14155550177").click()
    expect(page.get_by_role("heading", name="Conversation with +14155550177")).to_be_visible()
    expect(page.locator("ol.thread li").first).to_contain_text("Is my parcel on its way?")
    page.get_by_role("link", name="All conversations").click()
    expect(page.get_by_role("link", name="+14155550177")).to_be_visible()
    screenshot(page, "admin-conversations")


def test_a_bad_search_shows_the_error_beside_the_field(page: Page, server: Server) -> None:
    sign_in(page, server, server.user("supervisor"), "/login?next=/admin/messages")
    page.get_by_label("From").fill("last tuesday")
    page.get_by_role("button", name="Search").click()
    field = page.get_by_label("From")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-since-error")).to_contain_text("not an ISO-8601 time")
    expect(field).to_have_value("last tuesday")
