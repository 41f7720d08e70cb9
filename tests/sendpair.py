"""The pair of servers of tests/test_fastpath_send.py: one answering the send API from
the protocol (host/web/api/fastsend.py), one through the ASGI stack, and how their
answers are read and compared over raw sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from host.web.api.fastsend import SendCall
from tests.test_fastpath import HEALTH, TIMEOUT, Conn, Live, Response

PHONE = "+14155550123"
OURS = "+14155550100"
EXTRA = "\n[outbox]\nenabled = false\n\n[logging]\naccess_log = true\n"
RID = "parity-1"
PASSWORD = "correct horse battery"
#: The headers a client reads (x-request-id is checked apart: the tests send one).
HEADERS = ("content-type", "www-authenticate", "retry-after", "location",
           "access-control-allow-origin", "set-cookie")
MAX_SENDS = 300  # the capped database is full long before this many messages


class Server:
    """One of the pair: a live server and the API tokens made on it."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.tokens: dict[str, dict[str, Any]] = {}

    def call(self, method: str, path: str, body: Any = None,
             token: str = "test-token") -> Response:
        data = b"" if body is None else json.dumps(body).encode()
        conn = self.live.connect()
        conn.send(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                  f"{token}\r\nContent-Type: application/json\r\nContent-Length: "
                  f"{len(data)}\r\n\r\n".encode() + data)
        answer = conn.response()
        conn.close()
        return answer

    def token(self, name: str, **fields: Any) -> str:
        made = self.call("POST", "/api/tokens", fields)
        assert made.status == 201, made.body
        self.tokens[name] = made.json()
        return str(made.json()["token"])

    def write(self, sql: str, args: list[Any]) -> None:
        assert self.live.loop is not None
        asyncio.run_coroutine_threadsafe(
            self.live.host.store.write(lambda db: db.execute(sql, args)),
            self.live.loop).result(TIMEOUT)

    def normal(self, answer: Response) -> Any:
        """The body without what differs between two servers by nature: message ids,
        token secrets and ids."""
        text = answer.body.decode()
        for made in self.tokens.values():
            text = text.replace(made["token"], "<token>").replace(str(made["id"]), "<id>")
        try:
            data = json.loads(text)
        except ValueError:
            return text
        return _scrubbed(data)


def _scrubbed(data: Any) -> Any:
    """``data`` without ids and timestamps, at any depth."""
    if isinstance(data, dict):
        return {k: _scrubbed(v) for k, v in data.items()
                if k not in ("id", "ids") and not k.endswith("_at")}
    if isinstance(data, list):
        return [_scrubbed(v) for v in data]
    return data


class Pair:
    def __init__(self, fast: Server, slow: Server, runs: list[SendCall]) -> None:
        self.fast, self.slow, self.runs = fast, slow, runs

    def both(self, request: Callable[[Server], bytes], answers: int = 1
             ) -> tuple[list[Response], list[Response]]:
        """``request(server)``'s bytes sent in one write to each server on a new
        connection; its ``answers`` answers from each, compared, and whether each
        connection stays open (a /health after them is answered)."""
        got = []
        for server in (self.fast, self.slow):
            conn = server.live.connect()
            conn.send(request(server))
            found = [read(conn) for _ in range(answers)]
            got.append((found, after(conn), server))
            conn.close()
        (fast, fast_open, _), (slow, slow_open, _) = got
        assert fast_open == slow_open, (fast_open, slow_open)
        for one, other in zip(fast, slow, strict=True):
            same(self.fast, one, self.slow, other)
        return fast, slow


def read(conn: Conn) -> Response:
    """One answer; a ``100 Continue`` is an answer here (status 100, no body)."""
    line = conn.file.readline()
    if line.startswith(b"HTTP/1.1 100 "):
        assert conn.file.readline() == b"\r\n"
        return Response(100, {}, b"")
    conn.file = _Prepend(line, conn.file)  # type: ignore[assignment]
    return conn.response()


class _Prepend:
    """A file whose first line was read already (to look at the status)."""

    def __init__(self, line: bytes, file: Any) -> None:
        self.line, self.file = line, file

    def readline(self) -> bytes:
        if self.line:
            line, self.line = self.line, b""
            return line
        return bytes(self.file.readline())

    def read(self, n: int = -1) -> bytes:
        return bytes(self.file.read(n))

    def close(self) -> None:
        self.file.close()


def after(conn: Conn) -> bool:
    """Whether the connection still answers: a /health sent after the answers."""
    try:
        conn.send(HEALTH)
        line = conn.file.readline()
    except OSError:
        return False
    if not line:
        return False
    conn.file = _Prepend(line, conn.file)  # type: ignore[assignment]
    return conn.response().status == 200


def same(fast_server: Server, fast: Response, slow_server: Server, slow: Response) -> None:
    assert fast.status == slow.status, (fast.status, fast.body, slow.status, slow.body)
    assert fast_server.normal(fast) == slow_server.normal(slow)
    for name in HEADERS:
        assert fast.headers.get(name) == slow.headers.get(name), name
    if fast.status != 100:
        assert fast.headers["x-request-id"] == slow.headers["x-request-id"] == RID
    if fast.body == slow.body:
        assert fast.headers.get("content-length") == slow.headers.get("content-length")


def post(body: Any, *, token: str | None = "test-token", key: str | None = None,
         extra: str = "", version: str = "1.1") -> bytes:
    """``POST /api/messages``: ``body`` as JSON (bytes as they are)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = (f"POST /api/messages HTTP/{version}\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"X-Request-Id: {RID}\r\n")
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if key is not None:
        head += f"Idempotency-Key: {key}\r\n"
    return (head + extra + "\r\n").encode() + data


def message(**fields: Any) -> dict[str, Any]:
    return {"to": PHONE, "text": "hello", **fields}




def metrics(server: Server) -> list[str]:
    conn = server.live.connect()
    conn.send(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
    text = conn.response().body.decode()
    conn.close()
    return sorted(line for line in text.splitlines()
                  if line.startswith("smshost_http_requests_total{") and 'method="POST"' in line)
