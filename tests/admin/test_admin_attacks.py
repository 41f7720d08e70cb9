"""The web admin attacked (issue 15 review): every page's right for each role, CSRF on
every post, secrets kept off the pages, hostile text shown as text, bad input answered
with a page (never a 500) and nothing written, and stale forms refused."""

from __future__ import annotations

import base64
import csv
import io
import html
import re
from pathlib import Path
from urllib.parse import urlencode

import httpx2
import pytest
from starlette.testclient import TestClient

from host.web.ui.admin import pages
from host.web.ui.admin.frame import AdminRoute
from tests.admin.conftest import csrf_of, field_error, post

PARAMS = {"id": "default", "name": "simulator", "entry_id": "1", "message_id": "1", "remote": "123",
          "login": "alice", "key": "x"}


def _path(route: AdminRoute) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], route.path)


def _each(methods: tuple[str, ...] = ("GET", "POST")) -> list[tuple[str, str, str]]:
    return [(method, _path(r), r.need) for r in pages() for method in sorted(r.methods or ())
            if method in methods]


def _token(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert found is not None
    return found.group(1)


def _try(client: TestClient, method: str, path: str) -> httpx2.Response:
    if method == "POST":
        return client.post(path, data={"csrf_token": _token(client)}, follow_redirects=False)
    return client.get(path, follow_redirects=False)


def test_anonymous_is_sent_to_sign_in(anonymous: TestClient) -> None:
    for method, path, _ in _each():
        answer = _try(anonymous, method, path)
        assert answer.status_code == 303, (method, path, answer.text[:300])
        assert answer.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("who", ["agent", "supervisor"])
def test_a_lesser_role_is_refused(request: pytest.FixtureRequest, who: str) -> None:
    """Each page and post (path parameters too) by the right it declares, and no post
    needs less than its page."""
    client: TestClient = request.getfixturevalue(who)
    rights = {"agent": {"send"}, "supervisor": {"read", "send", "supervise"}}[who]
    for method, path, need in _each():
        answer = _try(client, method, path)
        if need in rights:
            assert answer.status_code != 403, (method, path, answer.text[:300])
        else:
            assert answer.status_code == 403, (method, path, answer.status_code)
            assert "needs the" in answer.text
    admin_only = {(m, p) for m, p, n in _each() if n == "admin"}
    for path in ("/admin/history/1/revert", "/admin/people/tokens/new", "/admin/brokers/simulator",
                 "/admin/handlers/try", "/admin/simulator", "/admin/settings/optout/remove",
                 "/admin/brokers/simulator/test"):
        assert ("POST", path) in admin_only, path


def test_every_post_needs_the_csrf_token(admin: TestClient) -> None:
    for _, path, _ in _each(("POST",)):
        for data in ({}, {"csrf_token": "wrong"}):
            answer = admin.post(path, data=data, follow_redirects=False)
            assert answer.status_code == 403, (path, answer.text[:300])
        answer = admin.post(path, content=b'{"csrf_token": "x"}',
                            headers={"Content-Type": "application/json"},
                            follow_redirects=False)
        assert answer.status_code == 403, path


# -- bad input ------------------------------------------------------------------------

ANSWERS = {200, 303, 400, 404, 409, 413, 422}
HOSTILE = ["", "\x00", "\ud800", "<script>alert(1)</script>{{7*7}}\"'", "9" * 5000,
           "javascript:alert(1)", "-1", "../../etc/passwd"]
STRANGE = ["abc", "9" * 5000, "%00", "-1", "%3Cscript%3E", "%ED%A0%80", "..%2F.."]


def _files(config_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(config_dir)): p.read_bytes()
            for p in sorted(config_dir.rglob("*")) if p.is_file()}


def _forms(page: str, path: str) -> list[list[tuple[str, str]]]:
    """The fields of each form of ``page`` that posts to ``path``."""
    found = []
    for form in re.finditer(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', page, re.S):
        if html.unescape(form.group(1)).split("?")[0].split("#")[0] != path:
            continue
        names = re.findall(r'<(?:input|select|textarea)[^>]*name="([^"]+)"', form.group(2))
        found.append([(html.unescape(n), "") for n in names if n != "csrf_token"])
    return found


def test_strange_path_parameters_get_a_page(admin: TestClient) -> None:
    for _, path, _ in _each(("GET",)):
        if "{" not in next(r.path for r in pages() if _path(r) == path):
            continue
        template = next(r.path for r in pages() if _path(r) == path)
        for value in STRANGE:
            there = re.sub(r"\{\w+\}", value, template)
            answer = admin.get(there, follow_redirects=False)
            assert answer.status_code in ANSWERS, (there, answer.status_code)
            if answer.status_code != 303:
                assert "text/html" in answer.headers["content-type"], there


def test_hostile_forms_get_a_page_and_write_nothing(admin: TestClient,
                                                    config_dir: Path) -> None:
    """Each form of each page posted with every field hostile (and missing, and
    repeated): an answer with a page, never a 500; refused: no file changed."""
    for _method, path, _ in _each(("POST",)):
        template = next(r.path for r in pages() if _path(r) == path)
        shown = admin.get(path if "GET" in next(r.methods or () for r in pages()
                                                 if r.path == template)
                          else path.rsplit("/", 1)[0]).text
        forms = _forms(shown, path) or [[("name", "")]]
        for fields in forms:
            for value in HOSTILE:
                before = _files(config_dir)
                for data in ([(n, value) for n, _ in fields],
                             [(n, value) for n, _ in fields] * 2, []):
                    token = csrf_of(admin.get("/login").text)
                    body = urlencode([*data, ("csrf_token", token)], encoding="utf-8",
                                     errors="surrogatepass")
                    answer = admin.post(path, content=body, follow_redirects=False,
                                        headers={"Content-Type":
                                                 "application/x-www-form-urlencoded"})
                    assert answer.status_code in ANSWERS, (path, data, answer.status_code,
                                                           answer.text[:500])
                    if answer.status_code >= 400:
                        assert "<script>alert" not in answer.text, path
                        assert _files(config_dir) == before, (path, data)
                    before = _files(config_dir)


# -- secrets ----------------------------------------------------------------------------

def form_of(page: str, action: str) -> list[tuple[str, str]]:
    """The fields of the form of ``page`` posting to ``action`` as a browser sends them
    (text and hidden inputs, checked boxes, selected options, textareas)."""
    for form in re.finditer(r'<form([^>]*)>(.*?)</form>', page, re.S):
        target = re.search(r'action="([^"]*)"', form.group(1))
        if (html.unescape(target.group(1)) if target else action) != action:
            continue
        pairs: list[tuple[str, str]] = []
        body = form.group(2)
        for tag in re.finditer(r"<input([^>]*)>|<textarea([^>]*)>(.*?)</textarea>|"
                               r"<select([^>]*)>(.*?)</select>", body, re.S):
            attrs = tag.group(1) or tag.group(2) or tag.group(4) or ""
            name = re.search(r'name="([^"]*)"', attrs)
            if name is None:
                continue
            key = html.unescape(name.group(1))
            if tag.group(1) is not None:
                kind = re.search(r'type="([^"]*)"', attrs)
                value = re.search(r'value="([^"]*)"', attrs)
                if kind and kind.group(1) in ("checkbox", "radio") and "checked" not in attrs:
                    continue
                pairs.append((key, html.unescape(value.group(1)) if value else ""))
            elif tag.group(2) is not None:
                pairs.append((key, html.unescape(tag.group(3))))
            else:
                chosen = re.search(r'<option[^>]*value="([^"]*)"[^>]*selected', tag.group(5)) \
                    or re.search(r'<option[^>]*value="([^"]*)"', tag.group(5))
                pairs.append((key, html.unescape(chosen.group(1)) if chosen else ""))
        return pairs
    raise AssertionError(f"no form posting to {action}")


def _set(pairs: list[tuple[str, str]], **changes: str) -> list[tuple[str, str]]:
    changes = {k.replace("__", "."): v for k, v in changes.items()}
    out = [(k, changes.pop(k) if k in changes else v) for k, v in pairs
           if k != "csrf_token"]
    return out + list(changes.items())


def crawl(client: TestClient, start: tuple[str, ...] = ("/admin",), limit: int = 400
          ) -> dict[str, httpx2.Response]:
    """Every admin page a signed-in browser reaches by links from ``start`` (GET)."""
    seen: dict[str, httpx2.Response] = {}
    todo = list(start)
    while todo and len(seen) < limit:
        path = todo.pop(0)
        if path in seen:
            continue
        seen[path] = answer = client.get(path, follow_redirects=False)
        if "text/html" not in answer.headers.get("content-type", ""):
            continue
        for href in re.findall(r'href="([^"]*)"', answer.text):
            link = html.unescape(href).split("#")[0]
            if link.startswith("/admin") and link not in seen:
                todo.append(link)
    return seen


SECRETS = ("S3cretAcct-1", "S3cretProxy-2", "S3cretBad-3", "S3cretUser-4", "S3cretPw-5")


def test_secrets_never_show(admin: TestClient, api: TestClient) -> None:
    """Secrets set through the forms (and a form refused with one in it) show on no page
    reachable from the dashboard, nor in the export, the stream or a history diff; the
    token made is shown once: not on later pages nor in the session cookie."""
    base = "/admin/brokers/simulator"
    page = admin.get(base + "/accounts").text
    made = post(admin, base + "/accounts", _set(form_of(page, base + "/accounts"),
                id="main", local_address="+15550111", password="S3cretAcct-1"))
    assert made.status_code == 303, re.findall(r"field-error[^>]*>([^<]*)<", made.text)
    page = admin.get(base).text
    saved = post(admin, base, _set(form_of(page, base),
                                   proxy__address="http://proxy.example:3128",
                                   proxy__password="S3cretProxy-2"))
    assert saved.status_code == 303, re.findall(r"<li>([^<]*)</li>|field-error[^>]*>([^<]*)<",
                                                saved.text)
    refused = post(admin, "/admin/brokers", _set(form_of(admin.get("/admin/brokers").text,
                                                         "/admin/brokers"),
                   name="bad name!", definition="simulator", account__id="x",
                   account__password="S3cretBad-3"))
    assert refused.status_code in (400, 422) and "S3cretBad-3" not in refused.text
    user = post(admin, "/admin/people/users/new", [
        ("login", "bad login!"), ("roles", "agent"), ("password", "S3cretUser-4"),
        ("password2", "S3cretUser-4")])
    assert user.status_code in (400, 422) and "S3cretUser-4" not in user.text
    user = post(admin, "/admin/people/users/new", [
        ("login", "carol"), ("roles", "agent"), ("password", "S3cretPw-5"),
        ("password2", "S3cretPw-5")])
    assert user.status_code == 303, user.text
    page = admin.get("/admin/people/tokens/new").text
    token = post(admin, "/admin/people/tokens/new", _set(
        form_of(page, "/admin/people/tokens/new"), owner="integration", integration="crm"))
    assert token.status_code == 201, token.text
    shown = re.search(r'id="made-token" type="text" readonly value="([^"]+)"', token.text)
    assert shown is not None
    secrets = (*SECRETS, shown.group(1))
    api.post("/api/simulator/mo", json={"from": "+15005550006", "to": "+15550100",
                                        "text": "hello"})
    pages_seen = crawl(admin, ("/admin", "/admin/messages/export", "/admin/live?count=1",
                               "/admin/simulator/thread?from=%2B15005550006"))
    entries = [p for p in pages_seen if re.fullmatch(r"/admin/history/\d+", p)]
    assert len(entries) >= 2, sorted(pages_seen)
    broken = {p: a.status_code for p, a in pages_seen.items() if a.status_code != 200}
    assert not broken, broken
    assert len(pages_seen) > 40, sorted(pages_seen)
    for path, answer in pages_seen.items():
        for secret in secrets:
            assert secret not in answer.text, (path, secret)
    for cookie in admin.cookies.values():
        data = cookie.split(".")[0] + "=="
        assert shown.group(1).encode() not in base64.urlsafe_b64decode(data + "==")


# -- injection --------------------------------------------------------------------------

EVIL = "<script>alert(1)</script>\"'{{7*7}}=cmd|' /C calc'!A0"


def test_hostile_text_shows_as_text(admin: TestClient, api: TestClient) -> None:
    """Text from outside (a texted body, a note, a custom attribute, a number) is shown
    escaped on every page, in no link, and the CSV export does not start a formula."""
    base = "/admin/brokers/simulator/accounts/default"
    page = admin.get(base).text
    saved = post(admin, base, _set(form_of(page, base), attrs=f"team = {EVIL}", note=EVIL))
    assert saved.status_code == 303, re.findall(r"field-error[^>]*>([^<]*)<", saved.text)
    noted = post(admin, "/admin/history/notes", {"note": EVIL}, page="/admin/history")
    assert noted.status_code == 303
    for sender in ("+15005550006", "javascript:alert(1)", EVIL[:30]):
        api.post("/api/simulator/mo", json={"from": sender, "to": "+15550100", "text": EVIL})
    sent = post(admin, "/admin/simulator", {"from": "+15005550007", "to":
                                            "simulator|+15550100", "text": EVIL})
    assert sent.status_code == 303
    seen = crawl(admin, ("/admin", "/admin/messages?text=script",
                         "/admin/simulator?from=%2B15005550007"))
    assert any(EVIL[:8] in html.unescape(a.text) for a in seen.values())
    for path, answer in seen.items():
        if "text/html" in answer.headers.get("content-type", ""):
            assert "<script>alert" not in answer.text, path
            assert not re.search(r'(?:href|src|action)="\s*(?:javascript|data):', answer.text,
                                 re.I), path
    export = admin.get("/admin/messages/export")
    assert export.status_code == 200
    for row in csv.reader(io.StringIO(export.text)):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")) or cell[1:].replace(
                ":", "").replace("-", "").replace(".", "").replace(" ", "").isalnum() \
                or cell.startswith("'"), cell


@pytest.mark.parametrize("key", ["a/b", "..", "x?y#z", "50% off"])
def test_an_account_id_links_to_its_own_page(admin: TestClient, key: str) -> None:
    """An account's Edit and Remove links lead to that account's pages (an id that
    would not stay one path segment is refused, nothing written)."""
    base = "/admin/brokers/simulator"
    page = admin.get(base + "/accounts").text
    made = post(admin, base + "/accounts", _set(form_of(page, base + "/accounts"), id=key))
    if made.status_code != 303:
        assert made.status_code in (400, 422)
        assert field_error(made.text, "id"), made.text
        links = re.findall(r'href="[^"]*accounts/([^"/]*)"', admin.get(base).text)
        assert links == ["default"], links
        return
    links = [html.unescape(h) for h in re.findall(r'href="([^"]*accounts/[^"]*)"',
                                                   admin.get(base).text)]
    mine = [h for h in links if "default" not in h]
    assert len(mine) == 2, links
    for link in mine:
        answer = admin.get(link, follow_redirects=False)
        assert answer.status_code == 200, (link, answer.status_code)
        assert f"account {html.escape(key)}" in answer.text.lower() or \
            f"account {key}" in html.unescape(answer.text).lower(), link


# -- concurrency ------------------------------------------------------------------------

def test_a_stale_form_is_refused_with_the_current_version(admin: TestClient,
                                                           config_dir: Path) -> None:
    base = "/admin/brokers/simulator/accounts"
    stale = form_of(admin.get(base + "/default").text, base + "/default")
    fresh = post(admin, base + "/default", _set(stale, local_address="+15550177"))
    assert fresh.status_code == 303
    before = _files(config_dir)
    again = post(admin, base + "/default", _set(stale, local_address="+15550188"))
    assert again.status_code == 409, again.status_code
    assert "changed by someone else" in again.text
    assert _files(config_dir) == before
    shown = form_of(again.text, base + "/default")
    assert ("etag", dict(form_of(admin.get(base + "/default").text,
                                 base + "/default"))["etag"]) in shown
    assert ("local_address", "+15550177") in shown, shown  # as the message says


def test_the_same_add_posted_twice_adds_once(admin: TestClient, api: TestClient) -> None:
    base = "/admin/brokers/simulator/accounts"
    form = _set(form_of(admin.get(base).text, base), id="twice")
    answers = [post(admin, base, form).status_code for _ in range(2)]
    assert answers[0] == 303 and answers[1] in (409, 422), answers
    users = [post(admin, "/admin/people/users/new", [
        ("login", "dave"), ("roles", "agent")]).status_code for _ in range(2)]
    assert users[0] == 303 and users[1] in (400, 409, 422), users
    assert [u["login"] for u in api.get("/api/users").json()["users"]].count("dave") == 1
