"""The send API answered by the protocol itself (host/web/api/fastsend.py) against the
same API through the ASGI stack, over real sockets.

Two servers with the same configuration, one with the fast paths on and one with them
off (``server.api_fast_path``, ``server.webhook_fast_path``), get the same raw HTTP/1.1
bytes; their answers must be the same: status, JSON body (but for message ids and
token ids), the headers a client reads, the request id, whether the connection stays
open, the access log and the request metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from host import tokens
from host.config import load_settings
from host.core import Host
from host.web.api import fastsend, send
from host.web.api.fastsend import SendCall
from host.web.fastpath import WebhookCall
from host.server import _config, _Server, bind
from tests.conftest import ON_POSTGRES, free_port
from tests.sendpair import (EXTRA, MAX_SENDS, OURS, PASSWORD, PHONE, Pair, Server, message,
                            metrics, post, read, same)
from tests.test_fastpath import HEALTH, TIMEOUT, Live, make_host, mo_body, webhook


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    runs: list[SendCall] = []
    original = SendCall.start

    def counted(call: SendCall) -> None:
        runs.append(call)
        original(call)

    monkeypatch.setattr(SendCall, "start", counted)
    fast = Live(make_host(tmp_path / "fast", fast=True, extra=EXTRA))
    slow = Live(make_host(tmp_path / "slow", fast=False, extra=EXTRA))
    with fast, slow:
        yield Pair(Server(fast), Server(slow), runs)


# -- which path answers ---------------------------------------------------------------


def test_the_send_goes_the_fast_path_only_when_on(pair: Pair) -> None:
    fast, slow = pair.both(lambda s: post(message()))
    assert fast[0].status == slow[0].status == 201
    assert len(pair.runs) == 1 and pair.runs[0].protocol.host is pair.fast.live.host
    assert fast[0].json()["id"] == slow[0].json()["id"]  # one message each, same place


@pytest.mark.parametrize("request_", [
    b"POST /api/messages?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
    b"Authorization: Bearer test-token\r\nX-Request-Id: parity-1\r\n\r\n{}",
    b"POST /api/messages HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Authorization: Bearer test-token\r\nX-Request-Id: parity-1\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /api/messages/ HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
    b"Authorization: Bearer test-token\r\nX-Request-Id: parity-1\r\n\r\n{}",
    b"POST /api/%6Dessages HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
    b"Authorization: Bearer test-token\r\nX-Request-Id: parity-1\r\n\r\n{}",
    b"PUT /api/messages HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
    b"Authorization: Bearer test-token\r\nX-Request-Id: parity-1\r\n\r\n{}",
    b"GET /api/messages HTTP/1.1\r\nHost: a\r\n"
    b"Authorization: Bearer test-token\r\nX-Request-Id: parity-1\r\n\r\n",
    b"POST /api/messages HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nCookie: a=b\r\n"
    b"X-Request-Id: parity-1\r\n\r\n{}",
], ids=["query", "chunked", "slash", "percent", "put", "get", "cookie"])
def test_what_the_fast_path_does_not_take_goes_to_asgi(pair: Pair, request_: bytes) -> None:
    pair.both(lambda s: request_)
    assert pair.runs == []


def test_a_session_cookie_goes_to_asgi_and_its_csrf_check(pair: Pair) -> None:
    cookies = {}
    for server in (pair.fast, pair.slow):
        made = server.call("POST", "/api/users", {"login": "ann", "roles": ["agent"],
                                                   "password": PASSWORD})
        assert made.status == 201, made.body
        signed = server.call("POST", "/api/session", {"login": "ann", "password": PASSWORD},
                             token="")
        assert signed.status == 200, signed.body
        cookies[server.live.port] = signed.headers["set-cookie"].split(";")[0]
    fast, _ = pair.both(lambda s: post(message(), token=None,
                                       extra=f"Cookie: {cookies[s.live.port]}\r\n"))
    assert fast[0].status == 403 and fast[0].json()["error"] == "csrf"
    assert pair.runs == []


# -- the answers ----------------------------------------------------------------------


@pytest.mark.parametrize("request_", [
    post(message()),
    post(message(text="héllo ☃", metadata={"a": 1}), key="k-1"),
    post(message(), version="1.0"),
    post(b"{not json"),
    post(b"[1, 2]"),
    post(b""),
    post(('{"to": "+14155550123", "text": "x", "metadata": {"a": ' + "[" * 200 + "]" * 200
          + "}}").encode()),
    post(b'{"to": "+14155550123", "text": "x", "metadata": {"n": 1e999}}'),
    post(b'{"to": "+14155550123", "text": "x", "metadata": {"n": 99999999999999999999}}'),
    post({"to": 5, "text": "x"}),
    post({"to": PHONE, "text": ["x"]}),
    post({"to": PHONE, "text": "x", "metadata": "m"}),
    post({"to": PHONE}),
    post(message(colour="red")),
    post(message(metadata={"dlr": "x"})),
    post(message(send_at="tomorrow")),
    post(message(), key=""),
    post(message(), key="k" * 201),
    post(message(to="not a number")),
    post(message(broker="nope")),
    post(message(account="nope")),
    post(message(text="")),
    post(b'{"to": "+14155550123", "text": "\\ud800 lone"}'),
    post(message(), token=None),
    post(message(), token="wrong"),
    post(message(), token=""),
    post(message(), extra="Authorization: Basic dGVzdA==\r\n", token=None),
    post(message(text="x" * 5000)),
], ids=lambda r: r.split(b"\r\n\r\n", 1)[1][:40].decode("latin-1") + "|"
                 + str(len(r)))
def test_the_same_answer_as_the_asgi_path(pair: Pair, request_: bytes) -> None:
    pair.both(lambda s: request_)


def test_an_idempotent_retry_is_replayed_alike(pair: Pair) -> None:
    first = post(message(), key="retry-1")
    other = post(message(text="another"), key="retry-1")
    fast, slow = pair.both(lambda s: first + first + other, answers=3)
    assert [a.status for a in fast] == [201, 200, 422]
    assert fast[1].json()["replayed"] is True
    assert fast[0].json()["id"] == fast[1].json()["id"]


def test_tokens_missing_rights_and_classifications(pair: Pair) -> None:
    for server in (pair.fast, pair.slow):
        server.token("reader", integration="crm", scopes=["read"])
        server.token("sender", integration="crm", scopes=["send"], classifications=["promo"])
        server.token("gone", integration="crm", scopes=["send"])
    tokens = {name: {s.live.port: s.tokens[name]["token"] for s in (pair.fast, pair.slow)}
              for name in ("reader", "sender", "gone")}

    def as_(name: str, **fields: Any) -> Callable[[Server], bytes]:
        return lambda s: post(message(**fields), token=tokens[name][s.live.port])

    assert pair.both(as_("reader"))[0][0].status == 403
    assert pair.both(as_("sender", classification="promo"))[0][0].status == 201
    assert pair.both(as_("sender", classification="other"))[0][0].status == 403
    assert pair.both(as_("gone"))[0][0].status == 201
    for server in (pair.fast, pair.slow):
        key = server.tokens["gone"]["id"]
        assert server.call("DELETE", f"/api/tokens/{key}").status == 200
    assert pair.both(as_("gone"))[0][0].status == 401


def test_an_opted_out_recipient_is_409_alike(pair: Pair) -> None:
    for server in (pair.fast, pair.slow):
        server.write("insert into optouts (local, remote, opted_out_at, broker) values "
                     "(?, ?, '2026-01-01T00:00:00.000000Z', 'gen')", [OURS, PHONE])
    fast, _ = pair.both(lambda s: post(message()))
    assert fast[0].status == 409


def test_a_body_over_the_limit_is_413_and_closes(pair: Pair) -> None:
    fast, _ = pair.both(lambda s: post(message(text="x" * 5000)))
    assert fast[0].status == 413


@pytest.mark.skipif(ON_POSTGRES, reason="fills the disk with SQLite's max_page_count; the "
                    "503 answer is the same function on both stores (refusal_message)")
def test_a_refusing_database_is_503_with_retry_after(pair: Pair) -> None:
    refusals = []
    for server in (pair.fast, pair.slow):
        assert server.live.loop is not None
        asyncio.run_coroutine_threadsafe(server.live.host.store.write(
            lambda db: db.execute("pragma max_page_count = 1").fetchall()),
            server.live.loop).result(TIMEOUT)
        for n in range(MAX_SENDS):
            conn = server.live.connect()
            conn.send(post(message(text=f"message {n}: " + "x" * 120)))
            answer = conn.response()
            conn.close()
            if answer.status != 201:
                refusals.append((server, answer))
                break
    (fast_server, fast), (slow_server, slow) = refusals
    assert fast.status == 503 and fast.headers["retry-after"]
    same(fast_server, fast, slow_server, slow)


# -- the connection ---------------------------------------------------------------------


def test_keep_alive_and_pipelining_answer_in_order(pair: Pair) -> None:
    requests = [post(message(text="one")), post(b"{bad"), post(message(), token="no"),
                b"GET /api/messages HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer test-token"
                b"\r\nX-Request-Id: parity-1\r\n\r\n",
                post(message(text="two"), key="p-1"), post(message(text="two"), key="p-1")]
    fast, _ = pair.both(lambda s: b"".join(requests), answers=len(requests))
    assert [a.status for a in fast] == [201, 400, 401, 200, 201, 200]
    assert len(pair.runs) == 5


def test_keep_alive_one_request_at_a_time(pair: Pair) -> None:
    for server in (pair.fast, pair.slow):
        conn = server.live.connect()
        for n in range(3):
            conn.send(post(message(text=f"n{n}")))
            assert conn.response().status == 201
        conn.close()
    assert len(pair.runs) == 3


def test_expect_100_continue(pair: Pair) -> None:
    body = json.dumps(message()).encode()
    expect = "Expect: 100-continue\r\n"
    for server in (pair.fast, pair.slow):
        conn = server.live.connect()
        conn.send(post(message(), extra=expect)[:-len(body)])
        assert read(conn).status == 100
        conn.send(body)
        assert conn.response().status == 201
        # refused from the head: no 100, the answer at once
        conn.send(post(message(), extra=expect, token="wrong")[:-len(body)])
        assert read(conn).status == 401
        conn.send(body)  # read as the refused request's body
        conn.send(HEALTH)
        assert conn.response().status == 200
        conn.close()


# -- failures, log and metrics --------------------------------------------------------


def test_a_bug_is_a_500_and_closes_alike(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(fastsend, "accept", broken)
    monkeypatch.setattr(send, "accept", broken)
    fast, _ = pair.both(lambda s: post(message()))
    assert fast[0].status == 500 and fast[0].json()["error"] == "internal"


def test_a_bug_in_the_token_check_is_a_500_alike(pair: Pair,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def fullmatch(self, token: str) -> None:
            raise RuntimeError("a bug")

    monkeypatch.setattr(tokens, "_TOKEN", Broken())
    fast, _ = pair.both(lambda s: post(message(), token="smst-abc"))
    assert fast[0].status == 500


def test_the_access_log_and_metrics_alike(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    requests = [post(message()), post(b"{bad"), post(message(), token="no"),
                post(message(text="x" * 5000))]
    with caplog.at_level(logging.INFO, logger="smshost.access"):
        for request in requests:
            pair.both(lambda s, r=request: r)  # type: ignore[misc]
    lines = [re.sub(r" [0-9.]+ms$", "", r.getMessage()) for r in caplog.records
             if r.name == "smshost.access" and "/api/messages" in r.getMessage()]
    assert lines == [line for line in lines[::2] for _ in (0, 1)], lines
    assert len(lines) == 2 * len(requests)
    assert metrics(pair.fast) == metrics(pair.slow) != []



def test_a_client_gone_before_its_body_ended_is_counted_alike(pair: Pair) -> None:
    for server in (pair.fast, pair.slow):
        conn = server.live.connect()
        conn.send(post(message())[:-3])
        conn.close()
    for _ in range(round(TIMEOUT / 0.02)):  # bounded: until both counted it
        if all('status="499"' in " ".join(metrics(s)) for s in (pair.fast, pair.slow)):
            break
        time.sleep(0.02)
    assert metrics(pair.fast) == metrics(pair.slow)
    assert 'status="499"' in " ".join(metrics(pair.fast))


@pytest.mark.parametrize(("webhooks", "api"), [(False, True), (True, False)])
def test_each_setting_turns_its_own_route_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               webhooks: bool, api: bool) -> None:
    ran: list[str] = []
    for kind, original in ((SendCall, SendCall.start), (WebhookCall, WebhookCall.start)):
        def counted(call: Any, original: Any = original) -> None:
            ran.append(call.scope["path"])
            original(call)

        monkeypatch.setattr(kind, "start", counted)
    host = make_host(tmp_path, fast=True, extra=EXTRA)
    cfg = host.config_dir
    assert cfg is not None
    toml = cfg / "smshost.toml"
    toml.write_text(toml.read_text(encoding="utf-8")
                    .replace("webhook_fast_path = true", f"webhook_fast_path = {webhooks}".lower())
                    .replace("api_fast_path = true", f"api_fast_path = {api}".lower()),
                    encoding="utf-8")
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    with Live(host) as live:
        conn = live.connect()
        conn.send(post(message()))
        assert conn.response().status == 201
        conn.send(webhook(mo_body(1)))
        assert conn.response().status == 200
    assert ran == (["/generic/mo"] if webhooks else ["/api/messages"])


class EdgeLive(Live):
    """``Live`` serving the host's second listener (one without ``api = true``)."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.sock.close()
        self.listener = host.settings.listeners[1]
        self.sock = bind(self.listener)
        self.port = self.sock.getsockname()[1]
        self.server = _Server(_config(host, self.listener))


def test_a_listener_without_the_api_does_not_take_the_send(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[SendCall] = []
    monkeypatch.setattr(SendCall, "start", lambda call: ran.append(call))
    edge = f'\n[[listeners]]\nname = "edge"\nhost = "127.0.0.1"\nport = {free_port()}\n'
    with EdgeLive(make_host(tmp_path, fast=True, extra=EXTRA + edge)) as live:
        conn = live.connect()
        conn.send(post(message()))
        answer = conn.response()
    assert answer.status == 404 and ran == []
