"""/admin/routes (issue 15 point 3, SPEC R1-R5): the inbound routes through the real
app and its configuration files: list, add (the first route brings the default route),
edit, move, delete with its confirmation, the default route's rules, errors beside
their fields with nothing written, shadow warnings, the route tester, the history."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from host.web.ui.admin.frame import parse_form
from tests.admin.conftest import csrf_of, field_error, flash_of, post

ROUTES = """\
[[inbound]]
name = "vip"
type = "ani"
pattern = "\\\\+1555.*"
destination = "chat"

[[inbound]]
name = "sales"
pattern = "(?i)sales.*"
destination = "chat"

[[inbound]]
name = "default"
default = true
destination = "chat"
"""


@pytest.fixture
def routed(config_dir: Path) -> Path:
    """Three inbound routes (vip, sales, the default) before the node starts."""
    (config_dir / "routes.toml").write_text(ROUTES)
    return config_dir


def names(page: str) -> list[str]:
    """The route names of the list, in order."""
    rows = re.findall(r'<tr id="route-\d+"[^>]*>\s*<td>\d+</td>\s*<td>([^<]*)<', page)
    return [html.unescape(name.strip()) for name in rows]


def etag_of(page: str) -> str:
    found = re.search(r'name="etag" value="([^"]+)"', page)
    assert found is not None, page
    return html.unescape(found.group(1))


def history(api: TestClient) -> list[dict[str, object]]:
    found = api.get("/api/history")
    assert found.status_code == 200, found.text
    entries: list[dict[str, object]] = found.json()["entries"]
    return entries


def test_empty_config_explains_email_and_the_first_route_brings_the_default(
        admin: TestClient, api: TestClient, config_dir: Path) -> None:
    page = admin.get("/admin/routes")
    assert page.status_code == 200
    assert "every message received goes to email" in page.text
    form = admin.get("/admin/routes/new").text
    assert 'name="default_destination"' in form
    done = post(admin, "/admin/routes/new", {
        "name": "support", "type": "body", "pattern": "help.*", "destination": "chat",
        "target": "", "default_destination": "chat", "etag": "", "note": "first one"},
        page="/admin/routes/new")
    assert done.status_code == 303, done.text
    listed = admin.get("/admin/routes")
    assert flash_of(listed.text) == "Added inbound route 'support' and the default route " \
        "after it."
    assert names(listed.text) == ["support", "default"]
    assert [r["name"] for r in api.get("/api/config/routes").json()["routes"]] == \
        ["support", "default"]
    text = (config_dir / "routes.toml").read_text()
    assert "default = true" in text


def test_the_list_shows_each_route_and_the_default_has_no_move_or_delete(
        routed: Path, admin: TestClient) -> None:
    page = admin.get("/admin/routes").text
    assert names(page) == ["vip", "sales", "default"]
    assert "ANI <code>\\+1555.*</code>" in page
    assert 'aria-label="Delete vip"' in page and 'aria-label="Delete default"' not in page
    assert 'aria-label="Move default up"' not in page
    assert re.search(r'aria-label="Move vip up" disabled', page)
    assert re.search(r'aria-label="Move sales down" disabled', page)


def test_add_a_route_at_a_position(routed: Path, admin: TestClient, api: TestClient) -> None:
    done = post(admin, "/admin/routes/new", {
        "name": "stop", "position": "0", "type": "body", "pattern": "STOP",
        "destination": "chat", "target": "", "note": "opt-outs first"})
    assert done.status_code == 303 and done.headers["location"] == "/admin/routes"
    assert names(admin.get("/admin/routes").text) == ["stop", "vip", "sales", "default"]
    entry = history(api)[0]
    assert entry["source"] == "admin" and entry["actor"] == "alice"
    assert entry["note"] == "opt-outs first"


def test_a_route_added_last_goes_before_the_default(routed: Path, admin: TestClient) -> None:
    done = post(admin, "/admin/routes/new", {
        "name": "later", "position": "", "type": "dnis", "pattern": "\\+1555.*",
        "destination": "chat"})
    assert done.status_code == 303, done.text
    assert names(admin.get("/admin/routes").text) == ["vip", "sales", "later", "default"]


def test_edit_a_route(routed: Path, admin: TestClient, api: TestClient) -> None:
    form = admin.get("/admin/routes/edit?name=sales")
    assert form.status_code == 200
    assert 'value="(?i)sales.*"' in form.text
    done = post(admin, "/admin/routes/edit", {
        "original": "sales", "name": "sales-desk", "type": "body", "pattern": "sales.*",
        "destination": "chat", "target": "", "etag": "", "note": "renamed"},
        page="/admin/routes/edit?name=sales")
    assert done.status_code == 303, done.text
    route = api.get("/api/config/routes/sales-desk").json()
    assert route["pattern"] == "sales.*" and route["type"] == "body"
    assert history(api)[0]["note"] == "renamed"


def test_the_default_route_edits_its_destination_alone(routed: Path, admin: TestClient,
                                                      api: TestClient) -> None:
    form = admin.get("/admin/routes/edit?name=default").text
    assert 'name="pattern"' not in form and "cannot be deleted" in form
    done = post(admin, "/admin/routes/edit", {
        "original": "default", "name": "default", "destination": "chat",
        "target": "lobby"}, page="/admin/routes/edit?name=default")
    assert done.status_code == 303, done.text
    route = api.get("/api/config/routes/default").json()
    assert route["default"] is True and route["target"] == "lobby"


def test_move_down_and_up(routed: Path, admin: TestClient) -> None:
    etag = etag_of(admin.get("/admin/routes").text)
    down = post(admin, "/admin/routes/move", {"name": "vip", "direction": "down",
                                              "etag": etag}, page="/admin/routes")
    assert down.status_code == 303, down.text
    assert names(admin.get("/admin/routes").text) == ["sales", "vip", "default"]
    up = post(admin, "/admin/routes/move", {"name": "vip", "direction": "up"},
              page="/admin/routes")
    assert up.status_code == 303
    assert names(admin.get("/admin/routes").text) == ["vip", "sales", "default"]


def test_the_default_route_stays_last(routed: Path, admin: TestClient,
                                      config_dir: Path) -> None:
    before = (config_dir / "routes.toml").read_text()
    below = post(admin, "/admin/routes/move", {"name": "sales", "direction": "down"},
                 page="/admin/routes")
    assert below.status_code == 409
    assert "the default route, which stays last" in html.unescape(below.text)
    moved = post(admin, "/admin/routes/move", {"name": "default", "direction": "up"},
                 page="/admin/routes")
    assert moved.status_code == 409 and "stays last" in moved.text
    assert (config_dir / "routes.toml").read_text() == before


def test_delete_asks_first_then_deletes(routed: Path, admin: TestClient,
                                        api: TestClient) -> None:
    confirm = admin.get("/admin/routes/delete?name=vip")
    assert confirm.status_code == 200 and 'name="confirm"' in confirm.text
    unconfirmed = post(admin, "/admin/routes/delete", {"name": "vip"},
                       page="/admin/routes/delete?name=vip")
    assert unconfirmed.status_code == 400
    assert field_error(unconfirmed.text, "confirm") == "tick this box to delete the route"
    assert "vip" in [r["name"] for r in api.get("/api/config/routes").json()["routes"]]
    done = post(admin, "/admin/routes/delete", [
        ("name", "vip"), ("confirm", "off"), ("confirm", "on"), ("note", "gone")],
        page="/admin/routes/delete?name=vip")
    assert done.status_code == 303, done.text
    assert names(admin.get("/admin/routes").text) == ["sales", "default"]
    assert history(api)[0]["note"] == "gone"


def test_the_default_route_cannot_be_deleted(routed: Path, admin: TestClient,
                                             config_dir: Path) -> None:
    before = (config_dir / "routes.toml").read_text()
    refused = post(admin, "/admin/routes/delete", [
        ("name", "default"), ("confirm", "on")], page="/admin/routes/delete?name=default")
    assert refused.status_code == 409
    assert "the default route cannot be removed" in refused.text
    assert (config_dir / "routes.toml").read_text() == before


def test_a_bad_pattern_is_shown_beside_the_field_and_nothing_is_written(
        routed: Path, admin: TestClient, config_dir: Path) -> None:
    before = (config_dir / "routes.toml").read_text()
    refused = post(admin, "/admin/routes/new", {
        "name": "broken", "type": "body", "pattern": "(unclosed", "destination": "chat"})
    assert refused.status_code == 422, refused.text
    error = field_error(refused.text, "pattern")
    assert error is not None and "broken" in error, refused.text
    assert 'value="(unclosed"' in refused.text  # the form as typed
    assert (config_dir / "routes.toml").read_text() == before


def test_a_bad_target_is_shown_beside_the_target(routed: Path, admin: TestClient,
                                                 config_dir: Path) -> None:
    before = (config_dir / "routes.toml").read_text()
    refused = post(admin, "/admin/routes/new", {
        "name": "h", "type": "body", "pattern": "x", "destination": "handler",
        "target": "NoSuchHandler"})
    assert refused.status_code == 422, refused.text
    error = field_error(refused.text, "target")
    assert error is not None and "NoSuchHandler" in error, refused.text
    assert (config_dir / "routes.toml").read_text() == before


def test_a_bad_type_or_a_name_used_twice(routed: Path, admin: TestClient) -> None:
    bad = post(admin, "/admin/routes/new", {"name": "x", "type": "subject", "pattern": "x",
                                            "destination": "chat"})
    assert bad.status_code == 400 and field_error(bad.text, "type") is not None
    twice = post(admin, "/admin/routes/new", {"name": "vip", "type": "body",
                                              "pattern": "x", "destination": "chat"})
    assert twice.status_code == 409
    assert field_error(twice.text, "name") == "there is already an inbound route named 'vip'"


def test_editing_a_route_that_is_gone(routed: Path, admin: TestClient,
                                      config_dir: Path) -> None:
    before = (config_dir / "routes.toml").read_text()
    gone = post(admin, "/admin/routes/edit", {
        "original": "nope", "name": "nope", "type": "body", "pattern": "x",
        "destination": "chat"}, page="/admin/routes")
    assert gone.status_code == 303
    assert flash_of(admin.get("/admin/routes").text) == \
        "There is no inbound route named 'nope' (any more): nothing was changed."
    assert admin.get("/admin/routes/edit?name=nope",
                     follow_redirects=False).status_code == 303
    assert (config_dir / "routes.toml").read_text() == before


def test_a_stale_form_is_refused_with_409(routed: Path, admin: TestClient,
                                          api: TestClient, config_dir: Path) -> None:
    form = admin.get("/admin/routes/edit?name=sales").text
    etag = etag_of(form)
    moved = api.post("/api/config/routes/vip/move", json={"direction": "down"},
                     headers={"If-Match": "*"})
    assert moved.status_code == 200, moved.text
    before = (config_dir / "routes.toml").read_text()
    stale = admin.post("/admin/routes/edit", data={
        "csrf_token": csrf_of(form), "etag": etag, "original": "sales",
        "name": "sales", "type": "body", "pattern": "s.*", "destination": "chat"},
        follow_redirects=False)
    assert stale.status_code == 409
    assert "changed by someone else" in stale.text
    assert (config_dir / "routes.toml").read_text() == before
    assert etag_of(stale.text) != etag  # the form goes on with the current version


def test_a_shadowed_route_is_warned_beside_it(config_dir: Path, admin: TestClient,
                                              api: TestClient) -> None:
    (config_dir / "routes.toml").write_text(ROUTES)
    added = post(admin, "/admin/routes/new", {
        "name": "sales-eu", "type": "body", "pattern": "sales eu", "destination": "chat"})
    assert added.status_code == 303, added.text
    page = admin.get("/admin/routes").text
    row = re.search(r'<tr id="route-2" class="shadowed">(.*?)</tr>', page, re.S)
    assert row is not None, page
    assert "sales-eu" in row.group(1) and "Warning:" in row.group(1)
    assert "route &#39;sales&#39;" in row.group(1) or "'sales'" in html.unescape(row.group(1))
    assert page.count("Warning:") == 1


def test_the_tester_says_which_route_and_why(routed: Path, admin: TestClient) -> None:
    page = admin.get("/admin/routes", params={
        "ani": "(415) 555-0199", "dnis": "+15550100", "body": "Sales please"}).text
    assert re.search(r'class="taken">sales<', page), page
    text = html.unescape(page)
    assert "Not vip: ani '+14155550199' does not match '\\+1555.*' (whole remote)" \
        in re.sub(r"</?strong>", "", text), text
    assert "from <code>+14155550199</code>, to <code>+15550100</code>" in text
    other = admin.get("/admin/routes", params={"ani": "+447700900000", "body": "hi"}).text
    assert re.search(r'class="taken">default<', other)


def test_the_tester_needs_the_sender(routed: Path, admin: TestClient) -> None:
    page = admin.get("/admin/routes", params={"ani": " ", "body": "x"}).text
    assert field_error(page, "ani") == "the sender's number is required"
    assert 'class="taken"' not in page


def test_only_an_admin_may_use_the_routes(routed: Path, supervisor: TestClient,
                                          agent: TestClient, anonymous: TestClient) -> None:
    for path in ("/admin/routes", "/admin/routes/new", "/admin/routes/edit?name=vip",
                 "/admin/routes/delete?name=vip"):
        assert supervisor.get(path, follow_redirects=False).status_code == 403
        assert agent.get(path, follow_redirects=False).status_code == 403
        assert anonymous.get(path, follow_redirects=False).status_code == 303
    token = csrf_of(supervisor.get("/admin").text)
    moved = supervisor.post("/admin/routes/move", data={
        "csrf_token": token, "name": "vip", "direction": "down"}, follow_redirects=False)
    assert moved.status_code == 403


def test_a_checkbox_reads_its_box_not_the_hidden_off() -> None:
    assert parse_form(b"confirm=off&confirm=on").checked("confirm")
    assert not parse_form(b"confirm=off").checked("confirm")
