"""The desk end to end in Chromium (issue 14): an SMS routed to a workgroup reaches an
available agent's desk as an offer, the agent accepts it, reads it, replies from the
page, and the texter's phone (the simulator) gets the reply, which the page then shows
delivered. Everything is real: the router, the ACD, the outbox, the simulator broker
and its receipts, the live stream the page listens to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, queue_server, sign_in

TEXTER = "+14155550123"
SINKS = """
[queue]
offer_timeout = 120

[[queue.queues]]
name = "support"
members = ["bea"]
"""


@pytest.fixture(scope="module")
def desk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with queue_server(tmp_path_factory.mktemp("desk-flow"), SINKS, ("bea",)) as running:
        yield running


def test_an_sms_is_offered_accepted_and_answered_from_the_desk(
        page: Page, desk_server: Server) -> None:
    server = desk_server
    sign_in(page, server, "bea", path="/login?next=/desk")
    expect(page).to_have_url(server.url("/desk"))
    page.get_by_label("Status").select_option("available")
    page.get_by_role("button", name="Set status").click()
    expect(page.locator("#status-now")).to_contain_text("Now available")

    texted = server.api.post("/api/simulator/mo", json={
        "from": TEXTER, "text": "Where is my parcel?"})
    assert texted.status_code in (200, 201), texted.text
    accept = page.get_by_role("button", name=f"Accept the offer from {TEXTER}")
    expect(accept).to_be_visible(timeout=10_000)  # live, through the page's event stream
    expect(page.locator("#offers")).to_contain_text("Where is my parcel?")
    accept.click()
    expect(page.locator("#messages")).to_contain_text("Where is my parcel?")
    expect(page.get_by_label("Reply")).to_be_focused()

    page.get_by_label("Reply").fill("It left the depot this morning.")
    page.get_by_role("button", name="Send reply").click()
    sent = page.locator("#messages li.out")
    expect(sent).to_contain_text("It left the depot this morning.")
    expect(sent.locator(".status")).to_contain_text("delivered", timeout=15_000)
    inbox = server.api.get("/api/simulator/inbox").json()
    assert "It left the depot this morning." in str(inbox)
    assert TEXTER in str(inbox)
