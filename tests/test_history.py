"""The configuration history (issue 13 point 5, SPEC P3; host.history): versions recorded
from applied changes (host.live.apply on a real config directory and host), the CLI and
server start; secrets masked in the stored diff and every answer; notes; revert through
the API and the CLI; paging and filters. The config watcher is another part's: these
tests call host.live.apply as it does."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner
from starlette.testclient import TestClient

from host.cli import cli
from host.config import load_settings
from host.config.change import ConfigChange, read_files
from host.config.masking import CHANGED, HIDDEN, SecretKeys, diff, sections
from host.config.secrets import Secret
from host.core import Host
from host.history import FOUND_AT_START
from host.web.api import history as history_api
from tests.conftest import base_config, read_apart, write_lock

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def rows(host: Host, sql: str) -> list[tuple[Any, ...]]:
    """What ``host``'s database holds, read through a store of its own."""
    return read_apart(host, lambda db: [tuple(r) for r in db.execute(sql).fetchall()])


class Node:
    """A config directory and a running host serving its API (TestClient)."""

    def __init__(self, cfg: Path, db: Path) -> None:
        self.cfg = cfg
        self.db = db
        self.host = Host(load_settings(cfg), config_dir=cfg)
        self.client = TestClient(self.host.app_for(), headers=AUTH)

    def __enter__(self) -> Node:
        self.client.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.__exit__(*exc)

    def apply(self, change: ConfigChange) -> None:
        assert self.client.portal is not None
        self.client.portal.call(self.host.live.apply, change)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)

    def edit(self, name: str, text: str) -> None:
        (self.cfg / name).write_text(textwrap.dedent(text), encoding="utf-8")

    def entries(self, **params: Any) -> list[dict[str, Any]]:
        answer = self.client.get("/api/history", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()["entries"]  # type: ignore[no-any-return]


@pytest.fixture
def cfg(config_dir: Callable[..., Path]) -> Path:
    return config_dir()


@pytest.fixture
def node(cfg: Path, tmp_path: Path) -> Iterator[Node]:
    with Node(cfg, tmp_path / "data" / "smshost.db") as running:
        yield running


def run(cfg: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["history", *args, "--config", str(cfg)])
    return result


# -- recording ------------------------------------------------------------------------------

def test_the_first_start_records_the_files_and_a_later_one_what_changed_meanwhile(
        cfg: Path, tmp_path: Path) -> None:
    db = tmp_path / "data" / "smshost.db"
    with Node(cfg, db) as first:
        (start,) = first.entries()
    assert start["source"] == "start" and start["files"] == ["routes.toml", "smshost.toml"]
    assert start["actor"] is None and start["version"] and start["reverts"] is None
    with Node(cfg, db) as same:
        assert [e["id"] for e in same.entries()] == [start["id"]]
    (cfg / "routes.toml").write_text("[routing]\nenabled = false\nworkers = 3\n")
    with Node(cfg, db) as later:
        edited, _ = later.entries()
        shown = later.client.get(f"/api/history/{edited['id']}").json()
    assert edited["source"] == "file" and edited["note"] == FOUND_AT_START
    assert edited["files"] == ["routes.toml"] and edited["sections"] == ["routing"]
    assert "+workers = 3" in shown["diff"] and "--- a/routes.toml" in shown["diff"]


def test_an_applied_file_change_is_recorded_once_with_its_diff(node: Node) -> None:
    node.edit("smshost.toml", base_config(node.cfg.parent) + '\n[attrs]\nteam = "blue"\n')
    node.apply(ConfigChange("file"))
    node.apply(ConfigChange("file"))  # the same files again: nothing new
    changed, start = node.entries()
    assert (changed["source"], changed["files"], changed["sections"]) == \
        ("file", ["smshost.toml"], ["attrs"])
    entry = node.client.get(f"/api/history/{changed['id']}").json()
    assert '+team = "blue"' in entry["diff"] and entry["digest"] == changed["digest"]
    assert "files" in entry and "routes.toml" not in entry["diff"]


def test_an_api_change_keeps_its_actor_and_note(node: Node) -> None:
    node.edit("routes.toml", "[routing]\nenabled = false\nworkers = 2\n")
    node.apply(ConfigChange("api", "alice", "two workers for the sale"))
    latest = node.entries()[0]
    assert (latest["source"], latest["actor"], latest["note"]) == \
        ("api", "alice", "two workers for the sale")


def test_a_cli_edit_then_applied_by_the_watcher_is_one_entry(node: Node) -> None:
    files = {**node.host.live.files, "routes.toml": "[routing]\nenabled = false\nworkers = 5\n"}
    recorded = node.call(node.host.history.record, files, ConfigChange("cli", "bob"))
    assert recorded["source"] == "cli"
    node.edit("routes.toml", files["routes.toml"])
    node.apply(ConfigChange("file"))
    latest, start = node.entries()
    assert latest["id"] == recorded["id"] and latest["actor"] == "bob"
    assert start["source"] == "start"


def test_a_refused_change_records_nothing(node: Node) -> None:
    node.edit("routes.toml", "[routing]\nenabled = 'maybe'\n")
    with pytest.raises(Exception, match="routing.enabled"):
        node.apply(ConfigChange("file"))
    assert [e["source"] for e in node.entries()] == ["start"]


# -- masking ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Signing:
    """A sink's settings class with a Secret field whose name says nothing."""

    key_one: Secret
    label: str = ""


# (file, text before, text after, the secrets that must not show)
SECRETS = [
    ("smshost.toml", '[api]\ntoken = "api-OLD-1111"\n', '[api]\ntoken = "api-NEW-2222"\n',
     ["api-OLD-1111", "api-NEW-2222"]),
    ("smshost.toml", "[api]\ntoken = '''multi-OLD\nline'''\n",
     '[api]\ntoken = """multi-NEW\nline"""\n', ["multi-OLD", "multi-NEW"]),
    ("brokers.toml", '[[brokers]]\nname = "b"\ndefinition = "x"\n[[brokers.accounts]]\n'
     'id = "a"\npassword = "acct-OLD-3333"\n', '[[brokers]]\nname = "b"\ndefinition = "x"\n'
     '[[brokers.accounts]]\nid = "a"\npassword = "acct-NEW-4444"\n',
     ["acct-OLD-3333", "acct-NEW-4444"]),
    ("brokers.toml", '[[brokers]]\nname = "b"\ndefinition = "x"\nproxy = { address = '
     '"p:1", password = "proxy-OLD-5555" }\n', '[[brokers]]\nname = "b"\ndefinition = "x"\n'
     'proxy = { address = "p:1", password = "proxy-NEW-6666" }\n',
     ["proxy-OLD-5555", "proxy-NEW-6666"]),
    ("brokers.toml", '[[brokers]]\nname = "b"\ndefinition = "generic"\n[brokers.options]\n'
     'SigningSecret = "opt-OLD-7777"\n', '[[brokers]]\nname = "b"\ndefinition = "generic"\n'
     '[brokers.options]\nSigningSecret = "opt-NEW-8888"\n', ["opt-OLD-7777", "opt-NEW-8888"]),
    ("brokers.toml", '[[brokers]]\nname = "b"\ndefinition = "unknown"\noptions = { Sid = '
     '"unk-OLD-9999" }\n', '[[brokers]]\nname = "b"\ndefinition = "unknown"\noptions = '
     '{ Sid = "unk-NEW-0000" }\n', ["unk-OLD-9999", "unk-NEW-0000"]),
    ("sinks.toml", "[webhook.targets.crm]\nurl = 'https://h/'\nsecret = 'sig-OLD-1212'\n",
     "[webhook.targets.crm]\nurl = 'https://h/'\nsecret = 'sig-NEW-3434'\n",
     ["sig-OLD-1212", "sig-NEW-3434"]),
    ("sinks.toml", '[email]\nlogin = "me"\npassword = "smtp-OLD-5656"\n',
     '[email]\nlogin = "me"\npassword = "smtp-NEW-7878"\n', ["smtp-OLD-5656", "smtp-NEW-7878"]),
    ("sinks.toml", '[webhook.targets.crm]\nheaders = { Authorization = "Bearer hdr-OLD-9090" }'
     '\n', '[webhook.targets.crm]\nheaders = { Authorization = "Bearer hdr-NEW-1313" }\n',
     ["hdr-OLD-9090", "hdr-NEW-1313"]),
    ("sinks.toml", '[webhook.targets.crm]\nurl = "https://u:url-OLD-2424@h/"\n',
     '[webhook.targets.crm]\nurl = "https://u:url-NEW-3535@h/"\n',
     ["url-OLD-2424", "url-NEW-3535"]),
    # an @ in the password: the user part ends at the last @ of the authority (urlsplit)
    ("sinks.toml", '[webhook.targets.crm]\nurl = "https://u:p@ss-OLD-2525@h/x"\n',
     '[webhook.targets.crm]\nurl = "https://u:p@ss-NEW-3636@h/x"\n',
     ["ss-OLD-2525", "ss-NEW-3636"]),
    ("sinks.toml", '[signer]\nkey_one = "decl-OLD-4646"\n',
     '[signer]\nkey_one = "decl-NEW-5757"\n', ["decl-OLD-4646", "decl-NEW-5757"]),
    ("smshost.toml", '[api]\ntoken = "cmt-OLD-6868"\n',
     '[api]\ntoken = "cmt-NEW-7979"  # was cmt-OLD-6868\n', ["cmt-OLD-6868", "cmt-NEW-7979"]),
]
KEYS = SecretKeys({"signer": Signing}, {"generic": {"ExternalDeliveryStatusURI"}})


@pytest.mark.parametrize(("name", "before", "after", "secrets"), SECRETS,
                         ids=[s[3][0].rsplit("-", 2)[0] for s in SECRETS])
def test_a_changed_secret_shows_as_changed_without_its_value(
        name: str, before: str, after: str, secrets: list[str]) -> None:
    shown = diff({name: before}, {name: after}, KEYS)
    for secret in secrets:
        assert secret not in shown, shown
    assert HIDDEN in shown and CHANGED in shown, shown
    added = diff({}, {name: after}, KEYS)
    assert secrets[1] not in added and HIDDEN in added and CHANGED not in added


def test_references_and_declared_public_values_stay_visible() -> None:
    before = ('[[brokers]]\nname = "t"\ndefinition = "generic"\n[brokers.options]\n'
              'ExternalDeliveryStatusURI = "https://me/dlr"\nSigningSecret = { env = "SIG" }\n')
    after = before.replace('"t"', '"t2"').replace('"SIG"', '"SIG2"')
    shown = diff({"brokers.toml": before}, {"brokers.toml": after}, KEYS)
    assert 'ExternalDeliveryStatusURI = "https://me/dlr"' in shown
    assert '+SigningSecret = { env = "SIG2" }' in shown and HIDDEN not in shown
    unknown = diff({}, {"brokers.toml": before.replace("generic", "other")}, KEYS)
    assert "https://me/dlr" not in unknown  # an unknown definition: every option masked


def test_an_unchanged_secret_is_masked_in_the_context_lines() -> None:
    before = '[api]\ntoken = "ctx-SECRET-8080"\n\n[store]\nfilename = "a.db"\n'
    shown = diff({"smshost.toml": before},
                 {"smshost.toml": before.replace("a.db", "b.db")}, KEYS)
    assert "ctx-SECRET-8080" not in shown and f"token = {HIDDEN!r}".replace("'", '"') in shown
    assert CHANGED not in shown


def test_a_secret_written_as_a_number_is_masked_too() -> None:
    # Not a valid secret (the broker does not start), but written by hand and applied
    # (the other brokers run): the history must not show it.
    accounts = '[[brokers]]\nname = "b"\ndefinition = "x"\n[[brokers.accounts]]\nid = "a"\n'
    shown = diff({"brokers.toml": accounts + "password = 48151623\n"},
                 {"brokers.toml": accounts + "password = 42424242\nlogin = 9999.5\n"}, KEYS)
    assert "48151623" not in shown and "42424242" not in shown and HIDDEN in shown
    assert "9999.5" in shown


def test_sections_name_the_top_level_tables_that_changed() -> None:
    assert sections({"routes.toml": "[routing]\nworkers = 1\n[optout]\n"},
                    {"routes.toml": "[routing]\nworkers = 2\n[optout]\n",
                     "sinks.toml": "[webhook]\n"}) == ["routing", "sinks.webhook"]


SECRET_CONFIG = """
    [[brokers]]
    name = "b"
    definition = "generic"
    options = { SigningSecret = "live-OPT-1234" }

    [[brokers.accounts]]
    id = "a"
    password = "live-PW-5678"
    """


def test_secrets_appear_in_no_stored_diff_and_no_answer(
        config_dir: Callable[..., Path], tmp_path: Path) -> None:
    cfg = config_dir(brokers=SECRET_CONFIG,
                     sinks='[webhook.targets.t]\nurl = "https://x/"\nsecret = "live-SIG-9012"\n')
    secrets = ["live-OPT-1234", "live-PW-5678", "live-SIG-9012", "live-NEW-3456", TOKEN]
    with Node(cfg, tmp_path / "data" / "smshost.db") as node:
        text = (cfg / "brokers.toml").read_text().replace("live-PW-5678", "live-NEW-3456")
        node.edit("brokers.toml", text)
        node.apply(ConfigChange("api", "alice", "new password"))
        changed, start = node.entries()
        answers = [node.client.get("/api/history").text,
                   node.client.get(f"/api/history/{changed['id']}").text,
                   node.client.get(f"/api/history/{start['id']}").text,
                   node.client.post(f"/api/history/{start['id']}/revert", json={}).text,
                   node.client.post("/api/history/notes", json={"note": "n"}).text]
        assert 'password = \\"\\u2022' in answers[1] or "••••••" in answers[1]
    cli_out = [run(cfg, "--show", str(changed["id"])).output, run(cfg).output,
               run(cfg, "--show", str(start["id"]), "--json").output,
               run(cfg, "--json").output]
    assert f"{HIDDEN}\"{CHANGED}" in cli_out[0]
    stored = rows(node.host, "select diff, files from config_history")
    for secret in secrets:
        for diff_text, _ in stored:
            assert secret not in diff_text
        for text in answers + cli_out:
            assert secret not in text, text
    # The files themselves are kept whole, to revert to (docs/administration.md).
    assert any("live-PW-5678" in files for _, files in stored if files)


# -- notes ------------------------------------------------------------------------------

def test_notes_from_the_api_and_the_cli(node: Node) -> None:
    (start,) = node.entries()
    made = node.client.post("/api/history/notes", json={
        "note": "switched to the backup broker after an outage", "about": start["id"]})
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["source"], body["about"], body["actor"], body["version"]) == \
        ("note", start["id"], "api.token", False)
    for bad, status in (({}, 400), ({"note": ""}, 400), ({"note": 3}, 400),
                        ({"note": "x", "about": 10**6}, 404), ({"note": "x", "about": "1"}, 400),
                        ({"note": "x", "colour": 1}, 400), ({"note": "a\x01b"}, 400),
                        ({"note": "x" * 2001}, 400)):
        answer = node.client.post("/api/history/notes", json=bad)
        assert answer.status_code == status, (bad, answer.text)
    added = run(node.cfg, "note", "from the shell", "--about", str(start["id"]))
    assert added.exit_code == 0, added.output
    assert "note  " in added.output and "note: from the shell" in added.output
    assert run(node.cfg, "note", "x", "--about", "999").exit_code == 1
    listed = node.entries(source="note")
    assert [e["note"] for e in listed] == ["from the shell",
                                           "switched to the backup broker after an outage"]


# -- revert -------------------------------------------------------------------------------

def test_a_revert_through_the_api_restores_the_files_byte_for_byte(node: Node) -> None:
    original = {p.name: p.read_bytes() for p in node.cfg.glob("*.toml")}
    (start,) = node.entries()
    node.edit("routes.toml", "[routing]\nenabled = false\nworkers = 7\n")
    node.edit("brokers.toml", "# no broker yet\n")
    node.apply(ConfigChange("file"))
    current = node.client.get("/api/history").json()["current"]
    stale = node.client.post(f"/api/history/{start['id']}/revert", json={},
                             headers={"If-Match": '"0000"'})
    assert stale.status_code == 409 and (node.cfg / "brokers.toml").exists()
    answer = node.client.post(f"/api/history/{start['id']}/revert",
                              json={"note": "undo the sale"}, headers={"If-Match": current})
    assert answer.status_code == 201, answer.text
    entry = answer.json()
    assert (entry["source"], entry["reverts"], entry["actor"], entry["note"]) == \
        ("revert", start["id"], "api.token", "undo the sale")
    assert entry["files"] == ["brokers.toml", "routes.toml"] and "-workers = 7" in entry["diff"]
    assert {p.name: p.read_bytes() for p in node.cfg.glob("*.toml")} == original
    assert node.host.live.files == read_files(node.cfg)
    assert [e["source"] for e in node.entries()] == ["revert", "file", "start"]
    again = node.client.post(f"/api/history/{start['id']}/revert", json={})
    assert again.status_code == 200 and again.json()["unchanged"] is True
    assert len(node.entries()) == 3


def test_a_revert_of_a_version_that_no_longer_validates_writes_nothing(
        config_dir: Callable[..., Path], tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    cfg = config_dir(smshost=base_config(tmp_path, extra=f'\n[outbox]\nca_file = "{ca}"\n'))
    with Node(cfg, tmp_path / "data" / "smshost.db") as node:
        (old,) = node.entries()
        node.edit("smshost.toml", base_config(tmp_path))
        node.apply(ConfigChange("file"))
        ca.unlink()
        before = {p.name: p.read_bytes() for p in cfg.glob("*.toml")}
        refused = node.client.post(f"/api/history/{old['id']}/revert", json={})
        assert refused.status_code == 422, refused.text
        (error,) = refused.json()["errors"]
        assert error.startswith(f"{cfg / 'smshost.toml'}:") and "outbox.ca_file" in error
        assert {p.name: p.read_bytes() for p in cfg.glob("*.toml")} == before
        assert len(node.entries()) == 2
        assert node.client.post("/api/history/999/revert", json={}).status_code == 404
        note = node.client.post("/api/history/notes", json={"note": "n"}).json()
        assert node.client.post(f"/api/history/{note['id']}/revert").status_code == 422
    by_cli = run(cfg, "revert", str(old["id"]))
    assert by_cli.exit_code == 1 and "outbox.ca_file" in by_cli.output
    assert {p.name: p.read_bytes() for p in cfg.glob("*.toml")} == before


def test_a_cli_revert_records_first_and_the_watcher_adds_nothing(node: Node) -> None:
    original = (node.cfg / "routes.toml").read_bytes()
    (start,) = node.entries()
    node.edit("routes.toml", "[routing]\nenabled = false\nworkers = 9\n")
    node.apply(ConfigChange("file"))
    done = run(node.cfg, "revert", str(start["id"]), "--note", "back to the start")
    assert done.exit_code == 0, done.output
    assert f"reverts to {start['id']}" in done.output and "note: back to the start" in done.output
    assert (node.cfg / "routes.toml").read_bytes() == original
    node.apply(ConfigChange("file"))  # the server's watcher sees the written files
    latest = node.entries()[0]
    assert (latest["source"], latest["reverts"]) == ("revert", start["id"])
    assert latest["actor"] and len(node.entries()) == 3
    same = run(node.cfg, "revert", str(start["id"]))
    assert same.exit_code == 0 and "already" in same.output


# -- reading ------------------------------------------------------------------------------

def test_paging_newest_first_and_filters(node: Node) -> None:
    for i in range(5):
        assert node.client.post("/api/history/notes", json={"note": f"n{i}"}).status_code == 201
    seen: list[int] = []
    url: str | None = "/api/history?limit=2"
    while url:
        page = node.client.get(url).json()
        assert len(page["entries"]) <= 2
        seen += [e["id"] for e in page["entries"]]
        url = page["next"]
    assert seen == sorted(seen, reverse=True) and len(seen) == 6
    assert node.entries(source="start")[0]["source"] == "start"
    assert node.entries(since="2999-01-01") == []
    assert len(node.entries(until="2999-01-01T00:00:00Z")) == 6
    for bad in ({"source": "bogus"}, {"since": "yesterday"}, {"limit": 0}, {"colour": 1}):
        assert node.client.get("/api/history", params=bad).status_code == 400, bad
    assert node.client.get("/api/history/12345").status_code == 404
    assert node.client.get("/api/history/abc").status_code == 404
    recent = run(node.cfg, "--since", "1h")
    assert recent.exit_code == 0 and recent.stdout.count("\n") == 6
    assert run(node.cfg, "--since", "2999-01-01").stdout == ""
    assert run(node.cfg, "--since", "whenever").exit_code == 2
    assert json.loads(run(node.cfg, "--json", "--limit", "1").stdout)["entries"][0]["id"] \
        == seen[0]


def test_routes_declare_who_may_use_them(host: Host) -> None:
    declared = {(r.path, m): r.auth for r in history_api.routes()
                for m in getattr(r.route, "methods", None) or ()
                if m != "HEAD"}
    assert declared == {("/api/history", "GET"): "supervise",
                        ("/api/history/{entry_id}", "GET"): "supervise",
                        ("/api/history/notes", "POST"): "supervise",
                        ("/api/history/{entry_id}/revert", "POST"): "admin"}
    with TestClient(host.app_for()) as anonymous:
        assert anonymous.get("/api/history").status_code == 401
        assert anonymous.post("/api/history/notes", json={"note": "x"}).status_code == 401


def test_the_purge_leaves_the_history(node: Node) -> None:
    node.client.post("/api/history/notes", json={"note": "old"})
    node.call(node.host.store.write, lambda db: db.execute(
        "update config_history set at = '2001-01-01T00:00:00.000000Z'"))
    node.call(node.host.purger.run, 2)
    assert rows(node.host, "select count(*) from config_history") == [(2,)]



def test_a_database_refusing_the_start_entry_does_not_stop_the_start(
        config_dir: Callable[..., Path], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_dir(smshost=base_config(tmp_path, extra="\n[store]\nbusy_timeout_ms = 50\n"))
    db = tmp_path / "data" / "smshost.db"
    with Node(cfg, db) as node:
        node.host.live.files = {**node.host.live.files, "routes.toml": "# edited\n"}
        with write_lock(node.host.store):  # another process holds the database
            assert node.call(node.host.history.start) is None
    assert "could not record this start" in caplog.text
    assert rows(node.host, "select source from config_history") == [("start",)]
