"""Browser sessions (issue 13 point 2; host.sessions, host.logins, /api/session, /login):
sign in and out through the real app, the cookie's flags, CSRF on unsafe /api methods,
sessions ended by a removal, a password change, a logout or time (a fake clock), and the
limit on failed logins (a fake clock, no sleeps)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host import passwords
from host.config import load_settings
from host.core import Host
from host.logins import FailureCounter
from host.web.ui.sessions import COOKIE
from tests.brokers.conftest import broker_config
from tests.test_api import SIMULATOR

PASSWORD = "correct horse battery"
CONFIG = {"Authorization": "Bearer test-token"}
BASE = "https://testserver"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def host(tmp_path: Path) -> Host:
    cfg = broker_config(tmp_path, SIMULATOR)
    return Host(load_settings(cfg), config_dir=cfg)


@pytest.fixture
def clocks(host: Host) -> tuple[Clock, Clock]:
    """(the sessions' clock, the failure counter's clock)."""
    sessions, failures = Clock(1_800_000_000.0), Clock(1000.0)
    host.logins.sessions.clock = sessions
    host.logins.counter.clock = failures
    return sessions, failures


@pytest.fixture
def client(host: Host, clocks: tuple[Clock, Clock]) -> Iterator[TestClient]:
    with TestClient(host.app_for(), base_url=BASE) as c:
        for login, role in (("alice", "admin"), ("bob", "agent")):
            assert c.post("/api/users", headers=CONFIG, json={
                "login": login, "roles": [role], "password": PASSWORD}).status_code == 201
        yield c


def sign_in(client: TestClient, login: str = "alice", password: str = PASSWORD,
            **headers: str) -> Any:
    return client.post("/api/session", json={"login": login, "password": password},
                       headers=headers)


def test_sign_in_answers_who_and_sets_a_safe_cookie(client: TestClient) -> None:
    signed = sign_in(client)
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert {k: body[k] for k in ("user", "display_name", "roles")} == {
        "user": "alice", "display_name": "", "roles": ["admin"]}
    assert len(body["csrf_token"]) > 30
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "secure", "path=/"} <= flags
    me = client.get("/api/session")  # the cookie authenticates /api
    assert me.status_code == 200
    assert me.json()["user"] == "alice" and me.json()["csrf_token"] == body["csrf_token"]
    assert me.json()["via"] == "session" and "admin" in me.json()["rights"]


def test_sign_in_wants_json_from_this_site(client: TestClient) -> None:
    form = client.post("/api/session", data={"login": "alice", "password": PASSWORD})
    assert form.status_code == 415
    other = sign_in(client, Origin="https://evil.example")
    assert other.status_code == 403 and "Origin" in other.json()["message"]
    assert sign_in(client, Origin=BASE).status_code == 200
    assert client.post("/api/session", json={"login": "alice"}).status_code == 400


def test_a_cookie_request_to_an_unsafe_method_needs_the_csrf_token(client: TestClient) -> None:
    csrf = sign_in(client).json()["csrf_token"]
    user = {"login": "carol", "roles": ["agent"]}
    refused = client.post("/api/users", json=user)
    assert refused.status_code == 403 and refused.json()["error"] == "csrf"
    wrong = client.post("/api/users", json=user, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    assert client.get("/api/users/carol").status_code == 404  # nothing was made
    made = client.post("/api/users", json=user, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    # a bearer request needs none, even with the cookie beside it
    assert client.delete("/api/users/carol", headers=CONFIG).status_code == 204


def test_sign_out_ends_the_session_and_every_copy_of_its_cookie(
        client: TestClient, host: Host) -> None:
    csrf = sign_in(client).json()["csrf_token"]
    copy = client.cookies.get(COOKIE)
    assert client.delete("/api/session").status_code == 403  # no CSRF token
    out = client.delete("/api/session", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert client.get("/api/session").status_code == 401
    with TestClient(host.app_for(), base_url=BASE, cookies={COOKIE: copy}) as thief:
        refused = thief.get("/api/session")
        assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers


def test_a_removed_user_or_a_new_password_ends_its_sessions(client: TestClient,
                                                            host: Host) -> None:
    with TestClient(host.app_for(), base_url=BASE) as bob:
        assert sign_in(bob, "bob").status_code == 200
        assert sign_in(client).status_code == 200
        assert client.patch("/api/users/alice", headers=CONFIG,
                            json={"password": "another long one"}).status_code == 200
        assert client.get("/api/session").status_code == 401
        assert sign_in(client, password="another long one").status_code == 200
        assert client.get("/api/session").status_code == 200
        assert bob.get("/api/session").status_code == 200
        assert client.delete("/api/users/bob", headers=CONFIG).status_code == 204
        assert bob.get("/api/session").status_code == 401


def test_a_removed_users_session_does_not_pass_to_a_new_user_of_its_login(
        client: TestClient, host: Host) -> None:
    # The cookie names the login and its session epoch: a user added later with the
    # same login (another person, maybe an admin) must not be signed in by it.
    assert sign_in(client, "bob").status_code == 200
    copy = client.cookies.get(COOKIE)
    assert client.delete("/api/users/bob", headers=CONFIG).status_code == 204
    assert client.post("/api/users", headers=CONFIG, json={
        "login": "bob", "roles": ["admin"], "password": "the new bob's own"}
        ).status_code == 201
    with TestClient(host.app_for(), base_url=BASE, cookies={COOKIE: copy}) as old:
        assert old.get("/api/session").status_code == 401
        assert old.get("/api/tokens").status_code == 401


def test_a_role_change_applies_at_the_next_request(client: TestClient) -> None:
    assert sign_in(client, "bob").status_code == 200
    assert client.get("/api/routes").status_code == 403
    assert client.patch("/api/users/bob", headers=CONFIG,
                        json={"roles": ["supervisor"]}).status_code == 200
    assert client.get("/api/routes").status_code == 200


def test_a_session_ends_when_idle_or_too_old(client: TestClient, host: Host,
                                             clocks: tuple[Clock, Clock]) -> None:
    clock = clocks[0]
    idle, lifetime = host.settings.api.session_idle, host.settings.api.session_lifetime
    assert sign_in(client).status_code == 200
    clock.now += idle - 1
    assert client.get("/api/session").status_code == 200  # used: idle restarts
    clock.now += idle - 1
    assert client.get("/api/session").status_code == 200
    clock.now += idle
    assert client.get("/api/session").status_code == 401
    assert sign_in(client).status_code == 200
    for _ in range(lifetime // (idle - 1) + 1):  # used all along, still ends
        clock.now += idle - 1
        status = client.get("/api/session").status_code
    assert status == 401


# -- failed logins ------------------------------------------------------------------------

def test_failed_logins_are_limited_per_login_and_logged_without_the_password(
        client: TestClient, clocks: tuple[Clock, Clock],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smshost.logins")
    failures = clocks[1]
    for n in range(1, 6):
        failed = sign_in(client, password=f"wrong-{n}-secret")
        assert failed.status_code == 401 and failed.json()["error"] == "login_failed"
        failures.now += 10
    assert ("login failed for 'alice' from testclient: wrong password (3 in 15 min)"
            in caplog.text)
    limited = sign_in(client)  # even the right password: no password is checked
    assert limited.status_code == 429 and limited.headers["Retry-After"] == str(900 - 50)
    assert "wrong-" not in caplog.text and PASSWORD not in caplog.text
    assert "login refused for 'alice' from testclient: too many failed logins" in caplog.text
    failures.now += 900 - 50  # the oldest failure leaves the window
    assert sign_in(client).status_code == 200
    metrics = client.get("/metrics").text
    assert 'smshost_logins_total{outcome="failed"} 5.0' in metrics
    assert 'smshost_logins_total{outcome="limited"} 1.0' in metrics
    assert 'smshost_logins_total{outcome="ok"} 1.0' in metrics


def test_unknown_logins_count_and_are_limited_per_address(
        client: TestClient, clocks: tuple[Clock, Clock],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smshost.logins")
    for n in range(5):
        failed = sign_in(client, f"nobody{n}", "whatever-it-is")
        assert failed.status_code == 401 and failed.json()["message"] == \
            "wrong login or password"  # as for a wrong password
    assert "login failed for 'nobody0' from testclient: unknown login (1 in 15 min)" \
        in caplog.text
    limited = sign_in(client)  # from the same address
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) == 900
    clocks[1].now += 900
    assert sign_in(client).status_code == 200


def test_an_unknown_login_costs_a_password_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio

    checked: list[str] = []
    real = passwords._matches

    def spy(digest: str, password: str) -> bool:
        checked.append(digest)
        return real(digest, password)
    monkeypatch.setattr(passwords, "_matches", spy)
    assert anyio.run(passwords.matches, None, "guess") is False
    assert len(checked) == 1 and checked[0].startswith("$argon2id$")


def test_the_failure_counter_stays_bounded() -> None:
    clock = Clock(0.0)
    counter = FailureCounter(clock, max_keys=100)
    for n in range(5000):
        counter.add(f"login:spray{n}", 5, 900)
        clock.now += 0.01
    assert len(counter) == 100
    assert len(counter.count("login:spray4999", 900)) == 1  # the newest are kept
    assert counter.count("login:spray0", 900) == []


# -- the sign-in page ---------------------------------------------------------------------

def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def test_the_login_page_signs_in_and_out(client: TestClient) -> None:
    page = client.get("/login?next=/desk")
    assert page.status_code == 200 and 'name="password"' in page.text
    token = csrf_of(page.text)
    form = {"login": "alice", "password": PASSWORD, "next": "/desk?x=1"}
    assert client.post("/login", data=form).status_code == 403  # no CSRF token
    wrong = client.post("/login", data={**form, "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "Wrong login or password" in wrong.text
    signed = client.post("/login", data={**form, "csrf_token": token},
                         follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/desk?x=1"
    assert client.get("/api/session").json()["user"] == "alice"  # pages call the API
    page = client.get("/login")
    assert "Signed in as <strong>alice</strong>" in page.text
    out = client.post("/logout", data={"csrf_token": csrf_of(page.text)},
                      follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/api/session").status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "/\\evil.example", "javascript:alert(1)", "desk", ""])
def test_the_login_page_goes_to_local_paths_only(client: TestClient, target: str) -> None:
    token = csrf_of(client.get("/login").text)
    signed = client.post("/login", data={"login": "alice", "password": PASSWORD,
                                         "next": target, "csrf_token": token},
                         follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/login"
