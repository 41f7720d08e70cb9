"""Broker webhooks answered by the protocol itself (host/web/fastpath.py), over real
sockets: a uvicorn server on 127.0.0.1 in a thread, raw HTTP/1.1 bytes from the test.

Each test checks what a broker (or a client sharing the listener) sees on the wire, and
what ended up in SQLite.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.config import load_settings
from host.core import Host
from host.server import _config, _Server, bind
from host.web.fastpath import FastProtocol, WebhookCall
from tests.brokers.conftest import broker_config
from tests.conftest import free_port, read_apart, write_lock

SECRET = "fast-path-secret"
GENERIC = f"""
[[brokers]]
name = "gen"
definition = "generic"
encryption = "http"
options = {{ SigningSecret = "{SECRET}" }}

[[brokers.accounts]]
id = "main"
login = "acme"
password = "bearer-secret"
local_address = "+14155550100"

[brokers.mt]
gateway = "http://127.0.0.1:9"
"""
LIMIT = 4096
TIMEOUT = 10.0  # seconds, for every socket read and for start and stop


class Live:
    """``host`` served by uvicorn (as ``smshost serve`` does) in a thread, on asyncio's
    own event loop or the one ``loop_factory`` makes (``smshost serve`` runs uvloop's)."""

    def __init__(self, host: Host,
                 loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
        self.host = host
        self.listener = host.settings.listeners[0]
        self.sock = bind(self.listener)
        self.port = self.sock.getsockname()[1]
        self.server = _Server(_config(host, self.listener))
        self.thread = threading.Thread(target=self._run, args=(loop_factory,), daemon=True)
        self.failure: BaseException | None = None
        self.conns: list[Conn] = []
        self.fast_runs: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            async with self.host.running():
                await self.server.serve(sockets=[self.sock])
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure = exc
            raise

    def __enter__(self) -> Live:
        self.thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.server.started and self.failure is None:
            if time.monotonic() > deadline:
                pytest.fail("the server did not start")
            time.sleep(0.02)
        assert self.failure is None, self.failure
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self.conns:
            conn.close()
        self.server.should_exit = True
        self.thread.join(TIMEOUT)
        self.sock.close()
        assert not self.thread.is_alive(), "the server did not stop"

    def connect(self, tls: ssl.SSLContext | None = None) -> Conn:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
        conn = Conn(sock)
        self.conns.append(conn)
        return conn

    def rows(self) -> list[dict[str, Any]]:
        """The MOs stored, read through the running host's store (on its loop), or
        through a store of its own once the server has stopped."""
        def read(db: Any) -> list[dict[str, Any]]:
            return list(db.query("select * from messages where direction = 'in' order by id"))

        if self.loop is None or not self.thread.is_alive():
            return read_apart(self.host, read)
        return asyncio.run_coroutine_threadsafe(self.host.store.read(read),
                                                self.loop).result(TIMEOUT)


class Conn:
    """One client connection: raw bytes out, parsed HTTP/1.1 responses in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> Response:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        for _ in range(100):  # bounded: no test response has that many headers
            line = self.file.readline().rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", "0")))
        return Response(status, headers, body)

    def closed_by_server(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def mo_body(n: int, text: str = "hello") -> bytes:
    return json.dumps({"id": f"fast-{n}", "from": "+14155550123", "to": "+14155550100",
                       "text": text}).encode()


def signature(body: bytes, timestamp: int) -> str:
    """The generic broker's X-Signature: hex HMAC-SHA256 of "<timestamp>.<body>"."""
    payload = f"{timestamp}.".encode() + body
    return hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()


def signed(body: bytes) -> str:
    """The signature headers for ``body``, signed now."""
    now = int(time.time())
    return f"X-Timestamp: {now}\r\nX-Signature: {signature(body, now)}\r\n"


def webhook(body: bytes, *, extra: str = "", sign: bool = True, version: str = "1.1",
            path: str = "/generic/mo", method: str = "POST") -> bytes:
    head = (f"{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
    if sign:
        head += signed(body)
    return (head + extra + "\r\n").encode() + body


HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def make_host(tmp_path: Path, *, fast: bool, signed: bool = True,
              shutdown_timeout: float = 10.0, tls: tuple[Path, Path] | None = None,
              extra: str = "") -> Host:
    """A host with the generic broker on its one (API) listener; ``extra`` is added to
    smshost.toml."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    brokers = GENERIC if signed else GENERIC.replace(
        f'options = {{ SigningSecret = "{SECRET}" }}\n', "")
    scheme = "https" if tls else "http"
    if tls:
        brokers = brokers.replace('encryption = "http"', 'encryption = "https"').replace(
            "http://127.0.0.1:9", "https://127.0.0.1:9")
    cfg = broker_config(tmp_path, brokers, public_url=f"{scheme}://127.0.0.1",
                        port=free_port())
    text = (cfg / "smshost.toml").read_text(encoding="utf-8")
    if tls:
        text = text.replace("api = true\n", f'api = true\ncertfile = "{tls[0]}"\n'
                            f'keyfile = "{tls[1]}"\n')
    text = text.replace('token = "test-token"\n',
                        f'token = "test-token"\nmax_body_bytes = {LIMIT}\n')
    text = text.replace("[server]\n", f"[server]\nwebhook_fast_path = {str(fast).lower()}\n"
                        f"api_fast_path = {str(fast).lower()}\n"
                        f"shutdown_timeout = {shutdown_timeout}\n")
    (cfg / "smshost.toml").write_text(text + extra, encoding="utf-8")
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    assert not host.plugins.failures, [f.error for f in host.plugins.failures]
    return host


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Live]]:
    """``live()`` starts a server (fast path on unless ``fast=False``); stopped after.

    ``Live.fast_runs`` lists the paths of the webhooks the fast path ran, so a test can
    tell which path answered (both give the same answers by design).
    """
    started: list[Live] = []
    runs: list[str] = []
    original = WebhookCall._run

    def counted(call: WebhookCall) -> None:
        if not call.running:
            runs.append(call.scope["path"])
        original(call)

    monkeypatch.setattr(WebhookCall, "_run", counted)

    def start(fast: bool = True, **options: Any) -> Live:
        server = Live(make_host(tmp_path / f"s{len(started)}", fast=fast, **options))
        server.fast_runs = runs
        started.append(server)
        return server.__enter__()

    yield start
    problems = []
    for server in started:
        try:
            server.__exit__(None, None, None)
        except AssertionError as exc:  # stop the others all the same
            problems.append(str(exc))
    assert not problems, problems


# -- the answer -----------------------------------------------------------------------


def test_uses_the_webhook_protocol_only_when_on(live: Callable[..., Live]) -> None:
    fast, slow = live(), live(fast=False)
    assert issubclass(fast.server.config.http_protocol_class, FastProtocol)
    assert not issubclass(slow.server.config.http_protocol_class, FastProtocol)


@pytest.mark.parametrize("fast", [True, False])
def test_mo_is_stored_and_answered_as_through_asgi(live: Callable[..., Live],
                                                   fast: bool) -> None:
    server = live(fast=fast)
    conn = server.connect()
    conn.send(webhook(mo_body(1), extra="X-Request-Id: broker-req-1\r\n"))
    answer = conn.response()
    conn.close()
    assert (answer.status, answer.json()) == (200, {"ok": True})
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"] == "broker-req-1"
    assert "date" in answer.headers
    (row,) = server.rows()
    assert (row["broker_message_id"], row["remote"], row["body"]) == (
        "fast-1", "+14155550123", "hello")
    assert server.fast_runs == (["/generic/mo"] if fast else [])


def test_forged_signature_is_refused_and_nothing_stored(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    body = mo_body(2)
    now = int(time.time())
    forged = f"X-Timestamp: {now}\r\nX-Signature: {signature(b'other', now)}\r\n"
    conn.send(webhook(body, sign=False, extra=forged))
    answer = conn.response()
    conn.send(webhook(body, sign=False))  # no signature at all
    missing = conn.response()
    conn.close()
    assert (answer.status, missing.status) == (403, 401)
    assert server.rows() == []


def test_retry_gets_the_same_answer_and_one_row(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    answers = []
    for _ in range(3):
        conn.send(webhook(mo_body(3)))
        answers.append(conn.response().status)
    conn.close()
    assert answers == [200, 200, 200]
    assert len(server.rows()) == 1
    assert len(server.fast_runs) == 3


def test_requests_are_counted_as_broker_webhooks(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(webhook(mo_body(4)))
    assert conn.response().status == 200
    conn.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    metrics = conn.response().body.decode()
    conn.close()
    counted = [line for line in metrics.splitlines()
               if line.startswith("smshost_http_requests_total{")
               and 'route="broker_webhook"' in line and 'status="200"' in line]
    assert counted and counted[0].endswith(" 1.0"), counted


# -- one connection, many requests ----------------------------------------------------


def test_keep_alive_mixes_webhooks_and_other_requests(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    statuses = []
    for n, request in enumerate([webhook(mo_body(10)), HEALTH, webhook(mo_body(11)),
                                 webhook(b"{not json"), webhook(mo_body(12))]):
        conn.send(request)
        answer = conn.response()
        statuses.append(answer.status)
        if request is HEALTH:
            assert answer.json()["status"] == "ok", n
    conn.close()
    assert statuses == [200, 200, 200, 400, 200]
    assert [r["broker_message_id"] for r in server.rows()] == ["fast-10", "fast-11", "fast-12"]
    assert len(server.fast_runs) == 4  # /health went to the ASGI app


def test_pipelined_requests_are_answered_in_order(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(webhook(mo_body(20)) + HEALTH + webhook(mo_body(21)) + webhook(mo_body(22)))
    answers = [conn.response() for _ in range(4)]
    conn.close()
    assert [a.status for a in answers] == [200, 200, 200, 200]
    assert answers[1].json()["status"] == "ok"
    assert [a.body for a in (answers[0], answers[2], answers[3])] == [b'{"ok": true}'] * 3
    assert [r["broker_message_id"] for r in server.rows()] == ["fast-20", "fast-21", "fast-22"]
    assert len(server.fast_runs) == 3


def test_http_1_0_is_answered_then_closed(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(webhook(mo_body(30), version="1.0"))
    answer = conn.response()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert conn.closed_by_server()
    conn.close()


def test_connection_close_is_honoured(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(webhook(mo_body(31), extra="Connection: close\r\n"))
    assert conn.response().status == 200
    assert conn.closed_by_server()
    conn.close()


# -- bodies ---------------------------------------------------------------------------


def test_chunked_body_is_read_whole(live: Callable[..., Live]) -> None:
    server = live()
    body = mo_body(40, text="chunked " * 20)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50])
                      for i in range(0, len(body), 50)) + b"0\r\n\r\n"
    conn = server.connect()
    conn.send((f"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
               f"{signed(body)}\r\n").encode() + chunks)
    assert conn.response().status == 200
    conn.close()
    assert server.rows()[0]["body"] == ("chunked " * 20)
    assert server.fast_runs == ["/generic/mo"]


def test_expect_100_continue_gets_a_continue_first(live: Callable[..., Live]) -> None:
    server = live()
    body = mo_body(41)
    request = webhook(body, extra="Expect: 100-continue\r\n")
    head, body_part = request[:len(request) - len(body)], body
    conn = server.connect()
    conn.send(head)
    assert conn.file.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert conn.file.readline() == b"\r\n"
    conn.send(body_part)
    assert conn.response().status == 200
    conn.close()
    assert len(server.rows()) == 1
    assert server.fast_runs == ["/generic/mo"]


def test_declared_body_over_the_limit_is_413_and_closed(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\n"
              + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode() + b"{")
    answer = conn.response()
    assert answer.status == 413 and answer.json()["error"] == "too_large"
    assert answer.headers["connection"] == "close"
    assert conn.closed_by_server()
    conn.close()
    assert server.rows() == [] and server.fast_runs == []


def test_chunked_body_growing_over_the_limit_is_413(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 1024
    try:
        for _ in range(LIMIT // len(chunk) + 2):  # bounded: just over the limit
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except OSError:
        pass  # the server may close while the test still writes
    answer = conn.response()
    conn.close()
    assert answer.status == 413
    assert server.rows() == []


# -- what stays with uvicorn ----------------------------------------------------------


def test_other_methods_and_paths_go_through_asgi(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(webhook(mo_body(50), method="PUT"))
    put = conn.response()
    conn.send(webhook(mo_body(51), path="/generic/m%6F"))  # encoded: not matched here
    encoded = conn.response()
    conn.send(b"GET /generic/mo?healthcheckignore=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    health = conn.response()
    conn.close()
    assert put.status == 405
    assert encoded.status == 200  # the ASGI stack decodes the path and stores it
    assert (health.status, health.body) == (200, b"alive primary")
    assert server.fast_runs == []


def test_garbage_is_400_and_the_server_lives_on(live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(b"POST /generic/mo HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    assert conn.response().status == 400
    conn.close()
    again = server.connect()
    again.send(webhook(mo_body(60)))
    assert again.response().status == 200
    again.close()


def test_a_broker_that_hangs_up_early_still_gets_its_message_stored(
        live: Callable[..., Live]) -> None:
    server = live()
    conn = server.connect()
    conn.send(webhook(mo_body(70)))
    conn.close()  # before reading the answer
    deadline = time.monotonic() + TIMEOUT
    while not server.rows() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r["broker_message_id"] for r in server.rows()] == ["fast-70"]
    assert server.fast_runs == ["/generic/mo"]


@pytest.mark.parametrize("fast", [True, False])
def test_requests_behind_a_413_in_the_same_read_are_not_run(live: Callable[..., Live],
                                                           fast: bool) -> None:
    server = live(fast=fast)
    conn = server.connect()
    too_big = (b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\n"
               + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode() + b"{")
    conn.send(too_big + b"x" * LIMIT + webhook(mo_body(80)) + HEALTH)
    answer = conn.response()
    assert answer.status == 413 and conn.closed_by_server()
    conn.close()
    conn = server.connect()
    conn.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    metrics = conn.response().body.decode()
    assert server.rows() == [] and server.fast_runs == []
    assert not [line for line in metrics.splitlines()
                if line.startswith("smshost_http_requests_total{") and 'route="health"' in line]


# -- a client that does not read ------------------------------------------------------


def test_a_client_that_does_not_read_is_held_back_then_served_in_full(
        live: Callable[..., Live]) -> None:
    """Pipelined webhooks from a client that reads nothing: the server stops reading
    once its answers back up (it buffers neither the answers nor the requests without
    bound: at most one read's worth of requests waits), and serves every one of them
    once the client reads. The server's socket buffer is made small, as a slow link's
    would be (on loopback it grows to 4 MB)."""
    server = live()
    count = 3000  # ~450 kB of answers: well past the socket buffers set here
    requests = [webhook(mo_body(1000 + n)) for n in range(count)]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT * 6)
    sock.connect(("127.0.0.1", server.port))
    conn = Conn(sock)
    server.conns.append(conn)
    connections = server.server.server_state.connections
    deadline = time.monotonic() + TIMEOUT
    while not connections and time.monotonic() < deadline:
        time.sleep(0.01)
    (protocol,) = connections
    protocol.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    sender = threading.Thread(target=sock.sendall, args=(b"".join(requests),), daemon=True)
    sender.start()
    stored, stable_since, queued = -1, time.monotonic(), 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and time.monotonic() - stable_since < 1.5:
        now = len(server.rows())
        queued = max(queued, len(protocol.pipeline))
        if now != stored:
            stored, stable_since = now, time.monotonic()
        time.sleep(0.1)
    assert 0 < stored < count, stored  # held back while the client does not read
    assert queued * len(requests[0]) <= 256 * 1024, queued  # asyncio reads 256 kB at most
    statuses = [conn.response().status for _ in range(count)]
    sender.join(TIMEOUT)
    assert statuses == [200] * count
    assert len(server.rows()) == count


# -- when answering fails ---------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
def test_a_webhook_cut_short_by_shutdown_is_answered_500_and_closed(
        live: Callable[..., Live], fast: bool) -> None:
    """The database is locked by another process, so the webhook's commit waits; the
    server is stopped with a 1 s grace time: the broker gets a 500 (it retries), not a
    silent connection. The message is committed once the lock goes (nothing lost)."""
    server = live(fast=fast, shutdown_timeout=1)
    with write_lock(server.host.store):
        conn = server.connect()
        conn.send(webhook(mo_body(90)))
        time.sleep(0.3)  # the webhook now waits on the lock
        server.server.should_exit = True
        answer = conn.response()
        assert answer.status == 500 and answer.headers["connection"] == "close"
        assert conn.closed_by_server()
    server.__exit__(None, None, None)
    assert [r["broker_message_id"] for r in server.rows()] == ["fast-90"]


def test_a_body_cut_by_a_hang_up_is_not_stored_through_asgi(
        live: Callable[..., Live]) -> None:
    """A form body cut short still parses: the ASGI path must not store what it got."""
    server = live(fast=False, signed=False)
    body = b"id=cut-1&from=%2B14155550123&text=hello+there+this+is+long"
    conn = server.connect()
    conn.send(b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/x-www-form-urlencoded\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:30])
    time.sleep(0.3)
    conn.close()
    complete = server.connect()
    complete.send(b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode()
                  + body.replace(b"cut-1", b"cut-2"))
    assert complete.response().status == 200
    assert [r["broker_message_id"] for r in server.rows()] == ["cut-2"]


# -- HTTPS ----------------------------------------------------------------------------


def test_webhooks_over_https_take_the_fast_path(live: Callable[..., Live],
                                               tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    server = live(tls=(certfile, keyfile))
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    conn = server.connect(tls=trusted)
    conn.send(webhook(mo_body(95)) + webhook(mo_body(96)))
    answers = [conn.response() for _ in range(2)]
    conn.send(HEALTH)
    health = conn.response()
    conn.close()
    assert [a.status for a in answers] == [200, 200] and health.status == 200
    assert [r["broker_message_id"] for r in server.rows()] == ["fast-95", "fast-96"]
    assert len(server.fast_runs) == 2


# -- fuzz -----------------------------------------------------------------------------

FUZZ_HEADERS = ["Content-Type: application/json", "Content-Type: application/x-www-form-urlencoded",
                "Content-Type: text/plain", "Expect: 100-continue", "Connection: close",
                "X-Request-Id: ../../etc", "X-Request-Id: ok-1", "Content-Type: ;;;",
                "X-Signature: zz", "Transfer-Encoding: chunked"]


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["POST", "GET", "PUT", "HEAD"]),
       path=st.sampled_from(["/generic/mo", "/generic/receipt", "/generic/mo?x=%ZZ",
                             "/generic/mo?healthcheckignore=1"]),
       headers=st.lists(st.sampled_from(FUZZ_HEADERS), max_size=4, unique=True),
       body=st.one_of(st.binary(max_size=200), st.dictionaries(
           st.sampled_from(["id", "from", "to", "text", "status", "concat_ref",
                            "concat_total", "concat_part"]),
           st.one_of(st.text(max_size=12), st.integers(-3, 5), st.none()), max_size=6)
           .map(lambda d: json.dumps(d).encode())),
       declared=st.sampled_from(["exact", "short", "none"]),
       trailer=st.sampled_from([b"", b"GARBAGE\r\n\r\n", HEALTH]))
def test_fuzzed_requests_never_get_a_5xx(live: Callable[..., Live], fuzz: dict[str, Live],
                                         method: str, path: str, headers: list[str],
                                         body: bytes, declared: str, trailer: bytes) -> None:
    """Any request to a broker path, with any body framed right or wrong, gets an
    answer under 500, and the server goes on serving."""
    if "server" not in fuzz:
        fuzz["server"] = live(signed=False)
    server = fuzz["server"]
    chunked = "Transfer-Encoding: chunked" in headers
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if chunked:
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                           for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    else:
        payload = body
        if declared != "none":
            length = len(body) if declared == "exact" else max(0, len(body) - 3)
            head.append(f"Content-Length: {length}")
    conn = server.connect()
    conn.send(("\r\n".join(head) + "\r\n\r\n").encode() + payload + trailer)
    line = conn.file.readline()
    if line.startswith(b"HTTP/1.1 100"):
        conn.file.readline()
        line = conn.file.readline()
    # Every request here is well-formed up to its end of headers: it gets an answer
    # (what follows may be garbage, answered after it), with its head complete.
    assert line.startswith(b"HTTP/1.1 "), (line, head, payload[:80])
    status = int(line.split()[1])
    assert 100 <= status < 500, (line, head, payload[:80])
    for _ in range(100):
        header = conn.file.readline()
        assert header, ("the answer's head was cut", line, head)
        if header == b"\r\n":
            break
    conn.close()
    probe = server.connect()
    probe.send(HEALTH)
    assert probe.response().status == 200
    probe.close()


@pytest.fixture
def fuzz() -> dict[str, Live]:
    """One server for every example of a hypothesis test (started by the first)."""
    return {}
