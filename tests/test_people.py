"""Users and workgroups (issue 13, point 1; host.people): through /api/users and
/api/workgroups of the real app on a real SQLite file, and through ``smshost user`` /
``smshost workgroup``; the first admin; the import of sinks.toml's queues (O9)."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.conftest import ROOT, base_config, free_port
from tests.outbound.conftest import (OTHER_NUMBER, OUR_NUMBER, PHONE, TOKEN, generic_toml,
                                     outbox_toml, write_config)

PASSWORD = "correct horse battery"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def api(client: TestClient) -> TestClient:
    return client


# -- the API ------------------------------------------------------------------------------

def test_users_are_created_listed_changed_and_removed(api: TestClient, host: Host) -> None:
    made = api.post("/api/users", json={"login": "alice", "display_name": "Alice A.",
                                        "roles": ["agent", "supervisor"],
                                        "classifications": ["marketing", "support"],
                                        "sender_number": "(415) 555-0100",
                                        "password": PASSWORD})
    assert made.status_code == 201, made.text
    alice = made.json()
    assert {k: alice[k] for k in ("login", "display_name", "roles", "classifications",
                                  "sender_number", "workgroups", "has_password")} == {
        "login": "alice", "display_name": "Alice A.", "roles": ["agent", "supervisor"],
        "classifications": ["marketing", "support"], "sender_number": OUR_NUMBER,
        "workgroups": [], "has_password": True}
    assert [u["login"] for u in api.get("/api/users").json()["users"]] == ["alice"]
    assert api.get("/api/users/ALICE").json()["login"] == "alice"  # case-insensitive
    changed = api.patch("/api/users/alice", json={"roles": ["admin"], "sender_number": ""})
    assert changed.status_code == 200, changed.text
    assert changed.json()["roles"] == ["admin"] and changed.json()["sender_number"] is None
    assert changed.json()["classifications"] == ["marketing", "support"]  # kept
    assert api.post("/api/users", json={"login": "bob", "roles": ["admin"]}).status_code == 201
    assert api.delete("/api/users/alice").status_code == 204
    assert api.get("/api/users/alice").status_code == 404
    assert [u["login"] for u in api.get("/api/users").json()["users"]] == ["bob"]


def test_workgroups_have_members_and_a_sender(api: TestClient) -> None:
    for login in ("alice", "bob"):
        assert api.post("/api/users", json={"login": login, "roles": ["agent"]}
                        ).status_code == 201
    made = api.post("/api/workgroups", json={"name": "support", "members": ["alice", "BOB"],
                                             "sender_number": "+1 415 555 0199"})
    assert made.status_code == 201, made.text
    assert made.json()["members"] == ["alice", "bob"]
    assert made.json()["sender_number"] == OTHER_NUMBER
    assert api.get("/api/users/alice").json()["workgroups"] == ["support"]
    # removing a workgroup with members: 409 with the reason
    refused = api.delete("/api/workgroups/support")
    assert refused.status_code == 409 and "alice, bob" in refused.json()["message"]
    # a user removed leaves its workgroups
    assert api.delete("/api/users/bob").status_code == 204
    assert api.get("/api/workgroups/support").json()["members"] == ["alice"]
    renamed = api.put("/api/workgroups/support", json={"name": "help", "members": []})
    assert renamed.status_code == 200 and renamed.json()["name"] == "help"
    assert api.delete("/api/workgroups/help").status_code == 204
    assert api.get("/api/workgroups").json() == {"workgroups": []}


def test_a_duplicate_login_or_name_is_409(api: TestClient) -> None:
    assert api.post("/api/users", json={"login": "alice", "roles": ["agent"]}).status_code == 201
    again = api.post("/api/users", json={"login": "Alice", "roles": ["agent"]})
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert api.post("/api/users", json={"login": "bob", "roles": ["agent"]}).status_code == 201
    assert api.patch("/api/users/bob", json={"login": "ALICE"}).status_code == 409
    assert api.post("/api/workgroups", json={"name": "support"}).status_code == 201
    assert api.post("/api/workgroups", json={"name": "SUPPORT"}).status_code == 409


@pytest.mark.parametrize(("body", "field"), [
    ({"login": "alice", "roles": ["boss"]}, "roles[0]"),
    ({"login": "alice", "roles": []}, "roles"),
    ({"login": "alice"}, "roles"),
    ({"roles": ["agent"]}, "login"),
    ({"login": "a b", "roles": ["agent"]}, "login"),
    ({"login": "x" * 65, "roles": ["agent"]}, "login"),
    ({"login": "alice", "roles": "agent"}, "roles"),
    ({"login": "alice", "roles": ["agent"], "sender_number": "12"}, "sender_number"),
    ({"login": "alice", "roles": ["agent"], "sender_number": 4155550100}, "sender_number"),
    ({"login": "alice", "roles": ["agent"], "classifications": ["a b"]}, "classifications[0]"),
    ({"login": "alice", "roles": ["agent"], "classifications": "x"}, "classifications"),
    ({"login": "alice", "roles": ["agent"], "workgroups": ["nope"]}, "workgroups[0]"),
    ({"login": "alice", "roles": ["agent"], "password": "short"}, "password"),
    ({"login": "alice", "roles": ["agent"], "display_name": "x" * 201}, "display_name"),
    ({"login": "alice", "roles": ["agent"], "account": "nope"}, "account"),
    ({"login": "alice", "roles": ["agent"], "colour": "red"}, "colour"),
])
def test_a_bad_field_is_400_naming_it(api: TestClient, body: dict[str, Any],
                                      field: str) -> None:
    answer = api.post("/api/users", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_parameter"
    assert f"{field}" in answer.json()["message"], answer.json()["message"]
    assert api.get("/api/users").json() == {"users": []}


def test_the_last_admin_stays(api: TestClient) -> None:
    assert api.post("/api/users", json={"login": "root", "roles": ["admin"]}).status_code == 201
    assert api.delete("/api/users/root").status_code == 409
    assert api.patch("/api/users/root", json={"roles": ["agent"]}).status_code == 409


def test_passwords_are_argon2id_hashes_never_answered_nor_logged(
        api: TestClient, host: Host, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    made = api.post("/api/users", json={"login": "alice", "roles": ["agent"],
                                        "password": PASSWORD})
    changed = api.patch("/api/users/alice", json={"password": PASSWORD + "2"})
    listed = api.get("/api/users")
    for answer in (made, changed, listed, api.get("/api/users/alice")):
        assert PASSWORD not in answer.text and "argon2" not in answer.text
    assert PASSWORD not in caplog.text
    ((digest,),) = rows(host.store.path, "select password_hash from users")
    assert digest.startswith("$argon2id$")
    assert PasswordHasher().verify(digest, PASSWORD + "2")
    cleared = api.patch("/api/users/alice", json={"password": None})
    assert cleared.json()["has_password"] is False


def test_the_api_needs_the_token(host: Host) -> None:
    with TestClient(host.app_for()) as anonymous:
        assert anonymous.get("/api/users").status_code == 401
        assert anonymous.post("/api/workgroups", json={"name": "x"}).status_code == 401


# -- the CLI ------------------------------------------------------------------------------

def cli(cfg: Path, *args: str, stdin: str | None = None) -> Any:
    """``smshost ARGS --config cfg`` with ``stdin`` (run_cli gives none)."""
    return subprocess.run([sys.executable, "-m", "host", *args, "--config", str(cfg)],
                          cwd=ROOT, input=stdin, text=True, capture_output=True, timeout=60)


def test_the_cli_manages_users_and_workgroups(config_dir: Callable[..., Path],
                                              tmp_path: Path) -> None:
    cfg = config_dir()
    added = cli(cfg, "user", "add", "--role", "admin", "--password-stdin", "alice",
                stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "alice: roles admin" in added.stdout and "password set" in added.stdout
    assert PASSWORD not in added.stdout + added.stderr
    assert cli(cfg, "user", "add", "--role", "agent", "--no-password", "bob",
               "--sender-number", "415-555-0123").returncode == 0
    twice = cli(cfg, "user", "add", "--role", "agent", "--no-password", "BOB")
    assert twice.returncode == 1 and "exists" in twice.stderr
    bad = cli(cfg, "user", "set", "bob", "--sender-number", "12")
    assert bad.returncode == 1 and "sender_number" in bad.stderr
    assert cli(cfg, "workgroup", "add", "support", "--member", "alice", "--member", "bob"
               ).returncode == 0
    listed = cli(cfg, "user", "list")
    assert "bob: roles agent; workgroups support" in listed.stdout and PHONE in listed.stdout
    refused = cli(cfg, "workgroup", "remove", "support")
    assert refused.returncode == 1 and "member" in refused.stderr
    assert cli(cfg, "workgroup", "set", "support", "--no-members").returncode == 0
    assert cli(cfg, "workgroup", "remove", "support").returncode == 0
    assert cli(cfg, "user", "remove", "bob").returncode == 0
    assert "1 user(s)" in cli(cfg, "user", "list").stdout
    changed = cli(cfg, "user", "set", "alice", "--password-stdin", stdin="another password\n")
    assert changed.returncode == 0, changed.stderr
    ((digest,),) = rows(tmp_path / "data" / "smshost.db", "select password_hash from users")
    assert PasswordHasher().verify(digest, "another password")


def test_the_cli_asks_for_the_password_twice(config_dir: Callable[..., Path]) -> None:
    cfg = config_dir()
    added = cli(cfg, "user", "add", "--role", "admin", "alice",
                stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.returncode == 0, added.stderr
    assert "password set" in added.stdout and PASSWORD not in added.stdout


# -- the first admin ----------------------------------------------------------------------

def test_the_first_admin_comes_once_with_the_generated_token(
        tmp_path: Path, config_dir: Callable[..., Path],
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_dir(smshost=base_config(tmp_path).replace('token = "test-token"', ""))
    caplog.set_level(logging.WARNING, logger="smshost.people")
    with TestClient(Host(load_settings(cfg), config_dir=cfg).app_for()):
        pass
    (line,) = [r.getMessage() for r in caplog.records if "created user" in r.getMessage()]
    password = line.split("with password ")[1].split(" ")[0]
    db = tmp_path / "data" / "smshost.db"
    ((login, roles, digest),) = rows(db, "select login, roles, password_hash from users")
    assert (login, roles) == ("admin", '["admin"]')
    assert PasswordHasher().verify(digest, password)
    caplog.clear()
    cli(cfg, "user", "remove", "admin")  # the last admin: refused
    with TestClient(Host(load_settings(cfg), config_dir=cfg).app_for()):
        pass
    assert not [r for r in caplog.records if "created user" in r.getMessage()]
    assert len(rows(db, "select * from users")) == 1


def test_no_first_admin_with_a_configured_token(host: Host, client: TestClient) -> None:
    assert client.get("/api/users").json() == {"users": []}


# -- the import of sinks.toml's queues (O9) -----------------------------------------------

QUEUES = """
[[queue.queues]]
name = "support"
kind = "workgroup"
members = ["alice", "bob"]
account = "second"

[[queue.queues]]
name = "carol"
kind = "user"
account = "main"
"""


@pytest.fixture
def queued_host(tmp_path: Path) -> Iterator[TestClient]:
    cfg = write_config(tmp_path, free_port(), sinks=QUEUES, outbox=outbox_toml(enabled=False),
                       brokers=generic_toml("http://127.0.0.1:9/", accounts=(
                           ("main", OUR_NUMBER), ("second", OTHER_NUMBER))))
    with TestClient(Host(load_settings(cfg), config_dir=cfg).app_for(), headers=AUTH) as c:
        yield c


def test_queues_of_sinks_toml_are_imported_and_the_database_sender_wins(
        queued_host: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    api = queued_host
    (support,) = api.get("/api/workgroups").json()["workgroups"]
    assert {k: support[k] for k in ("name", "members", "account", "source")} == {
        "name": "support", "members": ["alice", "bob"], "account": "second",
        "source": "sinks.toml"}
    users = {u["login"]: u for u in api.get("/api/users").json()["users"]}
    assert sorted(users) == ["alice", "bob", "carol"]
    assert users["carol"]["account"] == "main" and users["alice"]["roles"] == ["agent"]
    sent = api.post("/api/messages", json={"to": PHONE, "text": "hi", "workgroup": "support"})
    assert sent.json()["from"] == OTHER_NUMBER, sent.text
    # the database's sender comes first: by number, then by account
    assert api.patch("/api/workgroups/support", json={
        "account": "", "sender_number": OUR_NUMBER}).status_code == 200
    sent = api.post("/api/messages", json={"to": PHONE, "text": "hi", "workgroup": "support"})
    assert sent.json()["from"] == OUR_NUMBER, sent.text
    assert api.patch("/api/users/alice", json={"account": "second"}).status_code == 200
    sent = api.post("/api/messages", json={"to": PHONE, "text": "hi", "user": "alice"})
    assert (sent.json()["account"], sent.json()["from"]) == ("second", OTHER_NUMBER)
    sent = api.post("/api/messages", json={"to": PHONE, "text": "hi", "user": "bob"})
    assert sent.status_code == 422 and sent.json()["error"] == "no_account"


def test_the_import_says_so_and_happens_once(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    cfg = write_config(tmp_path, free_port(), sinks=QUEUES, outbox=outbox_toml(enabled=False),
                       brokers=generic_toml("http://127.0.0.1:9/", accounts=(
                           ("main", OUR_NUMBER), ("second", OTHER_NUMBER))))
    caplog.set_level(logging.INFO, logger="smshost.people")
    with TestClient(Host(load_settings(cfg), config_dir=cfg).app_for(), headers=AUTH) as api:
        assert api.delete("/api/users/bob").status_code == 204
    assert ("imported workgroup support from sinks.toml; edit it with smshost workgroup "
            "set support") in caplog.text
    assert "imported user carol" in caplog.text
    caplog.clear()
    with TestClient(Host(load_settings(cfg), config_dir=cfg).app_for(), headers=AUTH) as api:
        assert sorted(u["login"] for u in api.get("/api/users").json()["users"]) == [
            "alice", "carol"]  # bob stays removed
    assert "imported" not in caplog.text
