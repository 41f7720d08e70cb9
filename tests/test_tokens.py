"""API tokens (issue 13, point 2; host.tokens): created through /api/tokens of the real
app and ``smshost token`` on a real SQLite file, shown once, stored hashed, revoked at
once, last-used time kept; the configured api.token still works."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient

from host import hookimpl
from host.core import Host
from host.tokens import LAST_USED_EVERY, RECHECK
from host.web.routes import GRANTED, ApiRoute
from tests.conftest import ROOT
from tests.outbound.conftest import wait_until


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(host: Host) -> Clock:
    fake = Clock()
    host.tokens.clock = fake
    return fake


@pytest.fixture
def api(client: TestClient, clock: Clock) -> TestClient:
    assert client.post("/api/users", json={"login": "alice", "roles": ["supervisor"]}
                       ).status_code == 201
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make(api: TestClient, **body: Any) -> dict[str, Any]:
    made = api.post("/api/tokens", json=body)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def test_a_token_is_shown_once_stored_hashed_and_works_at_once(
        api: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    made = make(api, user="ALICE", scopes=["read", "send"])
    token = made["token"]
    assert made["user"] == "alice" and made["scopes"] == ["send", "read"]
    assert token.startswith(f"smst-{made['id']}-") and made["live"] is True
    answer = api.get("/api/messages", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    listed = api.get("/api/tokens").json()["tokens"]
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
    assert token not in api.get("/api/tokens").text
    ((stored,),) = rows(tmp_path / "data" / "smshost.db", "select digest from api_tokens")
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(rows(tmp_path / "data" / "smshost.db", "select * from api_tokens"))
    assert made["id"] in caplog.text and token not in caplog.text
    assert token.partition(made["id"] + "-")[2] not in caplog.text


def test_revocation_takes_effect_at_the_next_request(api: TestClient) -> None:
    made = make(api, integration="crm", scopes=["read"])
    assert api.get("/api/routes", headers=bearer(made["token"])).status_code == 200
    revoked = api.delete(f"/api/tokens/{made['id']}")
    assert revoked.status_code == 200 and revoked.json()["live"] is False
    refused = api.get("/api/routes", headers=bearer(made["token"]))
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert api.get("/api/routes").status_code == 200  # the config token still works
    assert api.delete("/api/tokens/0badcafe").status_code == 404
    assert api.get("/api/tokens").json()["tokens"][0]["revoked_at"] is not None


class Echo:
    """A plugin's API route answering what the request proved (the scope's GRANTED)."""

    @hookimpl
    def register_routes(self, register: Callable[..., None]) -> None:
        async def echo(request: Request) -> Response:
            return JSONResponse(request.scope[GRANTED])
        register("api", [ApiRoute("/api/echo", echo, auth="user")])


def test_what_a_request_proved_is_in_the_scope(host: Host) -> None:
    host.plugins.register(Echo(), "echo")
    with TestClient(host.app_for(), headers=bearer("test-token")) as api:
        assert api.post("/api/users", json={"login": "alice", "roles": ["agent"]}
                        ).status_code == 201
        made = make(api, user="alice", scopes=["read"])
        assert api.get("/api/echo", headers=bearer(made["token"])).json() == {
            "via": "token", "token": made["id"], "scopes": ["read"], "user": "alice",
            "integration": None, "rights": [], "classifications": []}  # an agent: no read
        assert api.get("/api/echo").json() == {
            "via": "config", "token": None, "scopes": ["admin"], "user": None,
            "integration": None, "rights": ["read", "send", "supervise", "admin"],
            "classifications": None}
        wrong = made["token"][:-1] + ("x" if made["token"][-1] != "x" else "y")
        assert api.get("/api/echo", headers=bearer(wrong)).status_code == 401
        assert api.get("/api/echo", headers=bearer("smst-nothing")).status_code == 401


def test_last_used_is_written_at_most_once_a_minute(api: TestClient, clock: Clock,
                                                    tmp_path: Path) -> None:
    made = make(api, integration="crm", scopes=["read"])
    db = tmp_path / "data" / "smshost.db"
    assert api.get("/api/tokens").json()["tokens"][0]["last_used_at"] is None
    for _ in range(3):
        assert api.get("/api/routes", headers=bearer(made["token"])).status_code == 200
    first = wait_until(lambda: rows(db, "select last_used_at from api_tokens")[0][0],
                       what="the last-used time")
    assert first.startswith("2027-01-15T08:00:00")
    clock.now += LAST_USED_EVERY / 2
    api.get("/api/routes", headers=bearer(made["token"]))
    assert rows(db, "select last_used_at from api_tokens") == [(first,)]  # not yet
    clock.now += LAST_USED_EVERY / 2
    api.get("/api/routes", headers=bearer(made["token"]))
    later = wait_until(lambda: rows(db, "select last_used_at from api_tokens "
                                    "where last_used_at > '2027-01-15T08:00:59'"),
                       what="the next last-used time")
    assert later[0][0].startswith("2027-01-15T08:01:00")


@pytest.mark.parametrize(("body", "named"), [
    ({"user": "nobody", "scopes": ["read"]}, "user: no user named 'nobody'"),
    ({"user": "alice", "scopes": ["read", "root"]}, "scopes[1]: must be one of"),
    ({"user": "alice", "scopes": []}, "scopes:"),
    ({"scopes": ["read"]}, "user, integration"),
    ({"user": "alice", "integration": "crm", "scopes": ["read"]}, "user, integration"),
    ({"integration": "a b", "scopes": ["read"]}, "integration"),
    ({"integration": "crm", "scopes": ["read"], "colour": 1}, "unknown field 'colour'"),
])
def test_a_bad_field_is_a_400_naming_it(api: TestClient, body: dict[str, Any],
                                         named: str) -> None:
    refused = api.post("/api/tokens", json=body)
    assert refused.status_code == 400, refused.text
    assert named in refused.json()["message"]
    assert api.get("/api/tokens").json()["tokens"] == []


def test_a_removed_users_tokens_stop_working(api: TestClient) -> None:
    assert api.post("/api/users", json={"login": "root", "roles": ["admin"]}
                    ).status_code == 201
    made = make(api, user="alice", scopes=["read"])
    assert api.delete("/api/users/alice").status_code == 204
    assert api.get("/api/routes", headers=bearer(made["token"])).status_code == 401


# -- the CLI ------------------------------------------------------------------------------

def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host", *args, "--config", str(cfg)],
                          cwd=ROOT, text=True, capture_output=True, timeout=60)


@pytest.fixture
def cfg(config_dir: Callable[..., Path]) -> Iterator[Path]:
    path = config_dir()
    assert cli(path, "user", "add", "--role", "supervisor", "--no-password", "bob"
               ).returncode == 0
    yield path


def test_the_cli_adds_lists_and_revokes(cfg: Path, host: Host) -> None:
    added = cli(cfg, "token", "add", "--user", "bob", "--scope", "send", "--scope", "read")
    assert added.returncode == 0, added.stderr
    token = added.stdout.rpartition("shown this once, keep it now): ")[2].strip()
    key = token.split("-")[1]
    assert f"{key}: user bob; scopes send, read" in added.stdout
    listed = cli(cfg, "token", "list")
    assert f"{key}: user bob" in listed.stdout and "last used never" in listed.stdout
    assert token not in listed.stdout + listed.stderr + added.stderr
    clock = Clock()
    host.tokens.clock = clock
    with TestClient(host.app_for()) as c:  # a server started after the CLI's add
        assert c.get("/api/routes", headers=bearer(token)).status_code == 200
        revoked = cli(cfg, "token", "revoke", key)  # by another process
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        clock.now += RECHECK  # the server looks it up again after RECHECK seconds
        assert c.get("/api/routes", headers=bearer(token)).status_code == 401
        assert c.get("/api/routes", headers=bearer("test-token")).status_code == 200
    assert "last used 20" in cli(cfg, "token", "list").stdout


def test_the_cli_refuses_a_bad_user_or_id(cfg: Path) -> None:
    bad = cli(cfg, "token", "add", "--user", "nobody", "--scope", "read")
    assert bad.returncode == 1 and "user: no user named 'nobody'" in bad.stderr
    scope = cli(cfg, "token", "add", "--integration", "crm", "--scope", "root")
    assert scope.returncode == 2 and "root" in scope.stderr
    unknown = cli(cfg, "token", "revoke", "0badcafe")
    assert unknown.returncode == 1 and "no API token '0badcafe'" in unknown.stderr
