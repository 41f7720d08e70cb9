"""The admin frame (host.web.ui.admin.frame): who may see a page, the navigation of
what each role may use, forms and CSRF, through the real app."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from host.web.ui.admin import pages as admin_pages
from host.web.ui.admin.frame import SECTIONS, AdminRoute, FormError, parse_form
from host.web.routes import UiRoute
from tests.admin.conftest import client_of, csrf_of
from tests.test_web_layer import starlette_of


def test_not_signed_in_goes_to_the_sign_in_page_and_back(anonymous: TestClient) -> None:
    answer = anonymous.get("/admin", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/admin"
    assert answer.headers["cache-control"] == "no-store"


def test_an_agent_gets_403_naming_the_right(agent: TestClient) -> None:
    answer = agent.get("/admin")
    assert answer.status_code == 403
    assert "needs the read right" in answer.text
    assert 'href="/desk"' in answer.text  # the way back to its work


def test_the_navigation_shows_what_each_role_may_use(admin: TestClient,
                                                     supervisor: TestClient) -> None:
    everything = admin.get("/admin")
    assert everything.status_code == 200
    for section in SECTIONS:
        assert f'href="{section.path}"' in everything.text
    assert 'aria-current="page">Dashboard' in everything.text
    reading = supervisor.get("/admin")
    assert reading.status_code == 200
    assert 'href="/admin/history"' in reading.text and 'href="/admin/brokers"' not in reading.text


def served_admin_pages(app: TestClient) -> list[AdminRoute]:
    """The admin pages the real app serves (inside their UI declarations)."""
    return [route.route for route in starlette_of(app.app).routes
            if isinstance(route, UiRoute) and isinstance(route.route, AdminRoute)]


def test_every_admin_path_is_a_page_declaring_its_need(app: TestClient) -> None:
    served = served_admin_pages(app)
    assert {r.path for r in served} == {r.path for r in admin_pages()}
    others = [route.path for route in starlette_of(app.app).routes
              if isinstance(route, UiRoute) and route.path.startswith("/admin")
              and not isinstance(route.route, AdminRoute)]
    assert others == [], f"pages under /admin that declare no need: {others}"
    for section in SECTIONS:
        assert section.path in {r.path for r in served}, f"no page for {section.path}"


def test_every_page_answers_each_role_by_its_need(app: TestClient) -> None:
    """Each GET page without a path parameter: anonymous → sign-in, agent → 403,
    supervisor → 200 when its need is read or supervise, admin → 200."""
    clients = {login: client_of(app, login) for login in ("alice", "sue", "bob")}
    anonymous = client_of(app, None)
    pages = [r for r in served_admin_pages(app)
             if "{" not in r.path and "GET" in (r.methods or ())]
    assert len(pages) >= 20, [r.path for r in pages]
    for route in pages:
        gone = anonymous.get(route.path, follow_redirects=False)
        assert gone.status_code == 303, route.path
        assert gone.headers["location"].startswith("/login?next=/admin"), route.path
        assert clients["bob"].get(route.path).status_code == 403, route.path
        expected = 200 if route.need in ("read", "supervise") else 403
        assert clients["sue"].get(route.path).status_code == expected, route.path
        answer = clients["alice"].get(route.path)
        assert answer.status_code == 200, (route.path, answer.text[:500])
        assert answer.headers["cache-control"] == "no-store", route.path


def test_a_post_without_the_csrf_token_is_refused(admin: TestClient) -> None:
    token = csrf_of(admin.get("/admin").text)
    assert admin.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert admin.post("/logout", data={"csrf_token": token},
                      follow_redirects=False).status_code == 303


@pytest.mark.parametrize("body, message", [
    (b"a=" + b"x" * 300_000, "larger than"),
    (b"a=%ff", "not UTF-8"),
    (b"&".join(b"a%d=1" % i for i in range(600)), "more than 500 fields"),
])
def test_a_form_that_cannot_be_read_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(FormError, match=message):
        parse_form(body)


def test_a_form_keeps_repeated_fields_and_cleans_text() -> None:
    form = parse_form(b"tag=a&tag=b&text=%00x&box=on&off=off")
    assert form.getlist("tag") == ["a", "b"]
    assert form.get("text") == "\ufffdx"
    assert form.checked("box") and not form.checked("off") and not form.checked("none")
