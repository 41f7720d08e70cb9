"""The supervisor view in Chromium (issue 14 point 8; host.web.ui.supervisor): a
supervisor watches an SMS arrive in a queue's line live, its longest wait counting up,
an agent going available (through the API) shown live, reassigns the waiting
interaction to a named agent (who then holds the offer, read through the API) and sets
an agent away with a reason (what was chosen and typed survives a live update); a user without the supervise right gets the 403 page.
Everything is real: the router, the ACD, the simulator broker, the supervisors' stream
the page listens to."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, queue_server, sign_in

TEXTER = "+14155550177"
OTHER = "+14155550178"
VIEW = "/desk/supervisor"
SINKS = """
[queue]
offer_timeout = 120

[[queue.queues]]
name = "support"
members = ["bea"]

[[queue.queues]]
name = "sales"
members = ["cal"]
"""


@pytest.fixture(scope="module")
def super_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with queue_server(tmp_path_factory.mktemp("supervisor"), SINKS, ("bea", "cal")) as running:
        yield running


def agent(server: Server, login: str) -> dict[str, Any]:
    found = [a for a in server.api.get("/api/agents").json()["agents"] if a["login"] == login]
    assert len(found) == 1, found
    return found[0]


def test_a_supervisor_watches_reassigns_and_sets_an_agent_away(
        page: Page, super_server: Server) -> None:
    server = super_server
    sam = server.user("supervisor", display_name="Sam")
    sign_in(page, server, sam, path=f"/login?next={VIEW}")
    expect(page).to_have_url(server.url(VIEW))
    support = page.locator('#queues tr[data-queue="support"]')
    sales = page.locator('#queues tr[data-queue="sales"]')
    expect(support.locator("td.waiting")).to_have_text("0")
    expect(sales.locator("td.available")).to_have_text("0")
    expect(page.locator("#agents-count")).to_contain_text("0 available")

    texted = server.api.post("/api/simulator/mo", json={"from": TEXTER, "text": "Hello?"})
    assert texted.status_code in (200, 201), texted.text
    expect(support.locator("td.waiting")).to_have_text("1", timeout=10_000)  # live
    waiting = page.locator('#lines li[data-state="waiting"]')
    expect(waiting).to_contain_text(TEXTER)
    expect(waiting).to_contain_text("Hello?")
    longest = support.locator("td.longest")
    expect(longest).to_have_text(re.compile(r"^\d+:\d\d$"))
    first = longest.inner_text()
    expect(longest).not_to_have_text(first, timeout=3_000)  # it counts up by itself

    made = server.api.put("/api/agents/cal/status", json={"status": "available"})
    assert made.status_code == 200, made.text
    expect(sales.locator("td.available")).to_have_text("1", timeout=10_000)  # live
    expect(page.locator('#agents li[data-agent="cal"]')).to_have_attribute(
        "data-status", "available")
    expect(page.locator("#agents-count")).to_contain_text("1 available")

    page.get_by_label(f"Reassign to the interaction from {TEXTER}").select_option("agent:cal")
    page.get_by_role("button", name=f"Reassign the interaction from {TEXTER}").click()
    expect(page.locator("#done")).to_contain_text("reassigned to agent cal")
    expect(page.locator('#lines li[data-state="offered"]')).to_contain_text("offered to cal")
    expect(support.locator("td.waiting")).to_have_text("0")
    offered = server.api.get("/api/interactions", params={"state": "offered"}).json()
    held = [i for i in offered["interactions"] if i["remote"] == TEXTER]
    assert [i["offer"]["agent"] for i in held] == ["cal"], offered
    assert agent(server, "cal")["load"] == 1

    page.get_by_label("Status of bea", exact=True).select_option("away")
    page.get_by_label("Reason for bea").fill("lunch")
    later = server.api.post("/api/simulator/mo", json={"from": OTHER, "text": "Anyone?"})
    assert later.status_code in (200, 201), later.text
    expect(support.locator("td.waiting")).to_have_text("1", timeout=10_000)  # drawn again
    expect(page.get_by_label("Status of bea", exact=True)).to_have_value("away")  # kept
    expect(page.get_by_label("Reason for bea")).to_have_value("lunch")
    expect(page.get_by_label("Reason for bea")).to_be_focused()
    page.get_by_role("button", name="Set the status of bea").click()
    expect(page.locator('#agents li[data-agent="bea"]')).to_contain_text("away (lunch)")
    assert (agent(server, "bea")["status"], agent(server, "bea")["reason"]) == ("away", "lunch")


def test_the_view_works_from_the_keyboard(page: Page, super_server: Server) -> None:
    server = super_server
    sign_in(page, server, server.user("supervisor"), path=f"/login?next={VIEW}")
    expect(page.locator('#agents li[data-agent="cal"]')).to_be_visible()
    page.get_by_label("Status of cal", exact=True).focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Reason for cal")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Set the status of cal")).to_be_focused()


def test_a_user_without_supervise_gets_the_403_page(page: Page, super_server: Server) -> None:
    server = super_server
    sign_in(page, server, "bea", path=f"/login?next={VIEW}")
    expect(page.get_by_role("heading", name="403 Forbidden")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("needs the supervise right")
    page.get_by_role("link", name="Go to the agent desk").click()
    expect(page).to_have_url(server.url("/desk"))
    expect(page.get_by_role("link", name="Supervisor view")).to_have_count(0)
