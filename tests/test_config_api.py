"""Editing the configuration through /api/config (issue 13 points 4 and 6;
host.config.editor): the real app over the real files of a config directory, checked
by the files' text, the answers and host.live.settings (the host's swap applies nothing
yet, so the running routes are not what is checked here)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from host.config.change import Applied
from tests.conftest import base_config
from host.core import Host

ROUTES = textwrap.dedent("""\
    # Inbound routes of the test (this comment must stay).

    # The VIPs go to a queue.
    [[inbound]]
    name = "vip"
    type = "ani"                 # the sender
    pattern = '\\+1415555\\d{4}'
    destination = "email"
    target = "vip@example.com"

    # Keywords.
    [[inbound]]
    name = "keyword"
    pattern = "(?i)info.*"
    destination = "email"

    # The catch-all.
    [[inbound]]
    name = "default"
    destination = "email"
    default = true

    [routing]
    enabled = false   # tests store only
    """)

BROKERS = textwrap.dedent("""\
    # The brokers.
    [[brokers]]
    name = "sim"
    definition = "simulator"
    encryption = "http"   # loopback

    [brokers.attrs]
    tier = "gold"

    [[brokers.accounts]]
    id = "main"
    login = "me"
    password = { env = "SIM_PASSWORD" }
    local_address = "+15550100"

    [[brokers.accounts]]
    id = "second"
    password = "inline-s3cret"
    local_address = "+15550101"
    """)


@pytest.fixture
def cfg(config_dir: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SIM_PASSWORD", "env-s3cret")
    return config_dir(smshost=with_shipped(tmp_path), routes=ROUTES, brokers=BROKERS,
                      sinks=SINKS)


SINKS = '[email]\nhost = "127.0.0.1"\nto = "ops@example.com"\n'
"""The email sink has a server, so routes to it are valid (sending is never tried)."""


def with_shipped(tmp_path: Path) -> str:
    """The tests' smshost.toml with the shipped plugins (the simulator definition, the
    email sink): an edit bringing a problem with them is refused (test_live_config)."""
    return base_config(tmp_path).replace("shipped = false", "shipped = true")


@pytest.fixture
def host(cfg: Path) -> Host:
    from host.config import load_settings
    return Host(load_settings(cfg), config_dir=cfg)


@pytest.fixture
def applied(host: Host) -> list[Applied]:
    seen: list[Applied] = []
    host.live.listeners.append(seen.append)
    return seen


@pytest.fixture
def api(host: Host) -> Iterator[TestClient]:
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as c:
        yield c


def etag(api: TestClient, path: str) -> str:
    answer = api.get(path)
    assert answer.status_code == 200, answer.text
    return answer.headers["etag"]


def names(api: TestClient, path: str = "/api/config/routes") -> list[str]:
    return [r["name"] for r in api.get(path).json()["routes"]]


def test_a_route_edit_keeps_comments_and_untouched_entries(api: TestClient, cfg: Path,
                                                           applied: list[Applied]) -> None:
    tag = etag(api, "/api/config/routes")
    answer = api.patch("/api/config/routes/keyword", json={"pattern": "(?i)help.*",
                       "note": "keywords to chat"}, headers={"If-Match": tag})
    assert answer.status_code == 200, answer.text
    assert answer.json()["pattern"] == "(?i)help.*"
    assert answer.headers["etag"] != tag
    expected = ROUTES.replace('pattern = "(?i)info.*"', 'pattern = "(?i)help.*"')
    assert expected != ROUTES
    assert (cfg / "routes.toml").read_text() == expected
    assert [r.pattern for r in applied[-1].settings.inbound] == [
        "\\+1415555\\d{4}", "(?i)help.*", ".*"]
    assert applied[-1].change.source == "api"
    assert applied[-1].change.note == "keywords to chat"
    assert applied[-1].change.actor == "api.token"


def test_added_route_goes_before_the_default_with_its_comments_in_place(
        api: TestClient, cfg: Path, host: Host) -> None:
    answer = api.post("/api/config/routes", json={"name": "new", "destination": "email",
                                                 "pattern": r"stop\d+"})
    assert answer.status_code == 201, answer.text
    assert names(api) == ["vip", "keyword", "new", "default"]
    text = (cfg / "routes.toml").read_text()
    assert "pattern = 'stop\\d+'\n\n# The catch-all.\n[[inbound]]\nname = \"default\"" in text
    assert text.startswith("# Inbound routes of the test (this comment must stay).\n\n"
                           "# The VIPs go to a queue.\n[[inbound]]\nname = \"vip\"")
    assert [r.name for r in host.live.settings.inbound] == ["vip", "keyword", "new", "default"]
    first = api.post("/api/config/routes", json={"name": "first", "destination": "email",
                                                 "position": 0})
    assert first.status_code == 201
    assert names(api) == ["first", "vip", "keyword", "new", "default"]
    assert "# The VIPs go to a queue.\n[[inbound]]\nname = \"vip\"" in \
        (cfg / "routes.toml").read_text()


def test_move_up_down_and_the_default_route_rules(api: TestClient, cfg: Path) -> None:
    star = {"If-Match": "*"}
    moved = api.post("/api/config/routes/keyword/move", json={"direction": "up"},
                     headers=star)
    assert moved.status_code == 200, moved.text
    assert [r["name"] for r in moved.json()["routes"]] == ["keyword", "vip", "default"]
    text = (cfg / "routes.toml").read_text()
    assert text.index("# Keywords.\n[[inbound]]\nname = \"keyword\"") < \
        text.index("# The VIPs go to a queue.\n[[inbound]]\nname = \"vip\"")
    assert "# Inbound routes of the test (this comment must stay).\n" in text
    down = api.post("/api/config/routes/keyword/move", json={"direction": "down"},
                    headers=star)
    assert names(api) == ["vip", "keyword", "default"], down.text
    assert (cfg / "routes.toml").read_text() == ROUTES  # moved back: the text is the same
    for body in ({"direction": "down"}, {"to": 2}):
        refused = api.post("/api/config/routes/keyword/move", json=body, headers=star)
        assert refused.status_code == 409 and refused.json()["error"] == "default_route"
    assert api.post("/api/config/routes/vip/move", json={"direction": "up"},
                    headers=star).status_code == 409
    assert api.post("/api/config/routes/default/move", json={"direction": "up"},
                    headers=star).json()["error"] == "default_route"
    assert api.post("/api/config/routes/vip/move", json={"to": 1}, headers=star
                    ).status_code == 200
    assert names(api) == ["keyword", "vip", "default"]
    assert api.post("/api/config/routes/vip/move", json={"direction": "sideways"},
                    headers=star).status_code == 400
    removed = api.delete("/api/config/routes/default", headers=star)
    assert removed.status_code == 409 and "cannot be removed" in removed.json()["message"]
    late = api.post("/api/config/routes", json={"name": "late", "destination": "email",
                                                "position": 3})
    assert late.status_code == 409 and late.json()["error"] == "default_route"
    second = api.post("/api/config/routes", json={"name": "d2", "destination": "email",
                                                  "default": True})
    assert second.status_code == 409
    taken = api.post("/api/config/routes", json={"name": "vip", "destination": "email"})
    assert taken.status_code == 409 and taken.json()["error"] == "conflict"
    rename = api.patch("/api/config/routes/vip", json={"name": "keyword"}, headers=star)
    assert rename.status_code == 409
    gone = api.delete("/api/config/routes/vip", headers=star)
    assert gone.status_code == 204
    assert names(api) == ["keyword", "default"]
    assert "VIPs" not in (cfg / "routes.toml").read_text()


def test_a_stale_etag_is_refused_409_and_a_missing_one_428(api: TestClient,
                                                           cfg: Path) -> None:
    first = etag(api, "/api/config/routes")
    second = etag(api, "/api/config/routes")  # two clients read the same version
    assert api.patch("/api/config/routes/vip", json={"target": "a@example.com"},
                     headers={"If-Match": first}).status_code == 200
    before = (cfg / "routes.toml").read_bytes()
    late = api.patch("/api/config/routes/vip", json={"target": "b@example.com"},
                     headers={"If-Match": second})
    assert late.status_code == 409, late.text
    assert late.json()["error"] == "changed"
    assert late.headers["etag"] == etag(api, "/api/config/routes") != second
    assert (cfg / "routes.toml").read_bytes() == before
    missing = api.patch("/api/config/routes/vip", json={"target": "c@example.com"})
    assert missing.status_code == 428 and "If-Match" in missing.json()["message"]
    assert (cfg / "routes.toml").read_bytes() == before
    listed = api.patch("/api/config/routes/vip", json={"target": "d@example.com"},
                       headers={"If-Match": f'"x", {late.headers["etag"]}'})
    assert listed.status_code == 200


def test_an_invalid_edit_is_422_with_file_and_line_and_nothing_is_written(
        api: TestClient, cfg: Path, host: Host, applied: list[Applied]) -> None:
    before = (cfg / "routes.toml").read_bytes()
    bad = api.patch("/api/config/routes/keyword", json={"pattern": "(unclosed"},
                    headers={"If-Match": "*"})
    assert bad.status_code == 422, bad.text
    error = bad.json()["errors"][0]
    assert error["file"] == "routes.toml" and error["key"] == "inbound[1].pattern"
    assert error["line"] == 14 and "missing )" in error["message"]
    assert (cfg / "routes.toml").read_bytes() == before
    unknown = api.patch("/api/config/routes/keyword", json={"destinaton": "chat"},
                        headers={"If-Match": "*"})
    assert unknown.status_code == 422
    assert "did you mean 'destination'" in unknown.json()["errors"][0]["message"]
    days = api.patch("/api/config/purge", json={"days": 1}, headers={"If-Match": "*"})
    assert days.status_code == 422
    assert days.json()["errors"][0]["file"] == "smshost.toml"
    assert days.json()["errors"][0]["key"] == "purge.days"
    assert api.patch("/api/config/routes/keyword", json={"target": None, "pattern": [None]},
                     headers={"If-Match": "*"}).status_code == 400
    assert (cfg / "routes.toml").read_bytes() == before
    assert not applied and host.live.settings.purge.days == 30


def test_purge_and_sms_attrs_are_created_in_smshost_toml(api: TestClient, cfg: Path,
                                                          host: Host) -> None:
    original = (cfg / "smshost.toml").read_text()
    assert api.get("/api/config/purge").json()["days"] == 30
    purge = api.patch("/api/config/purge", json={"days": 90, "at": "04:30"},
                      headers={"If-Match": etag(api, "/api/config/purge")})
    assert purge.status_code == 200 and purge.json()["days"] == 90
    attrs = api.put("/api/config/attrs", json={"attrs": {"region": "EU", "tier": "1"}},
                    headers={"If-Match": purge.headers["etag"]})
    assert attrs.status_code == 200, attrs.text
    text = (cfg / "smshost.toml").read_text()
    assert text.startswith(original)
    assert text[len(original):] == ('\n[purge]\ndays = 90\nat = "04:30"\n\n'
                                    '[attrs]\nregion = "EU"\ntier = "1"\n')
    assert host.live.settings.purge.days == 90
    assert host.live.settings.attrs == {"region": "EU", "tier": "1"}
    patched = api.patch("/api/config/attrs", json={"attrs": {"tier": None, "x": "y"}},
                        headers={"If-Match": "*"})
    assert patched.json() == {"attrs": {"region": "EU", "x": "y"}}
    assert host.live.settings.attrs == {"region": "EU", "x": "y"}
    assert api.put("/api/config/attrs", json={"attrs": {"n": 1}},
                   headers={"If-Match": "*"}).status_code == 422
    assert api.put("/api/config/attrs", json={"region": "EU"},
                   headers={"If-Match": "*"}).status_code == 400


def test_broker_secrets_are_never_answered_kept_when_omitted_removed_with_null(
        api: TestClient, cfg: Path, host: Host) -> None:
    got = api.get("/api/config/brokers/sim")
    assert "s3cret" not in got.text and "env-s3cret" not in got.text
    main, second = got.json()["accounts"]
    assert main["password"] == {"set": True, "from": "env", "ref": "SIM_PASSWORD"}
    assert second["password"] == {"set": True, "from": "inline"}
    put = api.put("/api/config/brokers/sim/accounts/second",
                  json={"id": "second", "local_address": "+15550102", "login": "two"},
                  headers={"If-Match": got.headers["etag"]})
    assert put.status_code == 200, put.text
    assert "inline-s3cret" not in put.text
    assert 'password = "inline-s3cret"' in (cfg / "brokers.toml").read_text()
    account = host.live.settings.brokers[0].accounts[1]
    assert account.password is not None and account.password.reveal() == "inline-s3cret"
    assert account.login == "two" and account.local_address == "+15550102"
    whole = api.put("/api/config/brokers/sim", json={**api.get(
        "/api/config/brokers/sim").json(), "region": "GB"}, headers={"If-Match": "*"})
    assert whole.status_code == 200, whole.text
    assert "password = { env = \"SIM_PASSWORD\" }" in (cfg / "brokers.toml").read_text()
    removed = api.patch("/api/config/brokers/sim/accounts/second", json={"password": None},
                        headers={"If-Match": "*"})
    assert removed.json()["password"] == {"set": False}
    assert "inline-s3cret" not in (cfg / "brokers.toml").read_text()
    assert host.live.settings.brokers[0].accounts[1].password is None
    assert host.live.settings.brokers[0].region == "GB"
    ref = api.patch("/api/config/brokers/sim/accounts/second",
                    json={"password": {"env": "SIM_PASSWORD"}}, headers={"If-Match": "*"})
    assert ref.json()["password"]["from"] == "env"


def test_brokers_and_accounts_are_added_switched_and_removed(api: TestClient, cfg: Path,
                                                             host: Host) -> None:
    made = api.post("/api/config/brokers", json={
        "name": "backup", "definition": "simulator", "encryption": "http",
        "mt": {"rate": 5}, "mo": {"path": "/backup/mo", "receipt_path": "/backup/receipt"},
        "accounts": [{"id": "b1", "local_address": "+15550200"}]})
    assert made.status_code == 201, made.text
    assert made.json()["mt"]["rate"] == 5 and made.json()["accounts"][0]["id"] == "b1"
    off = api.patch("/api/config/brokers/backup", json={"mo": {"enabled": False},
                    "enabled": False}, headers={"If-Match": "*"})
    assert off.status_code == 200
    backup = host.live.settings.brokers[1]
    assert not backup.enabled and not backup.mo.enabled and backup.mt.rate == 5
    acc = api.post("/api/config/brokers/backup/accounts", json={"id": "b2", "password": "pw",
                                                               "local_address": "+15550201"})
    assert acc.status_code == 201 and acc.json()["password"] == {"set": True,
                                                                 "from": "inline"}
    assert api.delete("/api/config/brokers/backup/accounts/b1",
                      headers={"If-Match": "*"}).status_code == 204
    assert [a.id for a in host.live.settings.brokers[1].accounts] == ["b2"]
    assert api.get("/api/config/brokers/nope").status_code == 404
    assert api.delete("/api/config/brokers/backup", headers={"If-Match": "*"}
                      ).status_code == 204
    assert [b.name for b in host.live.settings.brokers] == ["sim"]
    assert (cfg / "brokers.toml").read_text() == BROKERS


def test_attrs_at_broker_and_account_level(api: TestClient, host: Host) -> None:
    assert api.get("/api/config/brokers/sim/attrs").json() == {"attrs": {"tier": "gold"}}
    broker = api.patch("/api/config/brokers/sim/attrs", json={"attrs": {"zone": "eu"}},
                       headers={"If-Match": "*"})
    assert broker.json() == {"attrs": {"tier": "gold", "zone": "eu"}}
    account = api.put("/api/config/brokers/sim/accounts/main/attrs",
                      json={"attrs": {"desk": "7"}, "note": "desk 7"},
                      headers={"If-Match": "*"})
    assert account.status_code == 200, account.text
    assert host.live.settings.brokers[0].attrs == {"tier": "gold", "zone": "eu"}
    assert host.live.settings.brokers[0].accounts[0].attrs == {"desk": "7"}


def test_a_file_absent_from_the_directory_is_created(config_dir: Callable[..., Path],
                                                     tmp_path: Path) -> None:
    from host.config import load_settings
    cfg = config_dir(smshost=with_shipped(tmp_path))
    host = Host(load_settings(cfg), config_dir=cfg)
    assert not (cfg / "brokers.toml").exists()
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as api:
        assert api.get("/api/config/brokers").json() == {"brokers": []}
        made = api.post("/api/config/brokers", json={"name": "sim", "definition":
                        "simulator", "encryption": "http", "accounts": [{"id": "a"}]})
        assert made.status_code == 201, made.text
        outbound = api.post("/api/config/outbound", json={"name": "uk", "pattern": r"0(\d+)",
                                                          "format": "+44$1"})
        assert outbound.status_code == 201, outbound.text
    text = (cfg / "brokers.toml").read_text()
    assert text.startswith("# brokers.toml: written by smshost")
    assert '[[brokers]]\nname = "sim"\ndefinition = "simulator"\nencryption = "http"\n' in text
    assert [b.name for b in host.live.settings.brokers] == ["sim"]
    assert host.live.settings.outbound[0].format == "+44$1"
    assert "pattern = '0(\\d+)'" in (cfg / "routes.toml").read_text()


def test_concurrent_edits_are_serialized(host: Host, cfg: Path) -> None:
    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=host.app_for())
        async with host.running(), httpx.AsyncClient(
                transport=transport, base_url="http://test",
                headers={"Authorization": "Bearer test-token"}) as client:
            tag = (await client.get("/api/config/routes")).headers["etag"]
            answers = await asyncio.gather(*(
                client.patch("/api/config/routes/vip", json={"target": f"{i}@example.com"},
                             headers={"If-Match": tag}) for i in range(4)))
            adds = await asyncio.gather(*(
                client.post("/api/config/routes", json={"name": f"r{i}",
                                                        "destination": "email"})
                for i in range(4)))
            return [a.status_code for a in answers] + [a.status_code for a in adds]
    codes = asyncio.run(main())
    assert sorted(codes[:4]) == [200, 409, 409, 409]  # one wins; the others read a stale file
    assert codes[4:] == [201] * 4  # no lost update: every add is in the file
    assert sorted(r.name for r in host.live.settings.inbound) == sorted(
        ["vip", "keyword", "default", "r0", "r1", "r2", "r3"])


def test_the_actor_is_the_tokens_user(api: TestClient, applied: list[Applied]) -> None:
    assert api.post("/api/users", json={"login": "alice", "roles": ["admin"]}
                    ).status_code == 201
    made = api.post("/api/tokens", json={"user": "alice", "scopes": ["admin"]}).json()
    answer = api.patch("/api/config/routes/vip?note=by%20alice", json={"target": "x@y.z"},
                       headers={"If-Match": "*", "Authorization": f"Bearer {made['token']}"})
    assert answer.status_code == 200, answer.text
    change = applied[-1].change
    assert (change.source, change.actor, change.note) == ("api", "alice", "by alice")


def test_bad_bodies_are_400(api: TestClient) -> None:
    star = {"If-Match": "*"}
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/api/config/routes", {"destination": "email"}),
        ("POST", "/api/config/routes", {"name": "x", "destination": "email", "position": "1"}),
        ("PATCH", "/api/config/routes/vip", {"note": 5}),
        ("POST", "/api/config/routes/vip/move", {"direction": "up", "to": 1}),
        ("PATCH", "/api/config/brokers/sim", {"mo": "off"}),
        ("PATCH", "/api/config/brokers/sim", {"accounts": "x"}),
    ]
    for method, path, body in cases:
        answer = api.request(method, path, json=body, headers=star)
        assert answer.status_code == 400, (path, body, answer.text)
    assert api.get("/api/config/routes/none").status_code == 404
    assert api.get("/api/config/routes?x=1").status_code == 400


def test_a_file_that_is_not_toml_is_422_and_not_rewritten(api: TestClient, cfg: Path) -> None:
    (cfg / "routes.toml").write_text(ROUTES + "\n[broken\n")
    for answer in (api.get("/api/config/routes"),
                   api.post("/api/config/routes", json={"name": "x", "destination": "email"})):
        assert answer.status_code == 422, answer.text
        error = answer.json()["errors"][0]
        assert error["file"] == "routes.toml" and error["line"] == 26
    assert (cfg / "routes.toml").read_text() == ROUTES + "\n[broken\n"


def test_a_secret_with_non_ascii_characters_is_set_and_applied(api: TestClient, cfg: Path,
                                                               host: Host) -> None:
    # The running and the new settings are compared when applied; hmac.compare_digest
    # refuses str with non-ASCII characters (a TypeError: 500, the file written and
    # not applied) unless the values are compared as bytes.
    set_ = api.patch("/api/config/brokers/sim/accounts/second",
                     json={"password": "pässwört-€"}, headers={"If-Match": "*"})
    assert set_.status_code == 200, set_.text
    password = host.live.settings.brokers[0].accounts[1].password
    assert password is not None and password.reveal() == "pässwört-€"
    again = api.patch("/api/config/brokers/sim/accounts/second", json={"login": "two"},
                      headers={"If-Match": "*"})
    assert again.status_code == 200, again.text
    assert host.live.settings.brokers[0].accounts[1].login == "two"


def test_an_edit_that_would_stop_a_broker_is_422_and_nothing_is_written(
        api: TestClient, cfg: Path, host: Host, applied: list[Applied]) -> None:
    # A problem inside one [[brokers]] table only keeps that broker from starting when
    # the files are loaded (the others run); an edit must not be the cause of one.
    before = (cfg / "brokers.toml").read_bytes()
    account = "/api/config/brokers/sim/accounts/second"
    for body in ({"passwrd": "typo-s3cret"}, {"password": 12345678},
                 {"local_address": 5}):
        bad = api.patch(account, json=body, headers={"If-Match": "*"})
        assert bad.status_code == 422, (body, bad.text)
        assert bad.json()["errors"][0]["file"] == "brokers.toml"
        assert "brokers[0]" in bad.json()["message"]  # which broker, by file and key
        assert "typo-s3cret" not in bad.text and "12345678" not in bad.text
    added = api.post("/api/config/brokers", json={"name": "other", "definiton": "sim"})
    assert added.status_code == 422, added.text
    assert (cfg / "brokers.toml").read_bytes() == before
    assert not applied and not host.live.settings.brokers[0].config_problems


def test_a_broker_broken_in_the_file_already_does_not_stop_other_edits(cfg: Path) -> None:
    # broken at start (a live edit bringing the problem is refused, above)
    from host.config import load_settings
    (cfg / "brokers.toml").write_text(BROKERS.replace('id = "second"', 'id = "second"\nbogus = 1'))
    broken = Host(load_settings(cfg), config_dir=cfg)
    assert broken.live.settings.brokers[0].config_problems
    with TestClient(broken.app_for(), headers={"Authorization": "Bearer test-token"}) as c:
        fine = c.patch("/api/config/purge", json={"days": 60}, headers={"If-Match": "*"})
    assert fine.status_code == 200, fine.text


def test_an_edit_whose_apply_fails_puts_the_file_back(host: Host, cfg: Path) -> None:
    before = (cfg / "routes.toml").read_bytes()

    async def broken(old: object, new: object) -> tuple[str, ...]:
        raise RuntimeError("a component failed to take the change")
    host.live._swap = broken  # type: ignore[assignment]  # the far edge: a failing part
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"},
                    raise_server_exceptions=False) as api:
        answer = api.patch("/api/config/routes/keyword", json={"pattern": "x.*"},
                           headers={"If-Match": "*"})
    assert answer.status_code == 500
    assert (cfg / "routes.toml").read_bytes() == before
