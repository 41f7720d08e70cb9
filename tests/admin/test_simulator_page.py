"""/admin/simulator (issue 15 point 8) through the real app: the phone's form sends an
MO through the simulator broker (the function POST /api/simulator/mo calls), the MO is
stored and routed, and the server's reply (here the opt-out HELP answer) shows in the
thread, on the page and in the script's JSON."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.admin.conftest import field_error, flash_of, post
from tests.brokers.conftest import broker_config
from tests.test_api import SIMULATOR

PHONE = "+14155550123"
TO = "simulator|+15550100"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The simulator broker with routing on (broker_config turns it off when it writes
    routes.toml itself)."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "routes.toml").write_text("")
    return broker_config(tmp_path, SIMULATOR)


def thread(admin: TestClient, count: int) -> list[dict[str, Any]]:
    """The phone's thread once it holds ``count`` messages (routing runs in the
    background: read again, at most 5 s)."""
    messages: list[dict[str, Any]] = []
    for _ in range(100):
        answer = admin.get("/admin/simulator/thread", params={"from": PHONE})
        assert answer.status_code == 200
        messages = answer.json()["messages"]
        if len(messages) >= count and messages[0]["status"] != "received":
            return messages
        time.sleep(0.05)
    raise AssertionError(f"the thread did not reach {count} messages: {messages}")


def test_send_through_the_form_stores_routes_and_shows_the_reply(
        admin: TestClient, api: TestClient) -> None:
    page = admin.get("/admin/simulator").text
    assert f'<option value="{TO}">+15550100 (simulator, default)</option>' in page
    assert "No message yet" in page
    sent = post(admin, "/admin/simulator", {"from": PHONE, "to": TO, "text": "HELP"})
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == "/admin/simulator?from=%2B14155550123&to=" \
        "simulator%7C%2B15550100"
    mo, reply = thread(admin, 2)
    assert (mo["direction"], mo["body"], mo["status"]) == ("in", "HELP", "routed")
    assert (reply["direction"], reply["body"]) == ("out", "Reply STOP to unsubscribe.")
    stored = api.get("/api/messages", params={"direction": "in"}).json()["messages"]
    assert [(m["remote"], m["local"], m["broker"], m["route"]) for m in stored] == [
        (PHONE, "+15550100", "simulator", "optout")]
    shown = admin.get(sent.headers["location"]).text
    assert flash_of(shown) == f"Sent from {PHONE}."
    assert '<li class="bubble mine">' in shown and '<li class="bubble theirs">' in shown
    assert "Reply STOP to unsubscribe." in html.unescape(shown)
    assert "simulator.js" in shown


def test_a_bad_form_is_shown_again_with_the_errors(admin: TestClient,
                                                   api: TestClient) -> None:
    answer = post(admin, "/admin/simulator", {"from": "", "to": "nowhere|+1", "text": " "})
    assert answer.status_code == 400
    assert field_error(answer.text, "from") == "the phone's number is required"
    assert field_error(answer.text, "to") == "choose one of the simulator's numbers"
    assert field_error(answer.text, "text") == "type the text to send"
    long = post(admin, "/admin/simulator", {"from": PHONE, "to": TO, "text": "x" * 1601})
    assert long.status_code == 400 and field_error(long.text, "text")
    assert 'value="+14155550123"' in long.text  # as typed
    assert api.get("/api/messages").json()["messages"] == []


def test_without_a_simulator_broker_the_page_says_how_to_add_one(
        tmp_path: Path) -> None:
    from host.config import load_settings
    from host.core import Host
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "routes.toml").write_text("")  # routing on, no route
    cfg = broker_config(tmp_path, "")
    node = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(node.app_for(), base_url="https://testserver",
                    headers={"Authorization": "Bearer test-token"}) as setup:
        made = setup.post("/api/users", json={"login": "alice", "roles": ["admin"],
                                              "password": "correct horse battery"})
        assert made.status_code == 201
        from tests.admin.conftest import client_of
        page = client_of(setup, "alice").get("/admin/simulator").text
    assert "No simulator broker is configured" in page
    assert 'href="/admin/brokers"' in page and "<form method=\"post\" action=\"/admin/" \
        "simulator\"" not in page


def test_permissions(supervisor: TestClient, agent: TestClient, api: TestClient) -> None:
    assert supervisor.get("/admin/simulator").status_code == 403
    assert agent.get("/admin/simulator/thread").status_code == 403
    assert api.get("/api/messages").json()["messages"] == []


def test_a_simulator_added_while_running_has_its_phone_at_once(tmp_path: Path) -> None:
    """From a node with no broker: once the simulator is added through the API (the
    brokers page's editor), its phone (where the node sends MT) and its MO injection
    answer at once, with no restart (the delivery itself: tests/browser/
    test_admin_setup.py, on a real server)."""
    from host.config import load_settings
    from host.core import Host
    from tests.admin.conftest import CONFIG

    cfg = broker_config(tmp_path, "")
    node = Host(load_settings(cfg), config_dir=cfg)
    phone = {"to": PHONE, "text": "hello", "from": "+15550100"}
    with TestClient(node.app_for(), base_url="https://testserver", headers=CONFIG) as api:
        assert api.post("/simulator/phone", json=phone).status_code == 404
        assert api.post("/api/simulator/mo", json={"from": PHONE, "text": "HELP"}
                        ).status_code == 404
        made = api.post("/api/config/brokers", json={
            "name": "sim", "definition": "simulator", "encryption": "https",
            "accounts": [{"id": "main", "local_address": "+15550100"}]})
        assert made.status_code == 201, made.text
        assert api.post("/simulator/phone", json=phone).status_code == 201
        sent = api.post("/api/simulator/mo", json={"from": PHONE, "text": "HELP"})
        assert sent.status_code == 201, sent.text
        inbox = api.get("/api/simulator/inbox").json()["messages"]
        assert [(m["to"], m["text"]) for m in inbox] == [(PHONE, "hello")]
