"""The outbound side under test: a real smshost, a fake broker and a fake proxy on loopback.

* :class:`FakeBroker` is the far edge: an HTTP server on 127.0.0.1 (a thread) that records
  every request and answers as a test scripts it: at once, after a hold, or never.
* :class:`Smshost` is a real smshost: a :class:`~host.core.Host` served by uvicorn on a
  127.0.0.1 socket in a thread (API, broker webhooks, the outbox worker), driven over
  HTTP with ``httpx2``; its database is read with a separate SQLite connection.
* :class:`ForwardProxy` is an HTTP proxy (absolute-form request lines, CONNECT refused
  unless authorized) that checks and records ``Proxy-Authorization``.

Every wait is bounded in count and in time (:func:`wait_until`); every server and thread
started here is stopped here.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import sqlite3
import ssl
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
import trustme
import uvicorn

from host.config import load_settings
from host.core import Host
from host.pg.database import PgDatabase, connect
from host.pg.writer import WRITE_LOCK
from host.store import Store
from tests.conftest import ServerThread
from tests.conftest import free_port as conftest_free_port, write_lock

LOOPBACK = "127.0.0.1"
WAIT = 15.0  # seconds: the bound of every wait on the running host
POLL = 0.02
HOLD_MAX = 30.0  # seconds: a held broker answer is released after this at the latest
TOKEN = "test-token"
OUR_NUMBER = "+14155550100"
OTHER_NUMBER = "+14155550199"
PHONE = "+14155550123"  # valid for phonenumbers (US, 415)

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], *, timeout: float = WAIT, what: str = "",
               explain: Callable[[], str] = lambda: "") -> T:
    """Poll ``check`` until it returns something truthy; bounded in time and count."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL) + 2):
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(POLL)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{explain()}")


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    sock.listen(128)
    return sock


def free_port() -> int:
    return conftest_free_port()  # a range per pytest-xdist worker (tests/conftest.py)


# -- the fake broker -----------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the fake broker received it."""

    method: str
    target: str  # the request line's target (absolute-form when it came through a proxy)
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    @property
    def ref(self) -> str | None:
        """smshost's reference (message id) in the request, as each broker carries it."""
        if self.body[:1] == b"{":
            data = self.json
            return str(data.get("ref") or "") or None
        for source in (self.query, self.form if self.body else {}):
            for name in ("ref", "client-ref"):
                if name in source:
                    return source[name][0]
        dlr = self.query.get("dlr-url")
        if dlr:
            return parse_qs(urlsplit(dlr[0]).query).get("ref", [None])[0]
        return None

    @property
    def text(self) -> str | None:
        if self.body[:1] == b"{":
            return self.json.get("text")  # type: ignore[no-any-return]
        merged = {**self.query, **(self.form if self.body else {})}
        for name in ("text", "Body"):
            if name in merged:
                return merged[name][0]
        return None


@dataclass
class Reply:
    """How the fake broker answers one request.

    ``hold``: wait for this event first (at most HOLD_MAX s; released on stop).
    ``before``: run this before answering (e.g. post a receipt to smshost first).
    ``hang_up``: close the connection without answering (after any hold).
    """

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    before: Callable[[], None] | None = None
    hang_up: bool = False

    def payload(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain"
        return json.dumps(self.body).encode(), "application/json"


Respond = Callable[[Seen, int], Reply]


def generic_ok(seen: Seen, n: int) -> Reply:
    """The generic broker's documented success: 2xx with {"id": ...} (B-<our ref>)."""
    return Reply(200, {"id": f"B-{seen.ref}"})


class TlsCapableServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1, over TLS when given a server context (the
    handshake runs in the request's thread; a client that refuses the certificate only
    ends its own connection)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, *,
                 tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address


def tls_pair(tmp_path: Path, name: str = "ca") -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 signed by a fresh test CA, and that CA's PEM file."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOOPBACK).configure_cert(server)
    ca_file = tmp_path / f"{name}.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, ca_file


class FakeBroker:
    """A broker's HTTP API on 127.0.0.1: records every request, answers by ``respond``."""

    def __init__(self, respond: Respond = generic_ok, *, tls: ssl.SSLContext | None = None
                 ) -> None:
        self.respond = respond
        self.tls = tls  # serve HTTPS with this server-side context
        self.requests: list[Seen] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._running: ServerThread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}"

    def start(self) -> FakeBroker:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(self.command, self.path, parts.path,
                            parse_qs(parts.query, keep_blank_values=True),
                            {k.lower(): v for k, v in self.headers.items()}, body)
                with fake._lock:
                    fake.requests.append(seen)
                    n = len(fake.requests)
                try:
                    reply = fake.respond(seen, n)
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    fake.errors.append(f"{type(exc).__name__}: {exc}")
                    reply = Reply(599, {"error": "the fake broker's script failed"})
                if reply.hold is not None:
                    deadline = time.monotonic() + HOLD_MAX
                    while not reply.hold.is_set() and not fake._stopping.is_set() \
                            and time.monotonic() < deadline:
                        reply.hold.wait(0.05)
                if reply.hang_up or fake._stopping.is_set():
                    self.close_connection = True
                    return
                if reply.before is not None:
                    try:
                        reply.before()
                    except Exception as exc:  # noqa: BLE001 - reported by the test
                        fake.errors.append(f"before: {type(exc).__name__}: {exc}")
                data, content_type = reply.payload()
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = do_PUT = _handle  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        class Server(TlsCapableServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that went away (timeouts, kill -9): nothing to report

        self._server = Server((LOOPBACK, 0), Handler, tls=self.tls)
        self._running = ServerThread(self._server).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._running is not None:
            self._running.stop()
            self._running, self._server = None, None

    def __enter__(self) -> FakeBroker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what it saw ---------------------------------------------------------------------

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self.requests)

    def refs(self) -> Counter[str | None]:
        """How many requests carried each of smshost's references (message ids)."""
        return Counter(s.ref for s in self.seen())

    def wait_requests(self, count: int, timeout: float = WAIT) -> list[Seen]:
        return wait_until(lambda: (got := self.seen()) and len(got) >= count and got,
                          timeout=timeout, what=f"{count} request(s) at the fake broker",
                          explain=lambda: f"got {self.seen()}")


@pytest.fixture
def fake_broker() -> Iterator[FakeBroker]:
    with FakeBroker() as fake:
        yield fake


# -- smshost --------------------------------------------------------------------------------


def generic_toml(gateway: str, *, name: str = "gen", extra: str = "",
                 accounts: tuple[tuple[str, str], ...] = (("main", OUR_NUMBER),),
                 password: str = "broker-token-1", encryption: str = "http") -> str:
    """A generic broker instance sending to ``gateway`` (plain HTTP by default)."""
    text = textwrap.dedent(f"""
        [[brokers]]
        name = "{name}"
        definition = "generic"
        encryption = "{encryption}"
        mt.gateway = "{gateway}"
        """) + textwrap.dedent(extra) + "\n"
    if name != "gen":  # brokers sharing a port need their own webhook paths
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\nmo.path = "/{name}/mo"\n'
                            f'mo.receipt_path = "/{name}/receipt"\n', 1)
    for account, number in accounts:
        text += textwrap.dedent(f"""
            [[brokers.accounts]]
            id = "{account}"
            password = "{password}"
            local_address = "{number}"
            """)
    return text


def _client() -> dict[str, str]:
    kind = os.environ.get("SMSHOST_TEST_HTTP_CLIENT")
    return {"http_client": kind} if kind else {}


def outbox_toml(**values: Any) -> str:
    """An ``[outbox]`` table; tests keep the delays tiny and the jitter off.
    ``SMSHOST_TEST_HTTP_CLIENT=aiohttp`` (or curl) runs them with that HTTP client."""
    merged = {"first_delay": 0.01, "factor": 2.0, "max_delay": 1.0, "jitter": 0.0,
              **_client(), **values}
    lines = ["[outbox]"]
    for key, value in merged.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write_config(root: Path, port: int, *, brokers: str, routes: str = "", sinks: str = "",
                 outbox: str | None = None, public_url: str | None = None,
                 shutdown_timeout: float = 2.0, extra: str = "",
                 plugin_dirs: tuple[Path, ...] = ()) -> Path:
    """A config directory under ``root``: shipped plugins (and ``plugin_dirs``: handler
    scripts in their handlers/), one API listener on ``port``."""
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    public = public_url or f"http://{LOOPBACK}:{port}"
    (cfg / "smshost.toml").write_text(textwrap.dedent(f"""\
        [server]
        data_dir = "{root / 'data'}"
        public_url = "{public}"
        shutdown_timeout = {shutdown_timeout}

        [[listeners]]
        name = "admin"
        port = {port}
        api = true

        [api]
        token = "{TOKEN}"

        [purge]
        enabled = false

        [handlers]
        watch = false

        [plugins]
        dirs = {json.dumps([str(d) for d in plugin_dirs])}
        entry_points = false
        """) + (outbox if outbox is not None else outbox_toml()) + textwrap.dedent(extra))
    (cfg / "brokers.toml").write_text(brokers)
    if "[routing]" not in routes and "[[inbound]]" not in routes:
        routes += "\n[routing]\nenabled = false\n"  # no inbound routes: MO are only stored
    (cfg / "routes.toml").write_text(routes)
    (cfg / "sinks.toml").write_text(sinks)
    return cfg


def side_rows(store: Store, sql: str, args: list[Any] | tuple[Any, ...] = ()
              ) -> list[dict[str, Any]]:
    """The rows of ``sql`` (SQLite's dialect) read on a connection of their own, as
    another program (or a restart) sees the store: its SQLite file read-only, or its
    PostgreSQL database (SMSHOST_TEST_STORE=postgresql) with the statement translated."""
    url = getattr(store, "url", None)
    if url is not None:
        db = PgDatabase(connect(url))
        try:
            return list(db.query(sql, list(args)))
        finally:
            db.close()
    conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, list(args))]
    finally:
        conn.close()


def side_write(store: Store, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> int:
    """One write ``sql`` on a connection of its own, committed at once; rows changed."""
    url = getattr(store, "url", None)
    if url is not None:
        db = PgDatabase(connect(url))
        try:
            return db.execute(sql, list(args)).rowcount
        finally:
            db.close()
    conn = sqlite3.connect(store.path, timeout=10)
    try:
        conn.execute("pragma foreign_keys = on")  # as smshost's connections (cascades)
        with conn:
            return conn.execute(sql, list(args)).rowcount
    finally:
        conn.close()


@contextmanager
def side_lock(store: Store) -> Iterator[None]:
    """Hold the store's write lock from another connection, as another process would
    (``smshost purge`` beside the server): on SQLite its writes wait busy_timeout, then
    fail; on PostgreSQL they wait for the cluster's write lock (host.pg.writer)."""
    url = getattr(store, "url", None)
    if url is None:
        with write_lock(store.path):
            yield
        return
    conn = connect(url)
    try:
        conn.execute("select pg_advisory_lock(%s)", [WRITE_LOCK])
        yield
    finally:
        conn.close()


class Smshost:
    """A real smshost on 127.0.0.1: uvicorn serving the Host in a thread."""

    def __init__(self, root: Path, *, brokers: str, routes: str = "", sinks: str = "",
                 outbox: str | None = None, public_url: str | None = None,
                 shutdown_timeout: float = 2.0, extra: str = "",
                 plugin_dirs: tuple[Path, ...] = (),
                 prepare: Callable[[Host], None] | None = None) -> None:
        self.root = root
        self.sock = bound_socket()
        self.port = int(self.sock.getsockname()[1])
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.cfg = write_config(root, self.port, brokers=brokers, routes=routes, sinks=sinks,
                                outbox=outbox, public_url=public_url,
                                shutdown_timeout=shutdown_timeout, extra=extra,
                                plugin_dirs=plugin_dirs)
        self.plugin_dirs = plugin_dirs
        self.prepare = prepare
        self.host: Host | None = None
        self.api = httpx2.Client(base_url=self.base, trust_env=False, timeout=10.0,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def db_path(self) -> Path:
        return self.root / "data" / "smshost.db"

    def start(self) -> Smshost:
        host = Host(load_settings(self.cfg), config_dir=self.cfg)
        host.load_plugins()
        problems = [r.error for r in host.plugins.failures]
        assert not problems, problems
        if self.prepare is not None:
            self.prepare(host)
        self.host = host
        if self.sock.fileno() == -1:  # a restart: the same port again
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((LOOPBACK, self.port))
            self.sock.listen(128)
        self._server = uvicorn.Server(uvicorn.Config(
            host.app_for(), log_config=None, access_log=False, proxy_headers=False,
            server_header=False, lifespan="on", timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self.sock]}, daemon=True)
        self._thread.start()
        server, thread = self._server, self._thread
        wait_until(lambda: server.started or not thread.is_alive(), timeout=WAIT,
                   what="smshost to start")
        assert server.started, "smshost did not start"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "smshost did not stop"
            self._thread = None
        self._server = None
        self.sock.close()

    def close(self) -> None:
        self.stop()
        self.api.close()

    def restart(self, **changes: Any) -> Smshost:
        """Stop, optionally rewrite parts of the configuration, start again (same data)."""
        self.stop()
        if changes:
            self.cfg = write_config(self.root, self.port, **{
                "brokers": (self.cfg / "brokers.toml").read_text(),
                "routes": (self.cfg / "routes.toml").read_text(),
                "sinks": (self.cfg / "sinks.toml").read_text(),
                "plugin_dirs": self.plugin_dirs, **changes})
        return self.start()

    # -- the API ---------------------------------------------------------------------

    def send(self, key: str | None = None, **payload: Any) -> httpx2.Response:
        headers = {"Idempotency-Key": key} if key is not None else {}
        return self.api.post("/api/messages", json=payload, headers=headers)

    def queued(self, **payload: Any) -> dict[str, Any]:
        """Send and expect 201; the answer's body."""
        answer = self.send(**payload)
        assert answer.status_code == 201, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def message(self, message_id: int) -> dict[str, Any]:
        answer = self.api.get(f"/api/messages/{message_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def wait_status(self, message_id: int, *statuses: str,
                    timeout: float = WAIT) -> dict[str, Any]:
        return wait_until(
            lambda: (m := self.message(message_id))["status"] in statuses and m,
            timeout=timeout, what=f"message {message_id} to become {' or '.join(statuses)}",
            explain=lambda: json.dumps(self.message(message_id), indent=1))

    def wait_events(self, message_id: int, count: int, timeout: float = WAIT
                    ) -> list[dict[str, Any]]:
        return wait_until(
            lambda: len(events := self.message(message_id)["events"]) >= count and events,
            timeout=timeout, what=f"{count} status events of message {message_id}",
            explain=lambda: json.dumps(self.message(message_id), indent=1))

    # -- the database, read on the side -------------------------------------------------

    def rows(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """The rows of ``sql`` (SQLite's dialect), read on the side of the running node."""
        assert self.host is not None
        return side_rows(self.host.store, sql, args)

    def write(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> int:
        """Run one write ``sql`` on the side of the running node (committed at once, as
        another program would); the rows it changed."""
        assert self.host is not None
        return side_write(self.host.store, sql, args)

    def outbound(self) -> list[dict[str, Any]]:
        rows = self.rows("select * from messages where direction = 'out' order by id")
        for row in rows:
            row["attrs"] = json.loads(row["attrs"] or "{}")
        return rows


@pytest.fixture
def smshost(tmp_path: Path) -> Iterator[Callable[..., Smshost]]:
    """``smshost(brokers=..., routes=..., outbox=...)`` → a started :class:`Smshost`."""
    started: list[Smshost] = []

    def make(**kwargs: Any) -> Smshost:
        root = tmp_path / f"node{len(started)}"
        node = Smshost(root, **kwargs)
        started.append(node)
        return node.start()

    yield make
    for node in reversed(started):
        node.close()


def statuses(message: dict[str, Any]) -> list[str]:
    return [e["status"] for e in message["events"]]


# -- an HTTP proxy ----------------------------------------------------------------------------


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


@dataclass
class Proxied:
    request_line: str
    proxy_authorization: str | None
    answered: int


class ForwardProxy:
    """A forwarding HTTP proxy on 127.0.0.1 that requires ``Proxy-Authorization``.

    Absolute-form requests (``POST http://127.0.0.1:P/x HTTP/1.1``) with the right
    credentials are forwarded to 127.0.0.1 only (without the Proxy-Authorization
    header); anything else is answered 407. ``CONNECT`` is answered 407 without the
    right credentials and 501 with them (no tunnel: the tests do not need one).
    """

    def __init__(self, login: str, password: str, *, tls: ssl.SSLContext | None = None
                 ) -> None:
        self.expected = basic(login, password)
        self.tls = tls  # clients reach the proxy itself over TLS
        self.seen: list[Proxied] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._running: ServerThread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> ForwardProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self, status: int) -> None:
                with proxy._lock:
                    proxy.seen.append(Proxied(self.requestline,
                                              self.headers.get("Proxy-Authorization"), status))

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def _refuse(self) -> None:
                self._record(407)
                self._answer(407, b"proxy authentication required",
                             {"Proxy-Authenticate": 'Basic realm="test"',
                              "Content-Type": "text/plain"})

            def do_CONNECT(self) -> None:  # noqa: N802 - http.server's name
                if self.headers.get("Proxy-Authorization") != proxy.expected:
                    self._refuse()
                    return
                self._record(501)
                self._answer(501, b"no tunnels here", {"Content-Type": "text/plain"})

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Proxy-Authorization") != proxy.expected:
                    self._refuse()
                    return
                target = urlsplit(self.path)
                if target.scheme != "http" or target.hostname != LOOPBACK:
                    self._record(403)
                    self._answer(403, b"loopback only", {"Content-Type": "text/plain"})
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in (
                    "proxy-authorization", "proxy-connection", "connection", "keep-alive",
                    "host", "content-length")}
                upstream = http.client.HTTPConnection(LOOPBACK, target.port, timeout=20)
                try:
                    upstream.request(self.command, target.path + (
                        f"?{target.query}" if target.query else ""), body=body or None,
                        headers={**headers, "Host": target.netloc})
                    answer = upstream.getresponse()
                    data = answer.read()
                    status = answer.status
                    passed = {k: v for k, v in answer.getheaders() if k.lower() not in (
                        "connection", "transfer-encoding", "content-length", "keep-alive")}
                finally:
                    upstream.close()
                self._record(status)
                self._answer(status, data, passed)

            do_GET = do_POST = do_PUT = _forward  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        class Server(TlsCapableServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self._server = Server((LOOPBACK, 0), Handler, tls=self.tls)
        self._running = ServerThread(self._server).start()
        return self

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running, self._server = None, None

    def records(self) -> list[Proxied]:
        with self._lock:
            return list(self.seen)
