"""The outbound HTTP client seam (host.httpclient), each case against both transports.

Real servers on 127.0.0.1: an aiohttp application in the test's own loop (plain and
TLS from a fresh test CA), a server that accepts and never answers, a closed port, and
the forwarding proxy of the outbound tests (tests/outbound/conftest.py).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from host.config import settings as config_settings
from host.errors import ConfigError, HttpError
from host.httpclient import KINDS, Response, Transport, open_client
from tests.outbound.conftest import LOOPBACK, ForwardProxy, basic, tls_pair

LOGIN, PASSWORD = "proxy-user", "proxy-pass-7"


class Server:
    """An aiohttp application on 127.0.0.1 that records what it was sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.peers: set[Any] = set()
        self.hanging = asyncio.Event()  # a request reached /hang
        self.release = asyncio.Event()  # /hang answers (at the stop)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, tls: Any = None) -> Server:
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/busy", self.busy)
        app.router.add_get("/moved", self.moved)
        app.router.add_get("/gzip", self.gzipped)
        app.router.add_get("/big", self.big)
        app.router.add_get("/hang", self.hang)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0, ssl_context=tls)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if tls else 'http'}://{LOOPBACK}:{port}"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.peers.add(request.transport.get_extra_info("peername") if request.transport
                       else None)
        self.seen.append({"method": request.method, "body": body,
                          "headers": dict(request.headers)})
        return web.Response(body=request.method.encode() + b" " + body,
                            headers={"X-Answer": "yes"})

    async def busy(self, request: web.Request) -> web.Response:
        return web.Response(status=429, text="slow down", headers={"Retry-After": "7"})

    async def moved(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/echo"})

    async def gzipped(self, request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"decoded " * 100),
                            headers={"Content-Encoding": "gzip"})

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 300_000)

    async def hang(self, request: web.Request) -> web.Response:
        self.hanging.set()
        await self.release.wait()  # no answer before the server stops
        return web.Response(text="too late")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    found = ForwardProxy(LOGIN, PASSWORD).start()
    try:
        yield found
    finally:
        found.stop()


def run(kind: str, test: Callable[[Transport, Server], Awaitable[None]], *,
        ca_file: str | None = None, tls: Any = None, max_connections: int = 10) -> None:
    """``test`` with a transport of ``kind`` and a started server, both closed after."""
    async def main() -> None:
        server = await Server().start(tls)
        client = open_client(kind, max_connections, ca_file)
        try:
            await asyncio.wait_for(test(client, server), 20)
        finally:
            await client.close()
            await server.stop()
    asyncio.run(main())


def test_a_get_answers_status_headers_and_body(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        answer = await client.request("GET", f"{server.url}/echo", {"X-Mine": "1"}, None, 5)
        assert (answer.status, answer.body) == (200, b"GET ")
        assert answer.headers["x-answer"] == "yes"  # names lower-cased
        assert server.seen[0]["headers"]["X-Mine"] == "1"
    run(kind, test)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_body_is_sent_with_its_method(kind: str, method: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        answer = await client.request(method, f"{server.url}/echo",
                                      {"Content-Type": "application/json"}, b'{"a":1}', 5)
        assert answer.body == method.encode() + b' {"a":1}'
        (seen,) = server.seen
        assert seen["headers"]["Content-Type"] == "application/json"
        assert "Expect" not in seen["headers"]
    run(kind, test)


def test_a_header_beyond_ascii_goes_as_utf8(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        await client.request("POST", f"{server.url}/echo", {"X-Name": "José"}, b"x", 5)
        raw = server.seen[0]["headers"]["X-Name"]
        assert raw.encode("utf-8", "surrogateescape").decode("utf-8") == "José"
    run(kind, test)


def test_a_line_break_in_a_header_is_refused_before_sending(kind: str) -> None:
    """A ValueError, not a network error: the caller's bug, never an injected header."""
    async def test(client: Transport, server: Server) -> None:
        with pytest.raises(ValueError):
            await client.request("GET", f"{server.url}/echo",
                                 {"Authorization": "Bearer a\r\nX-Injected: 1"}, None, 5)
        assert server.seen == []
    run(kind, test)


def test_retry_after_is_read_and_a_redirect_is_not_followed(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        busy = await client.request("GET", f"{server.url}/busy", {}, None, 5)
        assert (busy.status, busy.headers["retry-after"], busy.body) == \
            (429, "7", b"slow down")
        moved = await client.request("GET", f"{server.url}/moved", {}, None, 5)
        assert (moved.status, moved.headers["location"]) == (302, "/echo")
        assert server.seen == []  # /echo never reached
    run(kind, test)


def test_a_gzip_body_is_decoded(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        answer = await client.request("GET", f"{server.url}/gzip", {}, None, 5)
        assert answer.body == b"decoded " * 100
    run(kind, test)


def test_a_limit_keeps_the_start_of_a_long_body(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        answer = await client.request("GET", f"{server.url}/big", {}, None, 5, limit=1000)
        assert (answer.status, answer.body) == (200, b"x" * 1000)
        again = await client.request("GET", f"{server.url}/echo", {}, None, 5)
        assert again.status == 200  # the client goes on
    run(kind, test)


def test_a_server_that_never_answers_times_out(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        with pytest.raises(HttpError) as caught:
            await client.request("GET", f"{server.url}/hang", {}, None, 0.3)
        assert caught.value.timed_out and str(caught.value) == "timed out"
    run(kind, test)


def test_a_refused_connection_is_a_connect_failure(kind: str) -> None:
    with socket.socket() as held:  # bound, not listening: connections are refused
        held.bind((LOOPBACK, 0))
        port = held.getsockname()[1]

        async def test(client: Transport, server: Server) -> None:
            with pytest.raises(HttpError) as caught:
                await client.request("GET", f"http://{LOOPBACK}:{port}/", {}, None, 5)
            assert caught.value.connect_failure and not caught.value.timed_out
        run(kind, test)


def test_tls_trusts_a_private_ca_given_as_ca_file(kind: str, tmp_path: Path) -> None:
    server_tls, ca_file = tls_pair(tmp_path)

    async def test(client: Transport, server: Server) -> None:
        answer = await client.request("POST", f"{server.url}/echo", {}, b"secure", 5)
        assert answer.body == b"POST secure"
    run(kind, test, ca_file=str(ca_file), tls=server_tls)


def test_tls_refuses_a_certificate_of_an_unknown_ca(kind: str, tmp_path: Path) -> None:
    server_tls, _ = tls_pair(tmp_path)

    async def test(client: Transport, server: Server) -> None:
        with pytest.raises(HttpError, match="certificate verify failed"):
            await client.request("GET", f"{server.url}/echo", {}, None, 5)
        assert server.seen == []
    run(kind, test, tls=server_tls)


def test_http_through_a_proxy_sends_proxy_authorization_to_it(
        kind: str, proxy: ForwardProxy) -> None:
    async def test(client: Transport, server: Server) -> None:
        answer = await client.request(
            "POST", f"{server.url}/echo", {"Proxy-Authorization": basic(LOGIN, PASSWORD),
                                           "Content-Type": "text/plain"},
            b"proxied", 5, proxy=proxy.url)
        assert (answer.status, answer.body) == (200, b"POST proxied")
        (through,) = proxy.records()
        assert through.request_line == f"POST {server.url}/echo HTTP/1.1"  # absolute-form
        assert through.proxy_authorization == basic(LOGIN, PASSWORD)
        assert "Proxy-Authorization" not in server.seen[0]["headers"]
    run(kind, test)


def test_https_through_a_proxy_sends_proxy_authorization_on_the_connect(
        kind: str, proxy: ForwardProxy) -> None:
    """The test proxy answers an authorized CONNECT 501 (no tunnel) and others 407:
    either way no answer from the server, a network error, and the CONNECT carried the
    credentials (and only it: the server's headers never reach the proxy)."""
    async def test(client: Transport, server: Server) -> None:
        for headers in ({"Proxy-Authorization": basic(LOGIN, PASSWORD)}, None):
            with pytest.raises(HttpError):
                await client.request("GET", f"https://{LOOPBACK}:9/x", {"X-Secret": "s"},
                                     None, 5, proxy=proxy.url, proxy_headers=headers)
        authorized, refused = proxy.records()
        assert authorized.request_line == f"CONNECT {LOOPBACK}:9 HTTP/1.1"
        assert (authorized.proxy_authorization, authorized.answered) == \
            (basic(LOGIN, PASSWORD), 501)
        assert (refused.proxy_authorization, refused.answered) == (None, 407)
    run(kind, test)


def test_many_concurrent_requests_share_the_kept_connections(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        answers = await asyncio.gather(*(
            client.request("POST", f"{server.url}/echo", {}, str(i).encode(), 10)
            for i in range(200)))
        assert [a.body for a in answers] == [f"POST {i}".encode() for i in range(200)]
        assert len(server.peers) <= 5  # at most max_connections, kept alive
    run(kind, test, max_connections=5)


def test_a_cancelled_request_leaves_the_client_working(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        task = asyncio.create_task(client.request("GET", f"{server.url}/hang", {}, None, 10))
        await server.hanging.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        answer = await client.request("GET", f"{server.url}/echo", {}, None, 5)
        assert answer.status == 200
    run(kind, test)


def test_close_ends_requests_under_way_with_a_network_error(kind: str) -> None:
    async def test(client: Transport, server: Server) -> None:
        task = asyncio.create_task(client.request("GET", f"{server.url}/hang", {}, None, 10))
        await server.hanging.wait()
        await client.close()
        with pytest.raises(HttpError):
            await task
    run(kind, test)


def test_curl_without_pycurl_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycurl", None)  # import pycurl → ImportError
    with pytest.raises(ConfigError, match='http_client = "aiohttp"'):
        open_client("curl", 10)
    problems = list(config_settings.OutboxSettings(http_client="curl").problems())
    assert problems and problems[0][0] == ("http_client",)
    assert "needs pycurl" in problems[0][1]
    assert list(config_settings.OutboxSettings(http_client="aiohttp").problems()) == []


def test_an_unknown_client_is_refused() -> None:
    with pytest.raises(ConfigError, match="not one of aiohttp, curl"):
        open_client("httpx", 10)


def test_a_response_defaults_to_empty() -> None:
    assert Response(204) == Response(204, {}, b"")
