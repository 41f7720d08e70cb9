"""/admin/outbound (issue 15 point 3, SPEC O2, O3, O9): the outbound routes through the
real app and its configuration files: list, add, edit, move, delete, errors beside
their fields with nothing written, the ``$n`` preview, shadow warnings, the history."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.admin.conftest import csrf_of, field_error, flash_of, post
from tests.admin.test_routes_page import etag_of, history, names

ROUTES = """\
[routing]
enabled = false

[[outbound]]
name = "uk"
pattern = "0(\\\\d{10})"
format = "+44$1"
broker = "simulator"
account = "default"

[[outbound]]
name = "staff"
pattern = "\\\\+1555\\\\d+"
classifications = ["staff"]

[[outbound]]
name = "rest"
pattern = ".*"
"""


@pytest.fixture
def routed(config_dir: Path) -> Path:
    (config_dir / "routes.toml").write_text(ROUTES)
    return config_dir


def outbound(api: TestClient) -> list[str]:
    return [r["name"] for r in api.get("/api/config/outbound").json()["routes"]]


def test_the_list_shows_pattern_format_broker_and_classifications(
        routed: Path, admin: TestClient) -> None:
    page = admin.get("/admin/outbound")
    assert page.status_code == 200
    assert names(page.text) == ["uk", "staff", "rest"]
    assert "<code>+44$1</code>" in page.text and "simulator / default" in page.text
    assert "<td>staff</td>" in page.text  # its classifications
    assert re.search(r'aria-label="Move uk up" disabled', page.text)
    assert re.search(r'aria-label="Move rest down" disabled', page.text)
    assert 'aria-label="Delete rest"' in page.text


def test_with_no_routes_the_page_says_what_happens(admin: TestClient) -> None:
    page = html.unescape(admin.get("/admin/outbound", params={"to": "+15550123"}).text)
    assert "There are no outbound routes" in page
    assert "the sender's account sends it to <code class=\"number\">+15550123</code>" \
        in page


def test_add_the_first_route_and_then_one_before_it(admin: TestClient,
                                                    api: TestClient) -> None:
    done = post(admin, "/admin/outbound/new", {
        "name": "all", "pattern": ".*", "format": "", "broker": "", "account": "",
        "classifications": "", "note": "first outbound"})
    assert done.status_code == 303, done.text
    assert flash_of(admin.get("/admin/outbound").text) == "Added outbound route 'all'."
    first = post(admin, "/admin/outbound/new", {
        "name": "us", "position": "0", "pattern": "\\+1(\\d+)", "format": "+1$1",
        "broker": "simulator", "account": "default", "classifications": "staff, ops"})
    assert first.status_code == 303, first.text
    assert outbound(api) == ["us", "all"]
    route = api.get("/api/config/outbound/us").json()
    assert route["classifications"] == ["staff", "ops"] and route["broker"] == "simulator"
    entry = history(api)[1]
    assert entry["source"] == "admin" and entry["note"] == "first outbound"


def test_edit_a_route(routed: Path, admin: TestClient, api: TestClient) -> None:
    form = admin.get("/admin/outbound/edit?name=staff").text
    assert 'value="staff"' in form
    done = post(admin, "/admin/outbound/edit", {
        "original": "staff", "name": "staff", "pattern": "\\+1555(\\d+)", "format": "$0",
        "broker": "", "account": "", "classifications": "", "note": "open to all"},
        page="/admin/outbound/edit?name=staff")
    assert done.status_code == 303, done.text
    route = api.get("/api/config/outbound/staff").json()
    assert route["classifications"] == [] and route["pattern"] == "\\+1555(\\d+)"
    assert history(api)[0]["note"] == "open to all"


def test_move_up_and_down(routed: Path, admin: TestClient, api: TestClient) -> None:
    up = post(admin, "/admin/outbound/move", {
        "name": "rest", "direction": "up",
        "etag": etag_of(admin.get("/admin/outbound").text)}, page="/admin/outbound")
    assert up.status_code == 303, up.text
    assert outbound(api) == ["uk", "rest", "staff"]
    down = post(admin, "/admin/outbound/move", {"name": "uk", "direction": "down"},
                page="/admin/outbound")
    assert down.status_code == 303
    assert outbound(api) == ["rest", "uk", "staff"]
    end = post(admin, "/admin/outbound/move", {"name": "staff", "direction": "down"},
               page="/admin/outbound")
    assert end.status_code == 409 and "the last route already" in html.unescape(end.text)


def test_delete_after_confirming(routed: Path, admin: TestClient, api: TestClient) -> None:
    assert 'name="confirm"' in admin.get("/admin/outbound/delete?name=uk").text
    done = post(admin, "/admin/outbound/delete", [("name", "uk"), ("confirm", "off"),
                                                  ("confirm", "on")],
                page="/admin/outbound/delete?name=uk")
    assert done.status_code == 303, done.text
    assert outbound(api) == ["staff", "rest"]


def test_bad_pattern_format_broker_and_account_beside_their_fields(
        routed: Path, admin: TestClient, config_dir: Path) -> None:
    before = (config_dir / "routes.toml").read_text()
    pattern = post(admin, "/admin/outbound/new", {"name": "x", "pattern": "0(\\d+",
                                                  "format": "$0"})
    assert pattern.status_code == 422, pattern.text
    assert "x" in (field_error(pattern.text, "pattern") or "")
    groups = post(admin, "/admin/outbound/new", {"name": "x", "pattern": "0(\\d+)",
                                                 "format": "+44$2"})
    assert groups.status_code == 422
    assert "$2 but the pattern has 1 group(s)" in (field_error(groups.text, "format") or "")
    broker = post(admin, "/admin/outbound/new", {"name": "x", "pattern": ".*",
                                                 "broker": "nope", "account": "other"})
    assert broker.status_code == 400
    assert "no broker instance named 'nope'" in (field_error(broker.text, "broker") or "")
    account = post(admin, "/admin/outbound/new", {"name": "x", "pattern": ".*",
                                                  "broker": "simulator", "account": "other"})
    assert account.status_code == 400
    assert field_error(account.text, "account") == \
        "no account 'other' at broker 'simulator'; accounts: default"
    assert (config_dir / "routes.toml").read_text() == before


def test_a_stale_form_is_refused_with_409(routed: Path, admin: TestClient,
                                          api: TestClient, config_dir: Path) -> None:
    form = admin.get("/admin/outbound/new").text
    changed = api.delete("/api/config/outbound/staff", headers={"If-Match": "*"})
    assert changed.status_code in (200, 204), changed.text
    before = (config_dir / "routes.toml").read_text()
    stale = admin.post("/admin/outbound/new", data={
        "csrf_token": csrf_of(form), "etag": etag_of(form), "name": "x", "pattern": "1"},
        follow_redirects=False)
    assert stale.status_code == 409 and "changed by someone else" in stale.text
    assert (config_dir / "routes.toml").read_text() == before


def test_the_preview_formats_the_number_and_says_why(routed: Path, admin: TestClient
                                                     ) -> None:
    page = html.unescape(admin.get("/admin/outbound", params={"to": "07700900123"}).text)
    assert re.search(r'class="taken">uk<', page)
    assert 'sends it to\n  <code class="number">+447700900123</code>' in page
    assert "via simulator, account default" in page
    later = html.unescape(admin.get("/admin/outbound", params={"to": "+442071234567"}).text)
    assert re.search(r'class="taken">rest<', later)
    assert "Not <strong>uk</strong>: '+442071234567' does not match '0(\\d{10})'" in later


def test_the_preview_shows_a_refusal_by_classification(routed: Path, admin: TestClient
                                                       ) -> None:
    refused = html.unescape(admin.get("/admin/outbound", params={"to": "+15550001"}).text)
    assert "Refused:</strong> outbound route 'staff' does not allow a sender without a " \
        "classification" in refused
    allowed = admin.get("/admin/outbound", params={"to": "+15550001",
                                                   "classification": "staff"}).text
    assert re.search(r'class="taken">staff<', allowed)
    empty = admin.get("/admin/outbound", params={"to": ""}).text
    assert field_error(empty, "to") == "the number to send to is required"


def test_a_shadowed_route_is_warned(routed: Path, admin: TestClient) -> None:
    added = post(admin, "/admin/outbound/new", {"name": "late", "pattern": "\\+44\\d+"})
    assert added.status_code == 303, added.text
    page = html.unescape(admin.get("/admin/outbound").text)
    row = re.search(r'<tr id="route-3" class="shadowed">(.*?)</tr>', page, re.S)
    assert row is not None and "late" in row.group(1)
    assert "outbound route 'late' can never match: route 'rest' before it matches " \
        "everything" in row.group(1)


def test_only_an_admin_may_use_the_outbound_routes(routed: Path, supervisor: TestClient,
                                                   agent: TestClient,
                                                   anonymous: TestClient) -> None:
    for path in ("/admin/outbound", "/admin/outbound/new", "/admin/outbound/edit?name=uk",
                 "/admin/outbound/delete?name=uk"):
        assert supervisor.get(path, follow_redirects=False).status_code == 403
        assert agent.get(path, follow_redirects=False).status_code == 403
        assert anonymous.get(path, follow_redirects=False).status_code == 303
