"""The agent desk (/desk, host.web.ui.desk and static/desk.js) in Chromium: the way in
through the sign-in page, who is shown, the segment counter, a user who is no agent,
the message when the server has no queue service, sign-out and the keyboard alone.

The end-to-end flow (an SMS offered, accepted and answered, the reply delivered) is in
tests/browser/test_desk_flow.py. One test here answers the agent API in the browser with
its documented shapes (Playwright's routing) to check what the script sends, the CSRF
header above all, and another answers 404 as a server without the queue sink would.
"""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import Page, Request, Route, expect

from tests.browser.conftest import LAPTOP, PASSWORD, Server, focused, sign_in

UNAVAILABLE = "The queue service is not available on this server"


def test_sign_in_leads_to_the_desk_of_the_agent(page: Page, server: Server) -> None:
    login = server.user("agent", "supervisor", display_name="Bea Agent")
    page.goto(server.url("/desk"))
    expect(page).to_have_url(server.url("/login?next=/desk"))
    sign_in(page, server, login, path="/login?next=/desk")
    expect(page).to_have_url(server.url("/desk"))
    expect(page.locator("#who")).to_have_text("Bea Agent")
    expect(page.locator("#roles")).to_have_text("agent, supervisor")
    expect(page.locator("#status-now")).to_contain_text("Now offline")
    expect(page.get_by_label("Status")).to_be_enabled()
    expect(page.get_by_role("button", name="Send reply")).to_be_disabled()  # no thread yet
    expect(page.get_by_role("alert")).to_be_hidden()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= LAPTOP["width"]  # no sideways scrolling on a laptop
    box = page.get_by_label("Reply").bounding_box()
    assert box is not None and box["y"] + box["height"] <= LAPTOP["height"]


def test_a_user_who_is_no_agent_is_told_so(page: Page, server: Server) -> None:
    sign_in(page, server, server.user("supervisor"), path="/login?next=/desk")
    expect(page.get_by_role("status").filter(has_text="You are not an agent")).to_be_visible()
    expect(page.get_by_label("Status")).to_be_disabled()
    expect(page.get_by_role("alert")).to_be_hidden()


def test_a_server_without_the_queue_service_is_said_so(page: Page, server: Server) -> None:
    def not_found(route: Route, request: Request) -> None:  # as without the queue sink
        route.fulfill(status=404, content_type="application/json",
                      body=json.dumps({"error": "not_found", "message": "no such path"}))
    page.route("**/api/agents/**", not_found)
    sign_in(page, server, server.user("agent"), path="/login?next=/desk")
    service = page.get_by_role("status").filter(has_text=UNAVAILABLE)
    expect(service).to_contain_text("GET /api/agents/me answered 404")
    expect(page.get_by_label("Status")).to_be_disabled()
    expect(page.get_by_role("alert")).to_be_hidden()  # no failure shown on top of it


def test_the_segment_counter_follows_the_text(page: Page, server: Server) -> None:
    sign_in(page, server, server.user("agent"), path="/login?next=/desk")
    counter = page.locator("#counter")
    reply = page.get_by_label("Reply")
    expect(counter).to_have_text("GSM-7 · 1 segment · 160 characters left")
    reply.fill("Hello, your parcel is on its way")
    expect(counter).to_have_text("GSM-7 · 1 segment · 128 characters left")
    reply.fill("x" * 161)
    expect(counter).to_have_text("GSM-7 · 2 segments · 145 characters left")
    reply.fill("Привет")  # Cyrillic is not in GSM-7
    expect(counter).to_contain_text("UCS-2 · 1 segment · 64 characters left")
    expect(counter).to_contain_text("because of П р и в е")
    reply.press_sequentially("{")  # an escape: two septets in GSM-7, one unit here
    expect(counter).to_contain_text("UCS-2 · 1 segment · 63 characters left")


def test_sign_out_from_the_desk(page: Page, server: Server) -> None:
    sign_in(page, server, server.user("agent"), path="/login?next=/desk")
    expect(page).to_have_url(server.url("/desk"))
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(server.url("/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(server.url("/desk"))
    expect(page).to_have_url(server.url("/login?next=/desk"))


def test_the_keyboard_alone_signs_in_and_writes_a_reply(page: Page, server: Server) -> None:
    login = server.user("agent")
    page.goto(server.url("/desk"))
    page.keyboard.press("Tab")
    page.keyboard.type(login)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.url("/desk"))
    expect(page.locator("#status-now")).to_contain_text("Now offline")
    order = []
    for _ in range(5):  # the hidden thread actions are skipped
        page.keyboard.press("Tab")
        order.append(focused(page)["id"] or focused(page)["text"])
    assert order == ["status", "reason", "status-set", "Sign out", "reply"], order
    page.keyboard.type("ok ")  # in the reply box, where the focus is
    expect(page.locator("#counter")).to_have_text("GSM-7 · 1 segment · 157 characters left")


# -- the documented agent API, answered in the browser ------------------------------

AGENT = {"login": "", "display_name": "Bea", "status": "available", "reason": None,
         "capacity": 3, "load": 0, "wrapup_until": None, "workgroups": ["support"],
         "offers": [{"interaction": 7, "queue": "support", "remote": "+14155550123",
                     "preview": "Where is my <b>parcel</b>?", "deadline": None}]}
THREAD = {"id": 7, "queue": "support", "state": "connected", "remote": "+14155550123",
          "local": "+15550100", "agent": "bea", "events": [], "notes": [],
          "messages": [{"id": 1, "direction": "in", "text": "Where is my <b>parcel</b>?",
                        "status": "received", "at": None}]}


def answer_agent_api(server: Server) -> Any:
    """A route handler answering the agent API as documented (a 404 for the rest)."""
    bodies: dict[tuple[str, str], tuple[int, Any]] = {
        ("GET", "/api/agents/me"): (200, AGENT),
        ("GET", "/api/interactions"): (200, {"interactions": [THREAD], "next": None}),
        ("GET", "/api/interactions/7"): (200, THREAD),
        ("POST", "/api/interactions/7/accept"): (200, THREAD),
        ("POST", "/api/interactions/7/reply"): (
            201, {"message": {"id": 2, "status": "queued", "segments": 1}}),
        ("PUT", "/api/agents/me/status"): (200, AGENT),
    }

    def answer(route: Route, request: Request) -> None:
        path = request.url.split(server.base, 1)[1]
        if path == "/api/agents/me/events":
            route.fulfill(status=200, content_type="text/event-stream", body=": hi\n\n")
            return
        status, body = bodies.get((request.method, path),
                                  (404, {"error": "not_found", "message": "Not Found"}))
        route.fulfill(status=status, content_type="application/json", body=json.dumps(body))
    return answer


def unsafe_call(page: Page, method: str, path: str, action: Any) -> Request:
    """The request ``action`` makes (``method`` to ``path``): waited for, bounded."""
    with page.expect_request(lambda r: r.method == method and r.url.endswith(path)) as sent:
        action()
    return sent.value


def test_the_desk_calls_the_agent_api_with_the_csrf_token(page: Page, server: Server) -> None:
    page.route("**/api/agents/**", answer_agent_api(server))
    page.route("**/api/interactions**", answer_agent_api(server))
    sign_in(page, server, server.user("agent"), path="/login?next=/desk")
    token = page.request.get(server.url("/api/session")).json()["csrf_token"]
    offer = page.locator("#offers li")
    expect(offer).to_contain_text("Where is my <b>parcel</b>?")  # shown as text
    expect(page.locator("#status-now")).to_have_text("Now available · 0 of 3 conversations")
    expect(page.get_by_label("Status")).to_have_value("available")
    accept = unsafe_call(page, "POST", "/api/interactions/7/accept", page.get_by_role(
        "button", name="Accept the offer from +14155550123").click)
    expect(page.get_by_role("heading", name="Conversation with +14155550123")).to_be_visible()
    expect(page.locator("#messages li")).to_contain_text("They wrote")
    expect(page.get_by_label("Reply")).to_be_focused()  # where the agent types next
    page.get_by_label("Reply").fill("On its way")
    reply = unsafe_call(page, "POST", "/api/interactions/7/reply",
                        page.get_by_role("button", name="Send reply").click)
    expect(page.get_by_label("Reply")).to_have_value("")
    page.get_by_label("Status").select_option("away")
    page.get_by_label("Reason (away)").fill("lunch")
    status = unsafe_call(page, "PUT", "/api/agents/me/status",
                         page.get_by_role("button", name="Set status").click)
    for sent in (accept, reply, status):
        assert sent.headers.get("x-csrf-token") == token, sent.url
    assert reply.post_data_json == {"text": "On its way"}
    assert status.post_data_json == {"status": "away", "reason": "lunch"}
    expect(page.get_by_role("alert")).to_be_hidden()
