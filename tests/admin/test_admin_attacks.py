"""The web admin attacked (issue 15 review): every page's right for each role, CSRF on
every post, secrets kept off the pages, hostile text shown as text, bad input answered
with a page (never a 500) and nothing written, and stale forms refused."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from starlette.testclient import TestClient

from host.web.ui.admin import pages
from host.web.ui.admin.frame import AdminRoute
from tests.admin.conftest import csrf_of

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


def _try(client: TestClient, method: str, path: str) -> httpx.Response:
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
