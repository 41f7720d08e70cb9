"""The agent desk page over plain HTTP (issue 14 point 8; host.web.ui.desk): who may see
it, what the shell shows, the CSRF token on its forms and its script served. What the
page does in a browser is tests/browser/test_desk.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.brokers.conftest import broker_config
from tests.test_api import SIMULATOR

PASSWORD = "correct horse battery"
CONFIG = {"Authorization": "Bearer test-token"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    cfg = broker_config(tmp_path, SIMULATOR)
    host = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(host.app_for(), base_url="https://testserver", follow_redirects=False) as c:
        assert c.post("/api/users", headers=CONFIG, json={
            "login": "bob", "display_name": "Bob <Agent>", "roles": ["agent", "supervisor"],
            "password": PASSWORD}).status_code == 201
        yield c


def sign_in(client: TestClient) -> str:
    """Sign bob in through the API; the session's CSRF token."""
    answer = client.post("/api/session", json={"login": "bob", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["csrf_token"])


def test_without_a_session_the_desk_sends_to_the_login_and_back(client: TestClient) -> None:
    answer = client.get("/desk")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/desk"
    login = client.get(answer.headers["location"])
    assert 'name="next" value="/desk"' in login.text


def test_a_bearer_token_is_no_session_for_the_page(client: TestClient) -> None:
    assert client.get("/desk", headers=CONFIG).status_code == 303


def test_signed_in_the_desk_shows_who_and_roles_escaped(client: TestClient) -> None:
    token = sign_in(client)
    page = client.get("/desk")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Bob &lt;Agent&gt;" in page.text and "Bob <Agent>" not in page.text
    assert "(bob)" in page.text and "agent, supervisor" in page.text
    assert '<script src="/ui/static/desk.js" defer></script>' in page.text
    forms = re.findall(r'<form method="post" action="(/[a-z]+)"[^>]*>\s*<input type="hidden" '
                       r'name="csrf_token" value="([^"]+)">', page.text)
    assert forms == [("/logout", token)]
    assert page.text.count('method="post"') == 1  # the others are sent by desk.js
    for name in ("status", "reason", "reply", "transfer-kind", "transfer-to", "note"):
        assert f'<label for="{name}">' in page.text, name
        assert f'id="{name}"' in page.text, name


def test_sign_out_from_the_desk_needs_the_csrf_token(client: TestClient) -> None:
    token = sign_in(client)
    refused = client.post("/logout", data={"csrf_token": "not-the-token"})
    assert refused.status_code == 403
    assert client.get("/desk").status_code == 200  # still signed in
    out = client.post("/logout", data={"csrf_token": token})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert client.get("/desk").headers["location"] == "/login?next=/desk"


def test_an_ended_session_is_sent_to_the_login(client: TestClient) -> None:
    sign_in(client)
    kept = dict(client.cookies)
    assert client.delete("/api/session", headers={
        "X-CSRF-Token": client.get("/api/session").json()["csrf_token"]}).status_code == 204
    client.cookies.update(kept)  # a copy of the old cookie is refused too
    assert client.get("/desk").status_code == 303


def test_the_desk_script_is_served_and_has_no_library(client: TestClient) -> None:
    script = client.get("/ui/static/desk.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"].startswith("public")
    for call in ("/api/agents/me", "/api/interactions", "/api/segments", "smshostPage",
                 "/api/agents/me/events", "/api/agents/me/status"):
        assert call in script.text, call
    shared = client.get("/ui/static/page.js")  # the call with the CSRF header, shared
    assert shared.status_code == 200 and "X-CSRF-Token" in shared.text
    assert "innerHTML" not in shared.text
    assert "innerHTML" not in script.text  # nothing from the API is parsed as HTML


# -- the supervisor view (/desk/supervisor) ----------------------------------------------

def sign_in_as(client: TestClient, login: str, *roles: str) -> str:
    """A new user ``login`` with ``roles``, signed in; the session's CSRF token."""
    assert client.post("/api/users", headers=CONFIG, json={
        "login": login, "roles": list(roles), "password": PASSWORD}).status_code == 201
    answer = client.post("/api/session", json={"login": login, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["csrf_token"])


def test_without_a_session_the_supervisor_view_sends_to_the_login_and_back(
        client: TestClient) -> None:
    answer = client.get("/desk/supervisor")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/desk/supervisor"
    assert answer.headers["cache-control"] == "no-store"
    assert client.get("/desk/supervisor", headers=CONFIG).status_code == 303  # no session
    login = client.get(answer.headers["location"])
    assert 'name="next" value="/desk/supervisor"' in login.text


def test_a_supervisor_sees_the_view_with_a_link_to_the_desk(client: TestClient) -> None:
    token = sign_in(client)  # bob: agent and supervisor
    page = client.get("/desk/supervisor")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Bob &lt;Agent&gt;" in page.text and "Bob <Agent>" not in page.text
    assert '<script src="/ui/static/supervisor.js" defer></script>' in page.text
    assert '<a href="/desk">Agent desk</a>' in page.text
    assert f'name="csrf_token" value="{token}"' in page.text
    for part in ('id="queues"', 'id="lines"', 'id="agents"', 'role="alert"'):
        assert part in page.text, part
    desk = client.get("/desk")
    assert '<a href="/desk/supervisor">Supervisor view</a>' in desk.text


def test_a_supervisor_without_the_agent_role_has_no_desk_link(client: TestClient) -> None:
    sign_in_as(client, "sue", "supervisor")
    page = client.get("/desk/supervisor")
    assert page.status_code == 200
    assert 'href="/desk"' not in page.text


def test_an_admin_may_supervise(client: TestClient) -> None:
    sign_in_as(client, "ada", "admin")
    assert client.get("/desk/supervisor").status_code == 200


def test_an_agent_without_supervise_gets_a_403_page_saying_why(client: TestClient) -> None:
    token = sign_in_as(client, "amy", "agent")
    page = client.get("/desk/supervisor")
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "403 Forbidden" in page.text
    assert "The supervisor view needs the supervise right; user &#39;amy&#39; has send" in page.text
    assert "<strong>supervisor</strong> or\n<strong>admin</strong> role" in page.text
    assert '<a href="/desk">Go to the agent desk</a>' in page.text
    assert f'name="csrf_token" value="{token}"' in page.text  # sign out from there
    assert "supervisor.js" not in page.text
    assert 'href="/desk/supervisor"' not in client.get("/desk").text


def test_the_supervisor_script_is_served_and_has_no_library(client: TestClient) -> None:
    script = client.get("/ui/static/supervisor.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    for call in ("/api/queues", "/api/agents", "/api/interactions", "/api/queues/events",
                 "/transfer", "/status", "smshostPage", "EventSource"):
        assert call in script.text, call
    assert "innerHTML" not in script.text
