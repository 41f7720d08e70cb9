"""Timeouts and connection limits on every listener (host/web/connections.py, SPEC P12).

Real servers on 127.0.0.1 and raw sockets, with the webhook fast path on and off: small
configured timeouts and bounded waits where the test watches the real sweeper, a fake
clock where it checks the deadlines' arithmetic at the default values.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import pytest
import trustme
import uvloop

from host import openfiles
from host.config import load_settings
from host.core import Host
from host.errors import ConfigErrors
from host.server import _config, _Server
from tests.test_fastpath import HEALTH, TIMEOUT, Conn, Live, make_host, mo_body, webhook
from tests.test_server import Server, base_config, listener, two_ports, write_config

if TYPE_CHECKING:
    from host.web.connections import GuardedProtocol

SMALL = 0.3  # the timeout a test is about
LONG = 30.0  # every other one
WAIT = 3.0  # seconds a client waits for what a small timeout should bring


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Guarded(Live):
    """A :class:`Live` server on a given clock; :meth:`sweep` checks its deadlines now."""

    def __init__(self, host: Host, clock: Callable[[], float],
                 loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
        super().__init__(host, loop_factory)
        self.server = _Server(_config(host, self.listener, clock))
        self.loop: asyncio.AbstractEventLoop | None = None

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        await super()._main()

    def sweep(self) -> None:
        async def sweep() -> None:
            assert self.server.sweeper is not None
            self.server.sweeper.sweep()
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(sweep(), self.loop).result(TIMEOUT)

    def connections(self) -> list[GuardedProtocol]:
        return list(self.server.server_state.connections)  # type: ignore[arg-type]

    def phases(self) -> list[str]:
        """What each connection waits for, sorted."""
        return sorted(c.phase for c in self.connections())

    def eventually(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Whether the server's side meets ``condition`` within ``seconds`` (polled)."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def wait_for(self, condition: Callable[[], bool]) -> None:
        assert self.eventually(condition, TIMEOUT), "the server never got there"


def limits(**values: float) -> str:
    return "\n[server.connections]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Callable[..., Guarded]]:
    """``guarded(fast=..., clock=..., loop=..., **limits)`` starts a server (on asyncio's
    event loop, or with ``loop="uvloop"`` on the one ``smshost serve`` runs); stopped
    after."""
    started: list[Guarded] = []

    def start(fast: bool = True, clock: Callable[[], float] = time.monotonic,
              shutdown_timeout: float = 10.0, tls: tuple[Path, Path] | None = None,
              loop: str = "asyncio", **values: float) -> Guarded:
        host = make_host(tmp_path / f"s{len(started)}", fast=fast, extra=limits(**values),
                         shutdown_timeout=shutdown_timeout, tls=tls)
        server = Guarded(host, clock, uvloop.new_event_loop if loop == "uvloop" else None)
        started.append(server)
        return server.__enter__()  # type: ignore[return-value]

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(cfg, files)`` runs ``smshost serve`` (tests/test_server.py); killed after."""
    servers: list[Server] = []

    def start(cfg: Path, files: int | None = None) -> Server:
        servers.append(Server(tmp_path, cfg, files))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def connect(server: Live) -> Conn:
    conn = server.connect()
    conn.sock.settimeout(WAIT)
    return conn


def silent(conn: Conn, seconds: float = 0.2) -> bool:
    """Nothing arrives on ``conn`` (no answer, no close) for ``seconds``."""
    readable, _, _ = select.select([conn.sock], [], [], seconds)
    return not readable


def closed_after(conn: Conn, since: float) -> float:
    """Seconds from ``since`` until the server closed ``conn`` without a word."""
    assert conn.closed_by_server()
    return time.monotonic() - since


def metric(server: Live, reason: str) -> float:
    for _ in range(50):  # bounded: a listener at its limit answers 503 for a moment
        conn = server.connect()
        conn.send(METRICS)
        answer = conn.response()
        conn.close()
        if answer.status == 200:
            break
        time.sleep(0.05)
    text = answer.body.decode()
    for line in text.splitlines():
        if line.startswith("smshost_connections_closed_total{") and f'"{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


METRICS = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
FAST = pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "asgi"])


# -- with the real sweeper, small timeouts ---------------------------------------------


@FAST
def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(
        guarded: Callable[..., Guarded], fast: bool) -> None:
    server = guarded(fast=fast, idle_timeout=SMALL, header_timeout=LONG, body_timeout=LONG)
    conn = connect(server)
    conn.send(webhook(mo_body(1)))
    assert conn.response().status == 200
    since = time.monotonic()
    assert SMALL * 0.5 <= closed_after(conn, since) < WAIT
    assert metric(server, "idle_timeout") == 1


@FAST
def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
        guarded: Callable[..., Guarded], fast: bool) -> None:
    server = guarded(fast=fast, header_timeout=SMALL, idle_timeout=LONG, body_timeout=LONG)
    since = time.monotonic()
    conn = connect(server)
    assert closed_after(conn, since) < WAIT  # closed, and no 408: nothing was asked


def test_a_tls_handshake_that_never_comes_is_cut_after_the_header_timeout(
        guarded: Callable[..., Guarded], tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    server = guarded(tls=(certfile, keyfile), header_timeout=SMALL)
    since = time.monotonic()
    conn = connect(server)  # plain TCP: no ClientHello ever comes
    try:
        ended = conn.sock.recv(1)
    except ConnectionResetError:
        ended = b""
    assert ended == b"" and time.monotonic() - since < WAIT


@FAST
def test_a_head_that_never_ends_gets_408_then_close(guarded: Callable[..., Guarded],
                                                   fast: bool) -> None:
    server = guarded(fast=fast, header_timeout=SMALL, idle_timeout=LONG, body_timeout=LONG)
    first = connect(server)
    first.send(b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
    # On a kept-alive connection the next head's deadline runs from its first byte.
    later = connect(server)
    later.send(HEALTH)
    assert later.response().status == 200
    time.sleep(SMALL)  # longer than the timeout, but this head has not begun
    later.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    since = time.monotonic()
    for conn in (first, later):
        answer = conn.response()
        assert answer.status == 408 and answer.headers["connection"] == "close"
        assert answer.json()["error"] == "timeout"
        assert conn.closed_by_server()
    assert SMALL * 0.5 <= time.monotonic() - since < WAIT
    assert metric(server, "header_timeout") == 2


@FAST
@pytest.mark.parametrize("target", ["webhook", "api"])
def test_a_body_that_never_ends_gets_408_then_close(
        guarded: Callable[..., Guarded], fast: bool, target: str,
        caplog: pytest.LogCaptureFixture) -> None:
    server = guarded(fast=fast, body_timeout=SMALL, header_timeout=LONG, idle_timeout=LONG)
    body = mo_body(2)
    if target == "webhook":
        head = webhook(body)[:-len(body)]
    else:
        head = (f"POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer test-token\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
    conn = connect(server)
    conn.send(head + body[:10])
    since = time.monotonic()
    answer = conn.response()
    assert answer.status == 408 and answer.headers["connection"] == "close"
    assert conn.closed_by_server()
    assert SMALL * 0.5 <= time.monotonic() - since < WAIT
    assert server.rows() == []
    assert metric(server, "body_timeout") == 1
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@FAST
def test_past_the_limit_a_connection_gets_503_and_is_closed(
        guarded: Callable[..., Guarded], fast: bool) -> None:
    server = guarded(fast=fast, limit=3)
    held = [connect(server) for _ in range(3)]
    over = connect(server)
    answer = over.response()
    assert answer.status == 503 and answer.json()["error"] == "busy"
    assert answer.headers["retry-after"] == "5"  # as every 503 (issue 11, second review)
    assert answer.headers["connection"] == "close" and over.closed_by_server()
    assert all(silent(conn, 0.05) for conn in held)  # still open, still waiting
    held.pop().close()
    for _ in range(50):  # bounded: until the server saw the hang-up
        again = connect(server)
        again.send(HEALTH)
        if again.response().status == 200:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the freed place was never given to a new connection")
    for conn in (*held, again):
        conn.close()
    assert metric(server, "limit") >= 1


# -- on a fake clock, default timeouts -------------------------------------------------


@FAST
def test_deadlines_follow_the_clock(guarded: Callable[..., Guarded], fast: bool) -> None:
    """Defaults: header 10 s, body 30 s, idle 5 s, each from where the module text says."""
    clock = FakeClock()
    server = guarded(fast=fast, clock=clock)
    nothing = connect(server)
    head = connect(server)
    head.send(b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    kept = connect(server)
    kept.send(HEALTH)
    assert kept.response().status == 200
    body = connect(server)
    server.wait_for(lambda: server.phases() == ["header", "header", "header", "idle"])
    clock.now += 1
    body.send(webhook(mo_body(3))[:-5])  # its body's deadline: 1 + 30 s
    server.wait_for(lambda: server.phases() == ["body", "header", "header", "idle"])

    clock.now += 3.9
    server.sweep()
    assert all(silent(c) for c in (nothing, head, kept, body))
    clock.now += 0.2  # 5.1 s: idle
    server.sweep()
    assert kept.closed_by_server()
    assert all(silent(c) for c in (nothing, head, body))
    clock.now += 4.8  # 9.9 s
    server.sweep()
    assert all(silent(c) for c in (nothing, head, body))
    clock.now += 0.2  # 10.1 s: header
    server.sweep()
    assert nothing.closed_by_server()
    assert head.response().status == 408
    assert silent(body)
    clock.now += 20.8  # 30.9 s: 29.9 s since the body's head ended
    server.sweep()
    assert silent(body)
    clock.now += 0.2
    server.sweep()
    assert body.response().status == 408
    assert server.rows() == []


def test_a_client_that_does_not_read_is_cut_after_the_write_timeout_even_at_shutdown(
        guarded: Callable[..., Guarded]) -> None:
    """Answers back up behind a client that reads nothing; a graceful shutdown waits
    for it no longer than the write timeout (30 s by default), not its own 60 s."""
    clock = FakeClock()
    server = guarded(clock=clock, shutdown_timeout=60.0)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    server.conns.append(Conn(sock))
    sender = threading.Thread(target=_send_all, args=(sock, METRICS * 2000), daemon=True)
    sender.start()  # ~10 MB of answers asked for (~5 kB each), none read

    def stalled() -> list[GuardedProtocol]:
        return [c for c in server.connections() if c.stalled_since is not None]

    server.wait_for(lambda: bool(stalled()))
    cut = stalled()[0]
    server.server.should_exit = True
    time.sleep(0.3)  # the shutdown begins and waits for the connection
    clock.now += 29.9
    server.sweep()
    assert server.thread.is_alive() and cut in server.connections()
    clock.now += 0.2
    server.sweep()
    server.thread.join(TIMEOUT)
    assert not server.thread.is_alive(), "the shutdown still waits for the connection"
    sender.join(TIMEOUT)


def _send_all(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # cut by the server: what the test waits for


# -- a client that hangs up while pipelining -------------------------------------------


@FAST
@pytest.mark.parametrize("kind", ["webhook", "other"])
def test_a_pipelining_client_that_hangs_up_leaves_no_error(
        guarded: Callable[..., Guarded], fast: bool, kind: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A client pipelines requests without reading the answers, then hangs up while an
    answer waits for room. The request being answered is not the last one read, which
    is the only one uvicorn marked disconnected: woken by the hang-up it wrote to the
    closed transport, and uvloop (what ``smshost serve`` runs) raised: two tracebacks
    per connection."""
    server = guarded(fast=fast, loop="uvloop")
    one = (webhook(mo_body(1)) if kind == "webhook"
           else b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    server.wait_for(lambda: len(server.connections()) == 1)
    (protocol,) = server.connections()
    protocol.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setblocking(False)
    data, sent = one * 5000, 0
    deadline = time.monotonic() + TIMEOUT
    try:
        while protocol.stalled_since is None and time.monotonic() < deadline:
            try:
                sent += sock.send(data[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        assert protocol.stalled_since is not None, "the answers never backed up"
    finally:
        sock.close()  # answers unread: a reset
    server.wait_for(lambda: not server.connections() and not server.server.server_state.tasks)
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] \
        == []


# -- the head of a request -------------------------------------------------------------

HEAD_LIMIT = 4096
BIG = "a" * (HEAD_LIMIT + 1)


@FAST
@pytest.mark.parametrize(("request_", "status", "message"), [
    (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {BIG}\r\n\r\n".encode(), 431,
     f"request head over {HEAD_LIMIT} bytes"),
    (f"GET /health?{BIG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), 414,
     f"request URL over {HEAD_LIMIT} bytes"),
    (b"GET /health HTTP/1.1\r\n" + b"X-N: 1\r\n" * 21 + b"\r\n", 431,
     "more than 20 header lines"),
    (webhook(mo_body(7), extra=f"X-Big: {BIG}\r\n"), 431,
     f"request head over {HEAD_LIMIT} bytes"),
    (b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Type: application/json\r\n\r\n1\r\n{\r\n0\r\n"
     + f"X-Trailer: {BIG}\r\n\r\n".encode(), 431, f"request head over {HEAD_LIMIT} bytes"),
], ids=["header", "url", "lines", "webhook", "trailer"])
def test_a_head_over_the_limit_is_refused_and_closed(
        guarded: Callable[..., Guarded], fast: bool, request_: bytes, status: int,
        message: str) -> None:
    server = guarded(fast=fast, max_head_bytes=HEAD_LIMIT, max_header_lines=20,
                     header_timeout=LONG)
    within = connect(server)
    within.send(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Ok: {BIG[:3900]}\r\n"
                .encode() + b"X-N: 1\r\n" * 18 + b"\r\n")
    assert within.response().status == 200
    conn = connect(server)
    conn.send(request_)
    answer = conn.response()
    assert (answer.status, answer.json()) == (status, {"error": "too_large",
                                                       "message": message})
    assert answer.headers["connection"] == "close" and conn.closed_by_server()
    assert server.rows() == [] and server.fast_runs == []
    assert metric(server, "head_too_large") == 1


@FAST
def test_a_head_that_never_ends_is_cut_at_the_limit_not_at_the_timeout(
        guarded: Callable[..., Guarded], fast: bool) -> None:
    """One header line that never ends: httptools keeps it whole until it does, so the
    server held all of it until the header timeout (+37 MB for 40 MB sent, measured)."""
    server = guarded(fast=fast, max_head_bytes=HEAD_LIMIT, header_timeout=LONG)
    conn = connect(server)
    conn.send(b"POST /generic/mo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    for _ in range(4):
        conn.send(b"a" * HEAD_LIMIT)
    answer = conn.response()  # within WAIT, not the header timeout
    assert answer.status == 431 and conn.closed_by_server()
    assert metric(server, "head_too_large") == 1


@FAST
@pytest.mark.parametrize("last", ["garbage", "head over the limit"])
def test_a_refused_request_is_answered_after_the_ones_before_it(
        guarded: Callable[..., Guarded], fast: bool, last: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn answered a request it could not parse at once, before the answers still
    due to the requests pipelined ahead of it, and those were then lost (or, on
    uvloop, written to the closed transport: two tracebacks)."""
    server = guarded(fast=fast, loop="uvloop", max_head_bytes=HEAD_LIMIT)
    refused = (b"NOT HTTP AT ALL\r\n\r\n" if last == "garbage"
               else f"GET /health HTTP/1.1\r\nX-Big: {BIG}\r\n\r\n".encode())
    conn = connect(server)
    conn.send(webhook(mo_body(8)) + HEALTH + HEALTH + refused + HEALTH)
    statuses = [conn.response().status for _ in range(4)]
    assert statuses == [200, 200, 200, 400 if last == "garbage" else 431]
    assert conn.closed_by_server()
    assert [r["broker_message_id"] for r in server.rows()] == ["fast-8"]
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] \
        == []


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc/PID/status")
def test_endless_heads_do_not_grow_the_server(tmp_path: Path,
                                              serve: Callable[..., Server]) -> None:
    """``smshost serve``; five connections each send one header line of 20 MB that never
    ends. Each is answered 431 at the limit (32 KiB by default) and the rest is dropped:
    the server does not grow by what was sent (+176 MB for 5 x 60 MB, measured before)."""
    port = two_ports()[0]
    server = serve(write_config(tmp_path, base_config(tmp_path, port=port)))
    server.wait_healthy(f"http://127.0.0.1:{port}/health")
    before = _rss_bytes(server.proc.pid)
    chunk = b"a" * (1 << 20)
    socks, answers = [], []
    try:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            socks.append(sock)
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
                for _ in range(20):
                    sock.sendall(chunk)
            except OSError:
                pass  # the server stopped reading: what the test wants
        grown = _rss_bytes(server.proc.pid) - before
        for sock in socks:
            try:
                answers.append(sock.recv(4096).split(b"\r\n", 1)[0])
            except OSError as exc:
                answers.append(str(exc).encode())
    finally:
        for sock in socks:
            sock.close()
    assert grown < 8 << 20, f"the server grew by {grown / (1 << 20):.0f} MB"
    assert answers == [b"HTTP/1.1 431 Request Header Fields Too Large"] * 5


# -- one listener's flood, the others answer -------------------------------------------


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/PID/fd")
def test_a_flood_on_a_broker_listener_leaves_the_api_answering(
        tmp_path: Path, serve: Callable[..., Server]) -> None:
    """``smshost serve`` with 160 open files at most; 200 idle connections to the broker
    listener (its limit: 20). Without limits the flood took every descriptor and no
    listener accepted anything; the API listener's default limit (1000) does not fit
    either, and is lowered."""
    api_port, hooks_port = two_ports()
    hooks = listener("hooks", hooks_port) + "connections = { limit = 20 }\n"
    cfg = write_config(tmp_path, base_config(tmp_path, port=api_port, extra=hooks))
    server = serve(cfg, files=160)
    api = f"http://127.0.0.1:{api_port}"
    server.wait_healthy(f"{api}/health")
    before = _open_files(server.proc.pid)
    flood = []
    try:
        for _ in range(200):
            flood.append(socket.create_connection(("127.0.0.1", hooks_port), timeout=WAIT))
        answered = _answers(flood, 180)
        assert len(answered) == 180 and all(a.startswith(b"HTTP/1.1 503 ") for a in answered)
        with httpx2.Client(trust_env=False, timeout=WAIT) as http:
            assert http.get(f"{api}/health").status_code == 200
            assert http.get(f"http://127.0.0.1:{hooks_port}/health").status_code == 503
        assert _open_files(server.proc.pid) <= before + 20 + 5
    finally:
        for sock in flood:
            sock.close()
    # 160 files: the API listener's limit is lowered to fit (160 - 40 - 20), hooks' kept.
    assert "lowered to hooks 20, admin 100" in server.output
    assert server.proc.poll() is None, server.output


def _answers(socks: list[socket.socket], expected: int) -> list[bytes]:
    """What the server sent on the sockets it answered and closed (bounded wait)."""
    answers: dict[int, bytes] = {}
    deadline = time.monotonic() + 10
    while len(answers) < expected and time.monotonic() < deadline:
        waiting = [s for s in socks if s.fileno() not in answers]
        readable, _, _ = select.select(waiting, [], [], 0.2)
        for sock in readable:
            answers[sock.fileno()] = sock.recv(4096)
    return list(answers.values())


# -- settings --------------------------------------------------------------------------


def test_limits_out_of_range_are_clear_errors(tmp_path: Path) -> None:
    text = base_config(tmp_path, port=8080, extra=(
        listener("hooks", 8081) + "connections = { limit = 0 }\n"
        "\n[server.connections]\nheader_timeout = 0\nidle_timeout = 7200\n"
        "max_head_bytes = 100\nmax_header_lines = 0\n"))
    cfg = write_config(tmp_path, text)
    with pytest.raises(ConfigErrors) as info:
        load_settings(cfg)
    found = {e.key: (e.line, e.message) for e in info.value.errors}
    lines = text.splitlines()
    assert found == {
        "listeners[1].connections.limit": (
            lines.index("connections = { limit = 0 }") + 1,
            "must be between 1 and 1000000 connections; got 0"),
        "server.connections.header_timeout": (
            lines.index("header_timeout = 0") + 1,
            "must be more than 0 and at most 3600 seconds; got 0.0"),
        "server.connections.idle_timeout": (
            lines.index("idle_timeout = 7200") + 1,
            "must be more than 0 and at most 3600 seconds; got 7200.0"),
        "server.connections.max_head_bytes": (
            lines.index("max_head_bytes = 100") + 1,
            "must be between 1024 and 1048576 bytes; got 100"),
        "server.connections.max_header_lines": (
            lines.index("max_header_lines = 0") + 1,
            "must be between 1 and 10000 lines; got 0"),
    }


def test_a_listener_takes_its_own_values_and_the_server_s_for_the_rest(
        tmp_path: Path) -> None:
    port = two_ports()[1]
    text = base_config(tmp_path, port=8080, extra=(
        listener("hooks", port) + "connections = { limit = 20, idle_timeout = 60 }\n"
        "\n[server.connections]\nheader_timeout = 4\n"))
    settings = load_settings(write_config(tmp_path, text))
    server = settings.server.connections
    admin, hooks = (server.with_overrides(lst.connections) for lst in settings.listeners)
    assert (admin.limit, admin.header_timeout, admin.idle_timeout) == (1000, 4.0, 5.0)
    assert (hooks.limit, hooks.header_timeout, hooks.idle_timeout) == (20, 4.0, 60.0)


@pytest.mark.parametrize(("wanted", "budget", "fitted"), [
    ({"admin": 1000, "hooks": 20}, 120, {"admin": 100, "hooks": 20}),
    ({"admin": 1000, "hooks": 1000}, 768, {"admin": 384, "hooks": 384}),
    ({"a": 10, "b": 500, "c": 500}, 400, {"a": 10, "b": 195, "c": 195}),
    ({"a": 5, "b": 5}, 1, {"a": 1, "b": 1}),
])
def test_connection_limits_share_the_open_files_left(
        wanted: dict[str, int], budget: int, fitted: dict[str, int]) -> None:
    assert openfiles.share(wanted, budget) == fitted
