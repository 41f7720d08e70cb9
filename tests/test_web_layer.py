"""The web layer (host/web): a place for each kind of route, the auth each API route
declares, JSON errors for the API and HTML pages elsewhere, sessions with CSRF checks,
static files and templates. Through the real app, as a client sees it."""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Host as StarletteHost
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from starlette.testclient import TestClient

from host import hookimpl
from host.config import load_settings
from host.core import Host
from host.web.routes import AUTHS, GRANTED, ApiRoute, Declared, is_api_path
from host.web.ui.sessions import MIN_SECRET, session_secret
from tests.brokers.conftest import broker_config
from tests.conftest import base_config, free_port
from tests.test_api import SIMULATOR

TOKEN = {"Authorization": "Bearer test-token"}


def starlette_of(app: Any) -> Starlette:
    """The Starlette app inside the listener's outer layers (request context, broker
    dispatch)."""
    while not isinstance(app, Starlette):
        app = app.app
    return app


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


class Legacy:
    """A plugin of the first form of the hook: returns its routes."""

    @hookimpl
    def register_routes(self) -> list[Route]:
        return [Route("/api/legacy", hello), Route("/legacy", hello)]


# -- every API route declares its auth --------------------------------------------------

@pytest.fixture
def full_host(tmp_path: Path) -> Host:
    """The shipped plugins (the sinks' API routes) and the simulator (its API and
    webhook routes), and a plugin of the first form."""
    cfg = broker_config(tmp_path, SIMULATOR)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.plugins.register(Legacy(), "legacy")
    return host


def test_every_api_route_of_the_built_app_declares_its_auth(full_host: Host) -> None:
    routes = starlette_of(full_host.app_for()).routes
    api = [r for r in routes if is_api_path(getattr(r, "path", ""))]
    undeclared = [r for r in api if not isinstance(r, ApiRoute) or r.auth not in AUTHS]
    assert not undeclared, f"API routes without an auth declaration: {undeclared}"
    paths = {r.path for r in api}
    # the core's, the sinks', the simulator's and the legacy plugin's are all there
    assert {"/api/messages", "/api/events", "/api/conversations", "/api/queues",
            "/api/webhooks/deliveries", "/api/simulator/mo", "/api/legacy"} <= paths
    # and every route of the app has a kind
    assert all(isinstance(r, Declared) for r in routes), routes
    kinds = {r.path: r.kind for r in routes if isinstance(r, Declared)}
    assert (kinds["/health"], kinds["/metrics"]) == ("ops", "ops")
    assert (kinds["/simulator/phone"], kinds["/legacy"]) == ("webhook", "webhook")
    assert kinds["/ui/static"] == "ui"


def test_an_api_route_checks_its_own_declaration(host: Host) -> None:
    """Behind the bearer check of every /api path, the route holds the request to the
    auth it declares: a request that proved nothing is refused."""
    app = Starlette(routes=[ApiRoute("/api/hello", hello, auth="read")])
    with TestClient(app) as client:
        response = client.get("/api/hello")
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")

    async def proved_send(scope: Any, receive: Any, send: Any) -> None:
        scope[GRANTED] = {"via": "token", "token": "0badcafe", "integration": "crm",
                          "rights": ["send"]}
        await app(scope, receive, send)
    with TestClient(proved_send) as client:
        response = client.get("/api/hello")
    assert response.status_code == 403 and response.json() == {
        "error": "forbidden", "message": "GET /api/hello needs the read right; token "
        "0badcafe (integration 'crm') has send"}


@pytest.mark.parametrize(("kind", "path"), [
    ("api", "/outside"), ("ui", "/api/page"), ("webhook", "/api/hook"), ("admin", "/x"),
])
def test_a_route_outside_its_kinds_place_is_a_plugin_error(
        host: Host, kind: str, path: str) -> None:
    class Misplaced:
        @hookimpl
        def register_routes(self, register: Callable[..., None]) -> None:
            register(kind, [Route(path, hello)])

    host.plugins.register(Misplaced(), "misplaced")
    with TestClient(host.app_for()) as client:
        assert client.get(path, headers=TOKEN).status_code in (404, 401)
        failures = client.get("/health").json()["plugins"]["failures"]
    assert any(f["name"] == "misplaced" for f in failures), failures


def test_a_returned_route_without_a_path_is_its_plugins_failure_not_the_nodes(
        host: Host) -> None:
    """The first form returns routes; one without a path (a starlette Host route) was
    served before kinds, then stopped the whole app from building. Now it is that
    plugin's load failure: the node builds its app and serves, without that plugin's
    returned routes."""
    class NoPath:
        @hookimpl
        def register_routes(self) -> list[Any]:
            return [StarletteHost("example.org", app=Route("/x", hello)),
                    Route("/api/np", hello)]

    host.plugins.register(NoPath(), "nopath")
    with TestClient(host.app_for()) as client:
        assert client.get("/health").status_code == 200
        failures = client.get("/health").json()["plugins"]["failures"]
        assert client.get("/api/np", headers=TOKEN).status_code == 404
    assert [f["error"] for f in failures if f["name"] == "nopath"] == [
        "a returned route needs a path (a Starlette Route or Mount); got Host"], failures


# -- JSON for the API, HTML elsewhere ---------------------------------------------------

async def explode(request: Request) -> Response:
    raise RuntimeError("kaboom")


async def echo(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


class Kinds:
    @hookimpl
    def register_routes(self, register: Callable[..., None]) -> None:
        register("api", [Route("/api/explode", explode), Route("/api/echo", echo,
                                                               methods=["POST"])])
        register("webhook", [Route("/hook/explode", explode),
                             Route("/hook/echo", echo, methods=["POST"])])
        register("ui", [Route("/page/explode", explode), Route("/page/echo", echo,
                                                               methods=["POST"])])


@pytest.fixture
def kinds(host: Host) -> TestClient:
    host.plugins.register(Kinds(), "kinds")
    return TestClient(host.app_for(), raise_server_exceptions=False)


def is_html(response: Any, status: int) -> bool:
    return (response.status_code == status
            and response.headers["content-type"].startswith("text/html")
            and f"<h1>{status} " in response.text)


def test_paths_outside_the_api_get_html_error_pages(kinds: TestClient) -> None:
    with kinds:
        assert is_html(kinds.get("/nowhere"), 404)
        assert is_html(kinds.post("/ui/static/ui.css"), 405)
        assert is_html(kinds.put("/page/echo"), 405)
        response = kinds.get("/page/explode")
        assert is_html(response, 500) and "kaboom" not in response.text
        assert is_html(kinds.get("/ui/static/nothing.css"), 404)


def test_the_api_and_programs_routes_answer_json(kinds: TestClient) -> None:
    with kinds:
        for response, status, code in [
            (kinds.get("/api/nowhere", headers=TOKEN), 404, "not_found"),
            (kinds.get("/api/nowhere"), 401, "unauthorized"),
            (kinds.delete("/api/messages", headers=TOKEN), 405, "method_not_allowed"),
            (kinds.get("/api/explode", headers=TOKEN), 500, "internal"),
            (kinds.get("/hook/explode"), 500, "internal"),
            (kinds.put("/hook/echo"), 405, "method_not_allowed"),
            (kinds.post("/health"), 405, "method_not_allowed"),
            (kinds.post("/metrics"), 405, "method_not_allowed"),
        ]:
            assert (response.status_code, response.json()["error"]) == (status, code), \
                response.request.url


def test_a_body_over_the_limit_is_413_in_the_form_of_its_path(kinds: TestClient) -> None:
    big = b"x" * 65537
    with kinds:
        assert kinds.post("/api/echo", content=big, headers=TOKEN).json()["error"] == \
            "too_large"
        assert kinds.post("/hook/echo", content=big).json()["error"] == "too_large"
        assert is_html(kinds.post("/page/echo", content=big), 413)


def test_other_listeners_answer_json_everywhere(host_factory: Callable[..., Host],
                                               tmp_path: Path) -> None:
    """A broker port serves /health and the webhooks: its callers are programs."""
    host = host_factory(smshost=base_config(tmp_path, extra=f"""
        [[listeners]]
        name = "brokers"
        port = {free_port()}
        """))
    with TestClient(host.app_for("brokers")) as client:
        response = client.get("/nowhere")
        assert (response.status_code, response.json()["error"]) == (404, "not_found")
        assert client.get("/ui/static/ui.css").status_code == 404


# -- pages: sessions, CSRF, templates, static files -------------------------------------

FORM = ('<form method="post"><input type="hidden" name="csrf_token" '
        'value="{{ csrf_token }}"><p>{{ name }}</p></form>')


async def form_page(request: Request) -> Response:
    ui = request.app.state.ui
    name = request.query_params.get("name", "you")
    return ui.render(request, ui.environment.from_string(FORM), {"name": name})


async def form_post(request: Request) -> Response:
    said = parse_qs((await request.body()).decode())
    return JSONResponse({"name": said.get("name", [""])[0]})


class Pages:
    @hookimpl
    def register_routes(self, register: Callable[..., None]) -> None:
        register("ui", [Route("/test/form", form_page, methods=["GET"]),
                        Route("/test/form", form_post, methods=["POST"])])


def pages_host(host_factory: Callable[..., Host], tmp_path: Path, extra: str = "") -> Host:
    host = host_factory(smshost=base_config(tmp_path, extra=extra))
    host.plugins.register(Pages(), "pages")
    return host


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_a_form_posts_with_its_csrf_token_and_is_refused_without(
        host_factory: Callable[..., Host], tmp_path: Path) -> None:
    host = pages_host(host_factory, tmp_path)
    with TestClient(host.app_for()) as client:
        page = client.get("/test/form")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        token = csrf_of(page.text)
        refused = client.post("/test/form", data={"name": "a"})
        assert is_html(refused, 403) and "CSRF" in refused.text
        assert is_html(client.post("/test/form", data={"name": "a", "csrf_token": "no"}), 403)
        ok = client.post("/test/form", data={"name": "a", "csrf_token": token})
        assert (ok.status_code, ok.json()) == (200, {"name": "a"})  # the page read the body
        by_header = client.post("/test/form", content=b"name=b",
                                headers={"X-CSRF-Token": token,
                                         "Content-Type": "application/x-www-form-urlencoded"})
        assert by_header.json() == {"name": "b"}
        assert csrf_of(client.get("/test/form").text) == token  # one per session
    with TestClient(host.app_for()) as stranger:  # another browser: no session, no token
        assert is_html(stranger.post("/test/form", data={"csrf_token": token}), 403)


def test_the_session_cookie_is_signed_httponly_and_samesite(
        host_factory: Callable[..., Host], tmp_path: Path) -> None:
    host = pages_host(host_factory, tmp_path)
    with TestClient(host.app_for()) as client:
        cookie = client.get("/test/form").headers["set-cookie"]
        assert cookie.startswith("smshost_session=")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/"} <= flags and "secure" not in flags
        client.cookies.set("smshost_session", "forged.value.sig")
        assert csrf_of(client.get("/test/form").text)  # a forged cookie: a new session
    secret = tmp_path / "data" / "session-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text()) > 40


def test_the_session_cookie_is_secure_behind_https(
        host_factory: Callable[..., Host], tmp_path: Path) -> None:
    host = host_factory(smshost=base_config(tmp_path).replace(
        "[server]\n", '[server]\npublic_url = "https://sms.example.com"\n'))
    host.plugins.register(Pages(), "pages")
    with TestClient(host.app_for(), base_url="https://testserver") as client:
        cookie = client.get("/test/form").headers["set-cookie"].lower()
    assert "; secure" in cookie and "httponly" in cookie


def test_a_session_secret_cut_short_is_replaced_not_used(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An empty secret file (a crash or a full disk between creating and writing it)
    signed cookies with the key "": anyone could forge a session. It is replaced."""
    path = tmp_path / "session-secret"
    path.write_text("")
    first = session_secret(path)
    assert len(first) >= MIN_SECRET and path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "has 0 characters" in caplog.text
    assert session_secret(path) == first  # kept from then on
    assert [p.name for p in tmp_path.iterdir()] == ["session-secret"]  # no scratch left


class Sockets:
    @hookimpl
    def register_routes(self, register: Callable[..., None]) -> None:
        async def live(socket: WebSocket) -> None:
            await socket.accept()
            await socket.send_text("hi")
            await socket.close()
        register("ui", [WebSocketRoute("/test/live", live)])


def test_a_page_socket_opens_from_this_site_only(host: Host) -> None:
    """A websocket of a page carries the session cookie: one opened by another site's
    page (cross-site WebSocket hijacking) is closed; the guard no longer fails on it
    for want of a method."""
    host.plugins.register(Sockets(), "sockets")
    with TestClient(host.app_for()) as client:
        with client.websocket_connect(
                "/test/live", headers={"origin": "http://testserver"}) as socket:
            assert socket.receive_text() == "hi"
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect(
                    "/test/live", headers={"origin": "https://evil.example"}) as socket:
                socket.receive_text()
        assert closed.value.code == 1008


def test_no_secret_is_made_without_pages(host: Host, tmp_path: Path) -> None:
    with TestClient(host.app_for()) as client:
        assert client.get("/health").status_code == 200
    assert not (tmp_path / "data" / "session-secret").exists()


def test_templates_autoescape(host_factory: Callable[..., Host], tmp_path: Path) -> None:
    host = pages_host(host_factory, tmp_path)
    with TestClient(host.app_for()) as client:
        page = client.get("/test/form", params={"name": "<script>alert(1)</script>"})
    assert "<script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_static_files_are_served_with_type_and_cache_header(host: Host) -> None:
    with TestClient(host.app_for()) as client:
        response = client.get("/ui/static/ui.css")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/css")
        assert response.headers["cache-control"] == "public, max-age=3600"
        assert "etag" in response.headers
        again = client.get("/ui/static/ui.css",
                           headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["cache-control"] == "public, max-age=3600"



def test_a_broker_webhook_on_the_api_listener_keeps_json_for_413(tmp_path: Path) -> None:
    """A broker's path is answered by the broker's code; a body over the limit is
    refused before it, in JSON as before, not as an HTML page (here the ASGI path; the
    fast path answers it itself: tests/test_fastpath.py)."""
    from tests.test_fastpath import make_host

    host = make_host(tmp_path, fast=False)
    with TestClient(host.app_for()) as client:
        response = client.post("/generic/mo", content=b"x" * 65537)
    assert (response.status_code, response.json()["error"]) == (413, "too_large")
