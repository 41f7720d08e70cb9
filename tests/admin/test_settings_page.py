"""/admin/settings (issue 15 point 6) through the real app: purge, SMS attributes, chat
idle settings, opt-out keywords and numbers, queue notices' page; each edit written to
the configuration files and recorded in the history as source ``admin``."""

from __future__ import annotations

import html
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from starlette.testclient import TestClient

from host.core import Host
from host.models import utcnow
from tests.admin.conftest import csrf_of, field_error, flash_of, post


def config(config_dir: Path, name: str) -> dict[str, Any]:
    return tomllib.loads((config_dir / name).read_text())


def history(api: TestClient) -> list[dict[str, Any]]:
    answer = api.get("/api/history")
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


def etag_of(page: str) -> str:
    found = re.search(r'name="etag" value="([^"]+)"', page)
    assert found is not None
    return html.unescape(found.group(1))


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


# -- purge -----------------------------------------------------------------------------

def test_purge_edit_writes_the_file_and_the_history(admin: TestClient, api: TestClient,
                                                    config_dir: Path) -> None:
    page = admin.get("/admin/settings/purge").text
    assert "none: the scheduled purge is off" in page  # the test config turns it off
    answer = post(admin, "/admin/settings/purge", {
        "enabled": "on", "days": "45", "at": "04:30", "note": "keep six weeks",
        "etag": etag_of(page)})
    assert answer.status_code == 303, answer.text
    shown = admin.get(answer.headers["location"]).text
    assert flash_of(shown) == "Purge settings saved."
    assert 'value="45"' in shown and "04:30 (server time)" in shown
    assert config(config_dir, "smshost.toml")["purge"] == {
        "enabled": True, "days": 45, "at": "04:30"}
    entry = history(api)[0]
    assert (entry["source"], entry["actor"], entry["note"]) == ("admin", "alice",
                                                                "keep six weeks")


def test_purge_days_1_is_refused_beside_the_field(admin: TestClient,
                                                  config_dir: Path) -> None:
    before = (config_dir / "smshost.toml").read_text()
    answer = post(admin, "/admin/settings/purge", {"enabled": "on", "days": "1",
                                                   "at": "03:00"})
    assert answer.status_code == 422
    assert "greater than 1" in (field_error(answer.text, "days") or "")
    assert 'id="f-days" name="days" type="number" value="1"' in answer.text  # as typed
    assert (config_dir / "smshost.toml").read_text() == before
    bad = post(admin, "/admin/settings/purge", {"days": "ten", "at": "03:00"})
    assert bad.status_code == 400
    assert "whole number" in (field_error(bad.text, "days") or "")
    late = post(admin, "/admin/settings/purge", {"days": "10", "at": "25:00"})
    assert late.status_code == 422 and field_error(late.text, "at")
    assert (config_dir / "smshost.toml").read_text() == before


def test_a_ticked_box_stays_ticked_when_the_form_comes_back(admin: TestClient,
                                                           config_dir: Path) -> None:
    """A browser posts a checkbox as the hidden ``off`` and then ``on`` (macros.html):
    it is on, and shown ticked again beside an error."""
    answer = post(admin, "/admin/settings/purge", [
        ("enabled", "off"), ("enabled", "on"), ("days", "1"), ("at", "03:00")])
    assert answer.status_code == 422
    assert re.search(r'id="f-enabled" name="enabled" type="checkbox" value="on" checked',
                     answer.text)
    saved = post(admin, "/admin/settings/purge", [
        ("enabled", "off"), ("enabled", "on"), ("days", "9"), ("at", "03:00")])
    assert saved.status_code == 303
    assert config(config_dir, "smshost.toml")["purge"]["enabled"] is True
    off = post(admin, "/admin/settings/purge", [("enabled", "off"), ("days", "9"),
                                                ("at", "03:00")])
    assert off.status_code == 303
    assert config(config_dir, "smshost.toml")["purge"]["enabled"] is False


def test_purge_edit_of_a_stale_page_is_409(admin: TestClient, api: TestClient,
                                           config_dir: Path) -> None:
    page = admin.get("/admin/settings/purge").text
    etag = etag_of(page)
    changed = api.patch("/api/config/purge", json={"days": 20}, headers={"If-Match": "*"})
    assert changed.status_code == 200, changed.text
    token = csrf_of(page)
    answer = admin.post("/admin/settings/purge", data={
        "days": "60", "at": "03:00", "etag": etag, "csrf_token": token},
        follow_redirects=False)
    assert answer.status_code == 409
    assert "changed by someone else" in answer.text
    assert config(config_dir, "smshost.toml")["purge"]["days"] == 20


def _aged(host: Host, app: TestClient, ids: list[int], days: float, status: str) -> None:
    old = (utcnow_dt() - timedelta(days=days)).isoformat().replace("+00:00", "Z")

    def change(db: Database) -> None:
        marks = ", ".join("?" for _ in ids)
        db.execute(f"update messages set status = ?, created_at = ?, updated_at = ? "
                   f"where id in ({marks})", [status, old, old, *ids])
    app.portal.call(host.store.write, change)  # type: ignore[union-attr]


def utcnow_dt() -> Any:
    from datetime import datetime
    return datetime.fromisoformat(utcnow().replace("Z", "+00:00"))


def test_the_dry_run_counts_what_the_purge_would_delete(admin: TestClient, api: TestClient,
                                                        host: Host) -> None:
    ids = []
    for i in range(6):
        sent = api.post("/api/simulator/mo", json={"from": f"+1555000{i:04d}", "text": "hi"})
        assert sent.status_code == 201, sent.text
        ids.append(sent.json()["id"])
    _aged(host, api, ids[:3], 40, "routed")       # old and done: purged
    _aged(host, api, ids[3:4], 40, "received")    # old but not routed yet: kept
    _aged(host, api, ids[4:5], 10, "routed")      # younger than 30 days: kept
    page = admin.get("/admin/settings/purge?count=1").text
    assert "3 messages would be deleted now" in text_of(page)
    assert api.get("/api/messages").json()["messages"].__len__() == 6  # nothing deleted
    assert post(admin, "/admin/settings/purge", {"days": "5", "at": "03:00"}
                ).status_code == 303
    page = admin.get("/admin/settings/purge?count=1").text
    assert "4 messages would be deleted now" in text_of(page)
    assert "would be deleted" not in admin.get("/admin/settings/purge").text


# -- SMS attributes --------------------------------------------------------------------

def test_attrs_add_edit_remove(admin: TestClient, api: TestClient,
                               config_dir: Path) -> None:
    added = post(admin, "/admin/settings/attrs", {"name": "region", "value": "north",
                                                  "note": "for the templates"},
                 page="/admin/settings")
    assert added.status_code == 303, added.text
    page = admin.get("/admin/settings").text
    assert flash_of(page) == "Attribute region saved."
    assert "<td>region</td><td>north</td>" in page
    assert api.get("/api/config/attrs").json()["attrs"] == {"region": "north"}
    editing = admin.get("/admin/settings?attr=region").text
    assert 'value="north"' in editing and "Change region" in editing
    assert post(admin, "/admin/settings/attrs", {"name": "region", "value": "south"},
                page="/admin/settings").status_code == 303
    assert config(config_dir, "smshost.toml")["attrs"] == {"region": "south"}
    confirm = admin.get("/admin/settings/attrs/remove?name=region")
    assert "Remove the SMS attribute region?" in confirm.text
    assert config(config_dir, "smshost.toml")["attrs"] == {"region": "south"}  # not yet
    removed = post(admin, "/admin/settings/attrs/remove", {"name": "region"},
                   page="/admin/settings/attrs/remove?name=region")
    assert removed.status_code == 303
    assert "attrs" not in config(config_dir, "smshost.toml")
    assert [e["source"] for e in history(api)[:3]] == ["admin"] * 3
    missing = admin.get("/admin/settings/attrs/remove?name=region")
    assert flash_of(missing.text) == "No attribute 'region' is set."


def test_attrs_refusals_beside_the_fields(admin: TestClient, config_dir: Path) -> None:
    before = (config_dir / "smshost.toml").read_text()
    empty = post(admin, "/admin/settings/attrs", {"name": "", "value": "x"},
                 page="/admin/settings")
    assert empty.status_code == 400 and field_error(empty.text, "name")
    # The chat sink reads PartyIdleTime from [attrs]: a bad value is refused by it.
    bad = post(admin, "/admin/settings/attrs", {"name": "PartyIdleTime", "value": "soon"},
               page="/admin/settings")
    assert bad.status_code == 422, bad.text[-2000:]
    assert "whole number of seconds" in (field_error(bad.text, "value") or "")
    assert 'value="soon"' in bad.text
    assert (config_dir / "smshost.toml").read_text() == before


# -- chat idle ---------------------------------------------------------------------------

def test_chat_idle_edit(admin: TestClient, api: TestClient, config_dir: Path) -> None:
    answer = post(admin, "/admin/settings/chat", {
        "enable_idle_timeout": "on", "party_idle_time": "600",
        "party_idle_grace_time": "120"}, page="/admin/settings")
    assert answer.status_code == 303, answer.text
    assert config(config_dir, "sinks.toml")["chat"] == {
        "enable_idle_timeout": True, "party_idle_time": 600, "party_idle_grace_time": 120}
    page = admin.get("/admin/settings").text
    assert flash_of(page) == "Chat idle settings saved."
    assert 'value="600"' in page and history(api)[0]["source"] == "admin"
    short = post(admin, "/admin/settings/chat", {"party_idle_time": "5",
                                                 "party_idle_grace_time": "0"},
                 page="/admin/settings")
    assert short.status_code == 422
    assert "between 10 and" in (field_error(short.text, "party_idle_time") or "")
    words = post(admin, "/admin/settings/chat", {"party_idle_time": "soon",
                                                 "party_idle_grace_time": "0"},
                 page="/admin/settings")
    assert words.status_code == 400 and field_error(words.text, "party_idle_time")
    assert config(config_dir, "sinks.toml")["chat"]["party_idle_time"] == 600


def test_idle_attributes_are_named_as_winning(admin: TestClient) -> None:
    post(admin, "/admin/settings/attrs", {"name": "PartyIdleTime", "value": "900"},
         page="/admin/settings")
    assert "PartyIdleTime = 900 win over these values" in text_of(
        admin.get("/admin/settings").text)


# -- opt-out -----------------------------------------------------------------------------

def _opted_out(host: Host, app: TestClient, pairs: list[tuple[str, str]]) -> None:
    def write(db: Database) -> None:
        for i, (local, remote) in enumerate(pairs):
            db.execute("insert into optouts values (?, ?, ?, ?)",
                       [local, remote, f"2026-01-01T00:00:{i:02d}Z", "simulator"])
    app.portal.call(host.store.write, write)  # type: ignore[union-attr]


def test_optout_numbers_search_page_and_remove(admin: TestClient, api: TestClient,
                                               host: Host) -> None:
    pairs = [("+15550100", f"+1666000{i:04d}") for i in range(55)] + [
        ("+15550199", "+17770001111")]
    _opted_out(host, api, pairs)
    first = admin.get("/admin/settings/optout").text
    assert first.count("Remove…") == 50 and "+17770001111" in first  # newest first
    assert 'href="/admin/settings/optout?offset=50" rel="next">Older' in first
    second = admin.get("/admin/settings/optout?offset=50").text
    assert second.count("Remove…") == 6 and "Older" not in second
    found = admin.get("/admin/settings/optout?q=0199").text
    assert found.count("Remove…") == 1 and "+17770001111" in found
    # +16660000050 to +16660000054 (not +16660000005)
    assert admin.get("/admin/settings/optout?q=%2B1666000005").text.count("Remove…") == 5
    assert "No opted-out number matches" in admin.get("/admin/settings/optout?q=999").text
    confirm = admin.get("/admin/settings/optout/remove?local=%2B15550199"
                        "&remote=%2B17770001111").text
    assert "Remove the opt-out of +17770001111 from +15550199?" in html.unescape(confirm)
    listed = api.get("/api/optouts", params={"local": "+15550199"}).json()["optouts"]
    assert len(listed) == 1  # asking removes nothing
    removed = post(admin, "/admin/settings/optout/remove",
                   {"local": "+15550199", "remote": "+17770001111"},
                   page="/admin/settings/optout")
    assert removed.status_code == 303
    assert flash_of(admin.get("/admin/settings/optout").text) == \
        "+17770001111 may receive messages from +15550199 again."
    assert api.get("/api/optouts", params={"local": "+15550199"}).json()["optouts"] == []
    again = post(admin, "/admin/settings/optout/remove",
                 {"local": "+15550199", "remote": "+17770001111"},
                 page="/admin/settings/optout")
    assert flash_of(admin.get(again.headers["location"]).text) == \
        "+17770001111 was not opted out of +15550199."


def test_optout_keywords_edit(admin: TestClient, api: TestClient, config_dir: Path) -> None:
    page = admin.get("/admin/settings/optout").text
    assert "STOPALL" in page and "Reply STOP to unsubscribe." in page
    answer = post(admin, "/admin/settings/optout", {
        "enabled": "on", "stop_words": "STOP\nARRET", "start_words": "START, UNSTOP",
        "help_words": "HELP", "stop_reply": "Bye.", "start_reply": "Welcome back.",
        "help_reply": "Text STOP to stop, or call 555-0100.", "note": "French stop"},
        page="/admin/settings/optout")
    assert answer.status_code == 303, answer.text
    written = config(config_dir, "routes.toml")["optout"]
    assert written["stop_words"] == ["STOP", "ARRET"]
    assert written["start_words"] == ["START", "UNSTOP"]
    assert written["help_reply"] == "Text STOP to stop, or call 555-0100."
    entry = history(api)[0]
    assert (entry["source"], entry["note"]) == ("admin", "French stop")
    stale = admin.get("/admin/settings/optout").text
    (config_dir / "routes.toml").write_text((config_dir / "routes.toml").read_text() + "\n")
    refused = admin.post("/admin/settings/optout", data={
        "enabled": "on", "stop_words": "STOP", "etag": etag_of(stale),
        "csrf_token": csrf_of(stale)}, follow_redirects=False)
    assert refused.status_code == 409
    assert config(config_dir, "routes.toml")["optout"]["stop_words"] == ["STOP", "ARRET"]


# -- notices and permissions -------------------------------------------------------------

def test_the_notices_page_loads_its_script(admin: TestClient) -> None:
    page = admin.get("/admin/settings/notices").text
    assert "notices.js" in page and "page.js" in page
    assert 'data-csrf="' in page and "<noscript>" in page


def test_permissions(supervisor: TestClient, agent: TestClient,
                     anonymous: TestClient) -> None:
    for path in ("/admin/settings", "/admin/settings/purge", "/admin/settings/optout",
                 "/admin/settings/notices"):
        assert supervisor.get(path).status_code == 403, path
        assert agent.get(path).status_code == 403, path
        assert anonymous.get(path, follow_redirects=False).status_code == 303, path
    token = csrf_of(supervisor.get("/admin").text)
    for path, data in (("/admin/settings/purge", {"days": "40", "at": "03:00"}),
                       ("/admin/settings/optout/remove", {"local": "a", "remote": "b"}),
                       ("/admin/settings/attrs", {"name": "a", "value": "b"})):
        refused = supervisor.post(path, data={**data, "csrf_token": token},
                                  follow_redirects=False)
        assert refused.status_code == 403, path
