"""/admin/history (issue 15 point 7): the configuration's changes, filtered and paged;
an entry's diff (secrets masked), notes, and a revert as a new change (refused when
the version no longer validates); supervisors read and note, only admins revert."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import trustme
from starlette.testclient import TestClient

from host.config.change import ConfigChange
from host.core import Host
from tests.admin.conftest import flash_of, post

HOME = "/admin/history"
SECRET = "pw-SECRET-4242"


def entries(api: TestClient, **params: Any) -> list[dict[str, Any]]:
    answer = api.get("/api/history", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["entries"]  # type: ignore[no-any-return]


def edit_file(api: TestClient, host: Host, path: Path, text: str, note: str = "") -> None:
    """Write ``path`` and apply it as a file change (as the watcher would)."""
    path.write_text(text, encoding="utf-8")
    assert api.portal is not None
    api.portal.call(host.live.apply, ConfigChange("file", note=note or None))


def purge_days(api: TestClient, days: int, note: str) -> dict[str, Any]:
    answer = api.patch("/api/config/purge", json={"days": days, "note": note},
                       headers={"If-Match": "*"})
    assert answer.status_code == 200, answer.text
    return entries(api)[0]


def shown(page: str) -> str:
    """A page's text without its tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_the_list_shows_every_change_with_its_filters_and_pages(
        admin: TestClient, api: TestClient) -> None:
    for days in range(10, 13):
        purge_days(api, days, f"purge {days}")
    page = admin.get(HOME)
    assert page.status_code == 200
    text = shown(page.text)
    for days in range(10, 13):
        assert f"purge {days}" in text
    assert "api.token" in text and "smshost.toml" in text and "purge" in text
    only_api = shown(admin.get(HOME, params={"source": "api"}).text)
    assert "purge 12" in only_api and "start" not in only_api.split("newest first")[1]
    future = admin.get(HOME, params={"since": "2999-01-01"}).text
    assert "No entries match these filters" in future
    bad = admin.get(HOME, params={"since": "yesterday", "source": "nope"})
    assert bad.status_code == 400
    assert 'id="f-since-error"' in bad.text and 'id="f-source-error"' in bad.text


def test_the_list_is_paged_newest_first(admin: TestClient, api: TestClient,
                                        monkeypatch: Any) -> None:
    import host.web.ui.admin.history as page_module
    monkeypatch.setattr(page_module, "PAGE", 2)
    for days in (20, 21, 22):
        purge_days(api, days, f"n{days}")
    first = admin.get(HOME).text
    assert "n22" in first and "n21" in first and "n20" not in first
    older = re.search(r'href="/admin/history\?([^"]+)">Older', first)
    assert older is not None
    second = shown(admin.get(HOME + "?" + html.unescape(older.group(1))).text)
    assert "n20" in second and "n22" not in second and "Newest" in second


def test_an_entry_shows_its_diff_line_by_line_with_secrets_masked(
        admin: TestClient, api: TestClient, host: Host, config_dir: Path) -> None:
    brokers = config_dir / "brokers.toml"
    edit_file(api, host, brokers, brokers.read_text() + f'password = "{SECRET}"\n')
    edit_file(api, host, brokers, brokers.read_text().replace(SECRET, SECRET + "x"),
              "rotated")
    for entry in entries(api)[:2]:
        page = admin.get(f"{HOME}/{entry['id']}")
        assert page.status_code == 200
        assert SECRET not in page.text
        assert re.search(r'<ins class="diff-line add">\+password = &#34;•+', page.text)
    latest = admin.get(f"{HOME}/{entries(api)[0]['id']}").text
    assert re.search(r'<del class="diff-line del">-password = &#34;•+', latest)
    assert '<span class="diff-line file">--- a/brokers.toml' in latest
    assert '<span class="diff-line hunk">@@' in latest
    assert admin.get(f"{HOME}/99999", follow_redirects=False).status_code == 303
    assert admin.get(f"{HOME}/{'9' * 5000}", follow_redirects=False).status_code == 303


def test_notes_general_and_about_an_entry(supervisor: TestClient, api: TestClient) -> None:
    changed = purge_days(api, 15, "")
    general = post(supervisor, HOME + "/notes", {"note": "moving to the new broker"})
    assert general.status_code == 303 and general.headers["location"] == HOME
    about = post(supervisor, HOME + "/notes", {"note": "because of the audit",
                                               "about": str(changed["id"])})
    assert about.headers["location"] == f"{HOME}/{changed['id']}"
    notes = entries(api, source="note")
    assert [(n["note"], n["about"], n["actor"]) for n in notes] == [
        ("because of the audit", changed["id"], "sue"),
        ("moving to the new broker", None, "sue")]
    page = supervisor.get(f"{HOME}/{changed['id']}")
    assert flash_of(page.text) == "Note added." and "because of the audit" in page.text
    empty = post(supervisor, HOME + "/notes", {"note": "  "})
    assert "No note added" in (flash_of(supervisor.get(HOME).text) or "")
    assert empty.status_code == 303
    ghost = post(supervisor, HOME + "/notes", {"note": "x", "about": "99999"}, page=HOME)
    assert ghost.status_code == 303 and len(entries(api, source="note")) == 2
    wrong = post(supervisor, HOME + "/notes", {"note": "x", "about": "abc"}, page=HOME)
    assert wrong.status_code == 303 and len(entries(api, source="note")) == 2
    assert "about must be" in (flash_of(supervisor.get(HOME).text) or "")


def test_a_revert_is_a_new_change_applied_to_the_running_node(
        admin: TestClient, api: TestClient, host: Host) -> None:
    before = purge_days(api, 40, "forty")
    purge_days(api, 50, "fifty")
    assert host.settings.purge.days == 50
    confirm = admin.get(f"{HOME}/{before['id']}/revert")
    assert confirm.status_code == 200 and "Revert to version" in confirm.text
    assert host.settings.purge.days == 50  # asking changed nothing
    done = post(admin, f"{HOME}/{before['id']}/revert", {"note": "back to forty"},
                page=f"{HOME}/{before['id']}/revert")
    assert done.status_code == 303, done.text
    latest = entries(api)[0]
    assert (latest["source"], latest["reverts"], latest["actor"], latest["note"]) == \
        ("revert", before["id"], "alice", "back to forty")
    assert done.headers["location"] == f"{HOME}/{latest['id']}"
    assert host.settings.purge.days == 40
    page = admin.get(done.headers["location"]).text
    assert "-days = 50" in html.unescape(page) and "+days = 40" in html.unescape(page)
    count = len(entries(api))
    again = post(admin, f"{HOME}/{before['id']}/revert", {},
                 page=f"{HOME}/{before['id']}/revert")
    assert again.status_code == 303  # the files are that version already: none
    assert len(entries(api)) == count
    assert "already" in (flash_of(admin.get(again.headers["location"]).text) or "")


def test_a_revert_with_a_stale_page_is_refused(admin: TestClient, api: TestClient,
                                               host: Host) -> None:
    before = purge_days(api, 40, "forty")
    purge_days(api, 50, "fifty")
    token_page = admin.get(f"{HOME}/{before['id']}/revert").text
    current = re.search(r'name="current" value="([0-9a-f]+)"', token_page)
    assert current is not None
    purge_days(api, 60, "sixty meanwhile")
    stale = post(admin, f"{HOME}/{before['id']}/revert",
                 {"note": "", "current": current.group(1)},
                 page=f"{HOME}/{before['id']}/revert")
    assert stale.status_code == 409 and "changed since you read" in stale.text
    assert host.settings.purge.days == 60


def test_a_revert_to_a_version_that_no_longer_validates_shows_the_problems(
        admin: TestClient, api: TestClient, host: Host, config_dir: Path,
        tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    main = config_dir / "smshost.toml"
    plain = main.read_text()
    edit_file(api, host, main, plain + f'\n[outbox]\nca_file = "{ca}"\n')
    old = entries(api)[0]
    edit_file(api, host, main, plain)
    ca.unlink()
    count = len(entries(api))
    refused = post(admin, f"{HOME}/{old['id']}/revert", {"note": "try"},
                   page=f"{HOME}/{old['id']}/revert")
    assert refused.status_code == 422
    text = shown(refused.text)
    assert "no longer validates" in text and "cannot load certificate authorities" in text
    assert re.search(r"smshost\.toml:\d+: ", text)
    assert main.read_text() == plain and len(entries(api)) == count
    note = post(admin, HOME + "/notes", {"note": "n"}, page=HOME)
    assert note.status_code == 303
    note_id = entries(api)[0]["id"]
    refused_note = admin.get(f"{HOME}/{note_id}/revert")
    assert refused_note.status_code == 422 and "is a note" in refused_note.text
    assert "Revert to version" not in refused_note.text.split("</h1>")[1]


def test_who_may_read_note_and_revert(supervisor: TestClient, agent: TestClient,
                                      anonymous: TestClient, api: TestClient,
                                      host: Host) -> None:
    first = purge_days(api, 33, "x")
    purge_days(api, 34, "y")
    assert supervisor.get(HOME).status_code == 200
    entry = supervisor.get(f"{HOME}/{first['id']}")
    assert entry.status_code == 200 and "Revert to this version" not in entry.text
    assert supervisor.get(f"{HOME}/{first['id']}/revert").status_code == 403
    forced = post(supervisor, f"{HOME}/{first['id']}/revert", {}, page=HOME)
    assert forced.status_code == 403 and host.settings.purge.days == 34
    for path in (HOME, f"{HOME}/{first['id']}"):
        assert agent.get(path).status_code == 403
        assert anonymous.get(path, follow_redirects=False).status_code == 303
    assert agent.post(HOME + "/notes", data={"note": "x"}).status_code == 403
    assert all(e["source"] != "note" for e in entries(api))
