"""Authorization everywhere (issue 13 point 3; host.rights, host.web.routes.ApiRoute):
every /api route of the real app (core, shipped plugins, simulator) against every kind
of caller, through HTTP; the classification and the "as" of a send come from the
caller's rights."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from host import hookimpl
from host.config import load_settings
from host.core import Host
from host.rights import RIGHTS, ROLE_RIGHTS, scope_rights
from host.web.routes import ApiRoute
from tests.brokers.conftest import broker_config
from tests.test_api import SIMULATOR
from tests.test_web_layer import starlette_of

PASSWORD = "correct horse battery"
CONFIG = {"Authorization": "Bearer test-token"}
BASE = "https://testserver"  # the config's public_url is https: the cookie is Secure

# The need of every /api route of the app (method, path) -> need. A route missing here,
# or here but not in the app, fails test_the_table_lists_every_api_route_of_the_app.
NEEDS: dict[tuple[str, str], str] = {
    ("GET", "/api/messages"): "read",
    ("POST", "/api/messages"): "send",
    ("GET", "/api/messages/{message_id}"): "read",
    ("DELETE", "/api/messages/{message_id}"): "send",
    ("POST", "/api/messages/{message_id}/cancel"): "send",
    ("POST", "/api/segments"): "user",
    ("GET", "/api/callbacks"): "read",
    ("POST", "/api/callbacks/{id}/replay"): "admin",
    ("GET", "/api/events"): "read",
    ("GET", "/api/routes"): "read",
    ("POST", "/api/routes/test"): "read",
    ("GET", "/api/optouts"): "read",
    ("GET", "/api/handlers"): "read",
    ("GET", "/api/openapi.json"): "public",
    ("GET", "/api/users"): "supervise",
    ("POST", "/api/users"): "admin",
    ("GET", "/api/users/{login}"): "supervise",
    ("PATCH", "/api/users/{login}"): "admin",
    ("PUT", "/api/users/{login}"): "admin",
    ("DELETE", "/api/users/{login}"): "admin",
    ("GET", "/api/workgroups"): "supervise",
    ("POST", "/api/workgroups"): "admin",
    ("GET", "/api/workgroups/{name}"): "supervise",
    ("PATCH", "/api/workgroups/{name}"): "admin",
    ("PUT", "/api/workgroups/{name}"): "admin",
    ("DELETE", "/api/workgroups/{name}"): "admin",
    ("GET", "/api/tokens"): "admin",
    ("POST", "/api/tokens"): "admin",
    ("DELETE", "/api/tokens/{key}"): "admin",
    ("POST", "/api/session"): "public",
    ("GET", "/api/session"): "user",
    ("DELETE", "/api/session"): "user",
    ("GET", "/api/history"): "supervise",
    ("POST", "/api/history/notes"): "supervise",
    ("GET", "/api/history/{entry_id}"): "supervise",
    ("POST", "/api/history/{entry_id}/revert"): "admin",
    ("GET", "/api/config/status"): "admin",
    ("POST", "/api/config/reload"): "admin",
    ("GET", "/api/config/routes"): "admin",
    ("POST", "/api/config/routes"): "admin",
    ("GET", "/api/config/routes/{name}"): "admin",
    ("PATCH", "/api/config/routes/{name}"): "admin",
    ("PUT", "/api/config/routes/{name}"): "admin",
    ("DELETE", "/api/config/routes/{name}"): "admin",
    ("POST", "/api/config/routes/{name}/move"): "admin",
    ("GET", "/api/config/outbound"): "admin",
    ("POST", "/api/config/outbound"): "admin",
    ("GET", "/api/config/outbound/{name}"): "admin",
    ("PATCH", "/api/config/outbound/{name}"): "admin",
    ("PUT", "/api/config/outbound/{name}"): "admin",
    ("DELETE", "/api/config/outbound/{name}"): "admin",
    ("POST", "/api/config/outbound/{name}/move"): "admin",
    ("GET", "/api/config/purge"): "admin",
    ("PATCH", "/api/config/purge"): "admin",
    ("PUT", "/api/config/purge"): "admin",
    ("GET", "/api/config/attrs"): "admin",
    ("PATCH", "/api/config/attrs"): "admin",
    ("PUT", "/api/config/attrs"): "admin",
    ("GET", "/api/config/brokers"): "admin",
    ("POST", "/api/config/brokers"): "admin",
    ("GET", "/api/config/brokers/{name}"): "admin",
    ("PATCH", "/api/config/brokers/{name}"): "admin",
    ("PUT", "/api/config/brokers/{name}"): "admin",
    ("DELETE", "/api/config/brokers/{name}"): "admin",
    ("GET", "/api/config/brokers/{name}/attrs"): "admin",
    ("PATCH", "/api/config/brokers/{name}/attrs"): "admin",
    ("PUT", "/api/config/brokers/{name}/attrs"): "admin",
    ("GET", "/api/config/brokers/{name}/accounts"): "admin",
    ("POST", "/api/config/brokers/{name}/accounts"): "admin",
    ("GET", "/api/config/brokers/{name}/accounts/{id}"): "admin",
    ("PATCH", "/api/config/brokers/{name}/accounts/{id}"): "admin",
    ("PUT", "/api/config/brokers/{name}/accounts/{id}"): "admin",
    ("DELETE", "/api/config/brokers/{name}/accounts/{id}"): "admin",
    ("GET", "/api/config/brokers/{name}/accounts/{id}/attrs"): "admin",
    ("PATCH", "/api/config/brokers/{name}/accounts/{id}/attrs"): "admin",
    ("PUT", "/api/config/brokers/{name}/accounts/{id}/attrs"): "admin",
    # shipped plugins
    ("GET", "/api/conversations"): "read",
    ("GET", "/api/conversations/{conversation_id}"): "read",
    ("GET", "/api/queues"): "supervise",
    ("GET", "/api/queues/events"): "supervise",
    ("GET", "/api/queues/{name}"): "supervise",
    ("GET", "/api/queues/{name}/settings"): "supervise",
    ("PUT", "/api/queues/{name}/settings"): "admin",
    ("GET", "/api/agents"): "supervise",
    ("GET", "/api/agents/me"): "user",
    ("PUT", "/api/agents/me/status"): "user",
    ("GET", "/api/agents/me/events"): "user",
    ("PUT", "/api/agents/{login}/status"): "supervise",
    ("PUT", "/api/agents/{login}/capacity"): "supervise",
    ("GET", "/api/interactions"): "user",
    ("GET", "/api/interactions/{interaction_id}"): "user",
    ("POST", "/api/interactions/{interaction_id}/accept"): "user",
    ("POST", "/api/interactions/{interaction_id}/decline"): "user",
    ("POST", "/api/interactions/{interaction_id}/pickup"): "user",
    ("POST", "/api/interactions/{interaction_id}/reply"): "user",
    ("POST", "/api/interactions/{interaction_id}/transfer"): "user",
    ("POST", "/api/interactions/{interaction_id}/disconnect"): "user",
    ("POST", "/api/interactions/{interaction_id}/notes"): "user",
    ("GET", "/api/queues/{name}/notices"): "supervise",
    ("PUT", "/api/queues/{name}/notices"): "admin",
    ("GET", "/api/webhooks/deliveries"): "read",
    ("GET", "/api/webhooks/deliveries/{id}"): "read",
    ("GET", "/api/webhooks/dead-letters"): "read",
    ("POST", "/api/webhooks/dead-letters/{id}/replay"): "admin",
    ("GET", "/api/reports/queues"): "supervise",
    ("GET", "/api/reports/agents"): "user",  # an agent reads its own (the handler checks)
    # the simulator
    ("GET", "/api/simulator/inbox"): "read",
    ("POST", "/api/simulator/mo"): "admin",
}


@pytest.fixture
def full_host(tmp_path: Path) -> Host:
    cfg = broker_config(tmp_path, SIMULATOR)
    return Host(load_settings(cfg), config_dir=cfg)


def api_routes(host: Host) -> dict[tuple[str, str], ApiRoute]:
    found: dict[tuple[str, str], ApiRoute] = {}
    for route in starlette_of(host.app_for()).routes:
        if isinstance(route, ApiRoute):
            for method in getattr(route.route, "methods", None) or ("GET",):
                if method != "HEAD":
                    found[(method, route.path)] = route
    return found


def test_the_table_lists_every_api_route_of_the_app(full_host: Host) -> None:
    routes = api_routes(full_host)
    assert not set(routes) - set(NEEDS), f"routes missing from NEEDS: {set(routes) - set(NEEDS)}"
    assert not set(NEEDS) - set(routes), f"NEEDS lists no such route: {set(NEEDS) - set(routes)}"
    assert {key: r.auth for key, r in routes.items()} == NEEDS
    assert not [key for key, r in routes.items() if r.defaulted]  # every one declared


class Plain:
    """A plugin registering a plain Starlette route under /api (declaring no need)."""

    @hookimpl
    def register_routes(self, register: Any) -> None:
        async def hello(request: Request) -> Response:
            return PlainTextResponse("hello")
        register("api", [Route("/api/plain", hello)])


def test_a_plugins_undeclared_api_route_needs_admin_and_is_flagged(full_host: Host) -> None:
    full_host.plugins.register(Plain(), "plain")
    route = api_routes(full_host)[("GET", "/api/plain")]
    assert route.auth == "admin" and route.defaulted
    with TestClient(full_host.app_for(), base_url=BASE) as client:
        made = client.post("/api/tokens", headers=CONFIG,
                           json={"integration": "crm", "scopes": ["read", "send"]}).json()
        refused = client.get("/api/plain", headers=bearer(made["token"]))
        assert refused.status_code == 403
        assert refused.json()["message"] == (
            f"GET /api/plain needs the admin right; token {made['id']} (integration 'crm') "
            "has read, send")
        assert client.get("/api/plain", headers=CONFIG).text == "hello"


def test_a_plugins_api_route_cannot_be_public(full_host: Host) -> None:
    class Open:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            register("api", [ApiRoute("/api/open", lambda r: None, auth="public")])
    full_host.plugins.register(Open(), "open")
    assert ("GET", "/api/open") not in api_routes(full_host)
    assert any("cannot be public" in (f.error or "") for f in full_host.plugins.failures)


# -- the matrix ---------------------------------------------------------------------------

def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rights_of(caller: str) -> frozenset[str] | None:
    """What each caller of :func:`callers` has (None: nothing proved)."""
    kind, _, name = caller.partition(":")
    if kind in ("none", "bad"):
        return None
    if kind == "config":
        return frozenset(RIGHTS)
    if kind in ("user-token", "session"):
        return ROLE_RIGHTS[name]
    return scope_rights([name])


@pytest.fixture
def callers(full_host: Host) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """The client and, per caller, the headers it sends (sessions: their cookie is set
    on a client of their own, so ``clients`` holds those)."""
    with TestClient(full_host.app_for(), base_url=BASE) as client:
        headers: dict[str, dict[str, str]] = {"none": {}, "config": CONFIG,
                                              "bad": bearer("smst-00000000-" + "x" * 43)}
        for role in ROLE_RIGHTS:
            assert client.post("/api/users", headers=CONFIG, json={
                "login": role, "roles": [role], "password": PASSWORD}).status_code == 201
            made = client.post("/api/tokens", headers=CONFIG,
                               json={"user": role, "scopes": ["admin"]}).json()
            headers[f"user-token:{role}"] = bearer(made["token"])
        for scope in ("read", "send", "supervise", "admin"):
            made = client.post("/api/tokens", headers=CONFIG,
                               json={"integration": f"i-{scope}", "scopes": [scope]}).json()
            headers[f"scope:{scope}"] = bearer(made["token"])
        yield client, headers


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    url = re.sub(r"\{[^}]+\}", "1", path)
    if method == "GET" and path.endswith("/events"):  # streams: the status alone
        with client.stream(method, url, headers=headers) as answer:
            return answer.status_code
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, url, headers=headers, json=body).status_code


def check(status: int, need: str, rights: frozenset[str] | None, what: str) -> None:
    if need == "public":
        assert status not in (401, 403), what
    elif rights is None:
        assert status == 401, what
    elif need == "user" or need in rights:
        assert status not in (401, 403), what
    else:
        assert status == 403, what


def test_every_route_against_every_bearer_caller(
        callers: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, headers = callers
    for (method, path), need in sorted(NEEDS.items()):
        for caller, sent in headers.items():
            status = call(client, method, path, sent)
            check(status, need, rights_of(caller), f"{caller} {method} {path}: {status}")


@pytest.mark.parametrize("role", list(ROLE_RIGHTS))
def test_every_route_against_a_session_of_each_role(full_host: Host, role: str) -> None:
    with TestClient(full_host.app_for(), base_url=BASE) as client:
        assert client.post("/api/users", headers=CONFIG, json={
            "login": role, "roles": [role], "password": PASSWORD}).status_code == 201
        signed = client.post("/api/session", json={"login": role, "password": PASSWORD})
        assert signed.status_code == 200, signed.text
        csrf = {"X-CSRF-Token": signed.json()["csrf_token"]}
        # the sign-out last: it ends the session
        for (method, path), need in sorted(NEEDS.items(), key=lambda kv: kv[0] == (
                "DELETE", "/api/session")):
            status = call(client, method, path, csrf)
            check(status, need, ROLE_RIGHTS[role], f"session {role} {method} {path}: {status}")
        assert client.get("/api/session").status_code == 401  # signed out


def test_a_users_token_has_what_its_scopes_and_its_roles_both_give(full_host: Host) -> None:
    with TestClient(full_host.app_for(), base_url=BASE) as client:
        client.post("/api/users", headers=CONFIG, json={"login": "sam", "roles": ["supervisor"]})
        made = client.post("/api/tokens", headers=CONFIG,
                           json={"user": "sam", "scopes": ["read", "admin"]}).json()
        token = bearer(made["token"])
        assert client.get("/api/routes", headers=token).status_code == 200
        refused = client.get("/api/tokens", headers=token)
        assert refused.status_code == 403
        assert refused.json()["message"] == (f"GET /api/tokens needs the admin right; token "
                                             f"{made['id']} (user 'sam') has read, send, "
                                             "supervise")
        # demoted: its token loses the rights at once
        assert client.patch("/api/users/sam", headers=CONFIG,
                            json={"roles": ["agent"]}).status_code == 200
        assert client.get("/api/routes", headers=token).status_code == 403
        assert client.get("/api/session", headers=token).json()["rights"] == ["send"]
        # removed: its token stops working
        assert client.delete("/api/users/sam", headers=CONFIG).status_code == 204
        assert client.get("/api/session", headers=token).status_code == 401


# -- sends: classification and "as" -------------------------------------------------------

ROUTES = """
[routing]
enabled = false

[[outbound]]
name = "vip"
pattern = "\\\\+1415555.*"
classifications = ["vip", "gold"]

[[outbound]]
name = "rest"
pattern = ".*"
"""


@pytest.fixture
def sender(tmp_path: Path) -> Iterator[TestClient]:
    cfg = broker_config(tmp_path, SIMULATOR)
    (cfg / "routes.toml").write_text(ROUTES)
    host = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(host.app_for(), base_url=BASE) as client:
        for login, roles, held in [("ann", ["agent"], ["gold"]), ("bob", ["agent"], []),
                                   ("sue", ["supervisor"], [])]:
            assert client.post("/api/users", headers=CONFIG, json={
                "login": login, "roles": roles, "classifications": held}).status_code == 201
        assert client.post("/api/workgroups", headers=CONFIG, json={
            "name": "desk", "members": ["ann"], "broker": "simulator", "account": "default"}
        ).status_code == 201
        yield client


def token_of(client: TestClient, **body: Any) -> dict[str, str]:
    made = client.post("/api/tokens", headers=CONFIG, json={"scopes": ["send"], **body})
    assert made.status_code == 201, made.text
    return bearer(made.json()["token"])


VIP = "+14155550123"
OTHER = "+12125550123"


def test_a_send_uses_only_a_classification_the_caller_holds(sender: TestClient) -> None:
    ann = token_of(sender, user="ann")
    refused = sender.post("/api/messages", headers=ann,
                          json={"to": VIP, "text": "hi", "classification": "vip"})
    assert refused.status_code == 403
    assert refused.json() == {"error": "classification_forbidden", "message": (
        "classification 'vip' is not one token "
        f"{ann['Authorization'].split('-')[1]} (user 'ann') may send with (it has: gold)")}
    named = sender.post("/api/messages", headers=ann,
                        json={"to": VIP, "text": "hi", "classification": "gold"})
    assert named.status_code == 201, named.text
    # naming none: the route is used with one the caller holds
    chosen = sender.post("/api/messages", headers=ann, json={"to": VIP, "text": "hi"})
    assert chosen.status_code == 201 and chosen.json()["route"] == "vip"
    # a caller holding none of the route's classifications: 403 naming the route
    bob = sender.post("/api/messages", headers=token_of(sender, user="bob"),
                      json={"to": VIP, "text": "hi"})
    assert bob.status_code == 403 and bob.json()["error"] == "route_forbidden"
    assert "outbound route 'vip'" in bob.json()["message"]
    assert sender.post("/api/messages", headers=token_of(sender, user="bob"),
                       json={"to": OTHER, "text": "hi"}).status_code == 201


def test_integration_tokens_have_their_own_classifications(sender: TestClient) -> None:
    crm = token_of(sender, integration="crm", classifications=["vip"])
    assert sender.post("/api/messages", headers=crm,
                       json={"to": VIP, "text": "hi"}).status_code == 201
    assert sender.post("/api/messages", headers=crm, json={
        "to": VIP, "text": "hi", "classification": "gold"}).status_code == 403
    listed = sender.get("/api/tokens", headers=CONFIG).json()["tokens"]
    assert [t["classifications"] for t in listed if t["integration"] == "crm"] == [["vip"]]
    refused = sender.post("/api/tokens", headers=CONFIG, json={
        "user": "ann", "scopes": ["send"], "classifications": ["vip"]})
    assert refused.status_code == 400 and "its user's" in refused.json()["message"]
    bad = sender.post("/api/tokens", headers=CONFIG, json={
        "integration": "crm", "scopes": ["send"], "classifications": ["no way"]})
    assert bad.status_code == 400 and "classifications[0]" in bad.json()["message"]


def test_the_config_token_may_use_any_classification(sender: TestClient) -> None:
    assert sender.post("/api/messages", headers=CONFIG, json={
        "to": VIP, "text": "hi", "classification": "vip"}).status_code == 201


def test_a_send_as_a_workgroup_or_user_needs_the_right(sender: TestClient) -> None:
    ann, bob = token_of(sender, user="ann"), token_of(sender, user="bob")
    sue = token_of(sender, user="sue", scopes=["send", "supervise"])
    body = {"to": OTHER, "text": "hi", "workgroup": "desk"}
    assert sender.post("/api/messages", headers=ann, json=body).status_code == 201  # member
    assert sender.post("/api/messages", headers=sue, json=body).status_code == 201  # supervisor
    refused = sender.post("/api/messages", headers=bob, json=body)
    assert refused.status_code == 403 and refused.json()["error"] == "send_as_forbidden"
    assert "may not send as workgroup 'desk'" in refused.json()["message"]
    crm = token_of(sender, integration="crm")
    assert sender.post("/api/messages", headers=crm, json=body).status_code == 403
    as_ann = {"to": OTHER, "text": "hi", "user": "ann"}
    assert sender.post("/api/messages", headers=bob, json=as_ann).status_code == 403
    assert sender.post("/api/messages", headers=sue, json=as_ann).status_code == 403
    assert sender.post("/api/messages", headers=CONFIG, json=as_ann).status_code != 403
    assert sender.post("/api/messages", headers=ann, json=as_ann).status_code != 403


def test_the_cli_gives_an_integration_token_classifications(config_dir: Any) -> None:
    from tests.test_tokens import cli

    cfg = config_dir()
    added = cli(cfg, "token", "add", "--integration", "crm", "--scope", "send",
                "--classification", "vip", "--classification", "gold")
    assert added.returncode == 0, added.stderr
    assert "integration crm; scopes send;" in added.stdout
    assert "classifications vip, gold" in added.stdout
    assert cli(cfg, "user", "add", "--role", "agent", "--no-password", "bob").returncode == 0
    refused = cli(cfg, "token", "add", "--user", "bob", "--scope", "send",
                  "--classification", "vip")
    assert refused.returncode == 1 and "its user's classifications" in refused.stderr


def test_a_user_sends_only_from_its_own_or_its_workgroups_accounts(sender: TestClient) -> None:
    ann, bob = token_of(sender, user="ann"), token_of(sender, user="bob")
    sue = token_of(sender, user="sue", scopes=["send", "supervise"])
    crm = token_of(sender, integration="crm")
    named = {"to": OTHER, "text": "hi", "broker": "simulator", "account": "default"}
    # ann is a member of desk, which sends from simulator/default
    assert sender.post("/api/messages", headers=ann, json=named).status_code == 201
    refused = sender.post("/api/messages", headers=bob, json=named)
    assert refused.status_code == 403 and refused.json()["error"] == "account_forbidden"
    assert "may not send from 'simulator/default'" in refused.json()["message"]
    assert sender.post("/api/messages", headers=bob, json={
        "to": OTHER, "text": "hi", "broker": "simulator"}).status_code == 403
    # supervisors and integrations pick any account; naming none is not this check's
    assert sender.post("/api/messages", headers=sue, json=named).status_code == 201
    assert sender.post("/api/messages", headers=crm, json=named).status_code == 201
    assert sender.post("/api/messages", headers=bob,
                       json={"to": OTHER, "text": "hi"}).json().get("error") != \
        "account_forbidden"


def test_a_user_cancels_only_its_own_sends_unless_admin(sender: TestClient) -> None:
    ann, bob = token_of(sender, user="ann"), token_of(sender, user="bob")
    sue = token_of(sender, user="sue", scopes=["send", "supervise"])
    crm = token_of(sender, integration="crm")
    ids = []
    for _ in range(4):
        made = sender.post("/api/messages", headers=ann, json={
            "to": OTHER, "text": "hi", "send_at": _soon()})
        assert made.status_code == 201 and made.json()["status"] == "scheduled", made.text
        ids.append(made.json()["id"])
    for who in (bob, sue):  # another user's message is not theirs to see or cancel
        refused = sender.delete(f"/api/messages/{ids[0]}", headers=who)
        assert refused.status_code == 404, refused.text
    assert sender.delete(f"/api/messages/{ids[0]}", headers=ann).status_code == 200
    assert sender.delete(f"/api/messages/{ids[1]}", headers=CONFIG).status_code == 200
    assert sender.post(f"/api/messages/{ids[2]}/cancel", headers=crm).status_code == 200
    reader = sender.post("/api/tokens", headers=CONFIG, json={"scopes": ["read"],
                                                              "integration": "bi"})
    assert sender.delete(f"/api/messages/{ids[3]}", headers=bearer(
        reader.json()["token"])).status_code == 403
    events = sender.get(f"/api/messages/{ids[0]}", headers=CONFIG).json()["events"]
    assert events[0]["detail"]["by"] == "ann"
    assert events[-1]["status"] == "cancelled"


def _soon() -> str:
    moment = datetime.now(UTC) + timedelta(hours=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
