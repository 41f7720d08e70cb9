"""The status callbacks of the compatible send APIs (host.compat): which change calls
back for each Kannel dlr-mask bit and Jasmin dlr-level, the escapes filled for each, and
the worker's retries with a fake clock against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from collections.abc import Callable
from urllib.parse import parse_qs

import pytest

from host.compat import jasmin, kannel
from host.callbacks.queue import FORM, Request
from host.callbacks.worker import Callbacks
from host.compat.callbacks import Call
from host.compat.escapes import fill, kannel_encode
from host.config.compat import CompatSettings
from host.core import Host
from host.models import Message, StatusEvent
from tests.outbound.conftest import FakeBroker, Reply, Seen

AT = "2026-03-04T05:06:07.000000Z"  # 1772600767
MESSAGE = Message(id=7, direction="out", broker="gen", account="main", local="+15550100",
                  remote="004915551234", body="Hello, world: a long text", encoding="gsm7",
                  segments=1, status="sent", broker_message_id="B-7", created_at=AT,
                  updated_at=AT)
TEMPLATE = "http://app/dlr?d=%d&p=%p&P=%P&q=%q&Q=%Q&A=%A&T=%T&t=%t&i=%i&I=%I&F=%F&n=%n"

# (old, new) → the Kannel DLR type it is, None when Kannel reports nothing.
CHANGES = [(None, "queued", None), ("queued", "sending", None), ("sending", "sent", 8),
           ("sent", "delivered", 1), ("sent", "undelivered", 2), ("sent", "expired", 2),
           ("sent", "failed", 2), ("sending", "failed", 16), ("queued", "rejected", 16),
           ("sent", "rejected", 2)]


def event(status: str, **detail: str) -> StatusEvent:
    return StatusEvent(id=1, message_id=7, status=status, at=AT, source="test",
                       detail=dict(detail))


def kannel_dlr(mask: int) -> dict[str, object]:
    return {"kind": "kannel", "url": TEMPLATE, "mask": mask, "asked": {"username": "app"}}


@pytest.mark.parametrize(("old", "new", "kind"), CHANGES)
@pytest.mark.parametrize("bit", [1, 2, 4, 8, 16, 31])
def test_each_mask_bit_calls_back_its_changes_only(old: str | None, new: str,
                                                  kind: int | None, bit: int) -> None:
    calls = kannel.dlr_calls(kannel_dlr(bit), MESSAGE, old, new, event(new))
    expected = kind is not None and bool(bit & kind)
    assert len(calls) == (1 if expected else 0)
    if expected:
        assert calls[0].method == "GET"
        assert parse_qs(calls[0].url.split("?", 1)[1])["d"] == [str(kind)]


@pytest.mark.parametrize(("new", "old", "reply"), [
    ("sent", "sending", "ACK/"), ("delivered", "sent", "id:B-7 stat:DELIVRD err:000"),
    ("undelivered", "sent", "id:B-7 stat:UNDELIV err:30003"),
    ("expired", "sent", "id:B-7 stat:EXPIRED err:30003"),
    ("rejected", "queued", "NACK/30003")])
def test_the_escapes_are_filled_and_encoded_as_kannel_does(new: str, old: str,
                                                          reply: str) -> None:
    (call,) = kannel.dlr_calls(kannel_dlr(31), MESSAGE, old, new, event(new, error="30003"
                               if new != "delivered" else ""))
    query = call.url.split("?", 1)[1]
    assert query.startswith(f"d={ {'sent': 8, 'delivered': 1, 'rejected': 16}.get(new, 2)}"
                            "&p=004915551234&P=%2B15550100&q=%2B4915551234&Q=%2B15550100")
    assert f"&A={kannel_encode(reply)}&" in query
    assert "&T=1772600767&t=2026-03-04+05:06:07&i=gen&I=7&F=B-7&n=app" in query


def test_kannels_url_encoding_keeps_its_safe_set_and_spaces_become_plus() -> None:
    assert kannel_encode("a b/c:d+é!~*'()_.-") == "a+b%2Fc%3Ad%2B%C3%A9!~*'()_.-"
    assert fill("x=%%&y=%Z&z=%", {"d": "1"}) == "x=%&y=%Z&z=%"


@pytest.mark.parametrize(("level", "old", "new", "status"), [
    (1, "sending", "sent", "ESME_ROK"), (1, "queued", "failed", "ESME_RSUBMITFAIL"),
    (1, "sent", "delivered", None), (2, "sending", "sent", None),
    (2, "sent", "delivered", "DELIVRD"), (2, "sent", "undelivered", "UNDELIV"),
    (3, "sending", "sent", "ESME_ROK"), (3, "sent", "expired", "EXPIRED"),
    (3, "queued", "queued", None)])
def test_jasmin_levels_and_payload(level: int, old: str, new: str,
                                   status: str | None) -> None:
    dlr = {"kind": "jasmin", "url": "http://app/dlr", "level": level, "method": "POST"}
    calls = jasmin.dlr_calls(dlr, MESSAGE, old, new, event(new))
    if status is None:
        assert calls == []
        return
    (call,) = calls
    body = {k: v[0] for k, v in parse_qs(call.body or "").items()}
    assert (call.method, call.url) == ("POST", "http://app/dlr")
    assert body["id"] == "7" and body["message_status"] == status
    assert body["connector"] == "gen"
    if status.startswith("ESME"):
        assert body["level"] == "1" and "donedate" not in body
    else:
        assert body["level"] == "2" and body["id_smsc"] == "B-7"
        assert body["subdate"] == body["donedate"] == "2603040506"
        assert body["text"] == "Hello, world: a long" and body["sub"] == "001"
        assert body["dlvrd"] == ("001" if new == "delivered" else "000")
    get = jasmin.dlr_calls({**dlr, "method": "GET"}, MESSAGE, old, new, event(new))
    assert get[0].method == "GET" and get[0].url.startswith("http://app/dlr?id=7&")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_callbacks(host: Host, clock: Clock, settings: CompatSettings,
                  steps: Callable[[Callbacks], object]) -> object:
    async def main() -> object:
        async with host.running(background=False):
            callbacks = host.callbacks  # the one worker, driven here with run_once
            # the dlr-urls of these tests name 127.0.0.1: allowed here (host.callbacks.urls)
            callbacks.clock, callbacks.compat = clock, replace(
                settings, allowed_hosts=("127.0.0.1",), allow_private=True)
            try:
                return await steps(callbacks)  # type: ignore[misc]
            finally:
                await callbacks.close()
    return asyncio.run(main())


async def add(host: Host, calls: list[Call], message_id: int = 7) -> None:
    """Queue ``calls`` as the ledger does for a change of message ``message_id``."""
    requests = [Request(c.kind, c.method, c.url, c.body, FORM if c.body else {})
                for c in calls]
    await host.store.write(lambda db: db.conn.executemany(
        "insert into callback_deliveries (message_id, event_id, kind, method, url, headers, "
        "body, status, next_attempt_at, created_at, updated_at) values (?, 1, ?, ?, ?, ?, "
        "?, 'pending', 0, '', '')", [(message_id, r.kind, r.method, r.url,
                                      json.dumps(r.headers), r.body) for r in requests]))


def rows(host: Host) -> list[tuple[object, ...]]:
    return host.store.read_now(lambda db: db.execute(
        "select status, attempts, next_attempt_at, last_error from callback_deliveries "
        "order by id").fetchall())


def test_retries_with_backoff_then_done(host_factory: Callable[..., Host]) -> None:
    answers = [503, 500, 200]
    with FakeBroker(lambda seen, n: Reply(answers[min(n - 1, len(answers) - 1)])) as app:
        host, clock = host_factory(), Clock()
        settings = CompatSettings(callback_first_delay=10, callback_max_delay=15)

        async def steps(cb: Callbacks) -> list[object]:
            seen: list[object] = []
            await add(host, [Call("GET", f"{app.url}/dlr?d=1")])
            assert await cb.run_once() == 1
            seen.append(rows(host)[0])
            assert await cb.run_once() == 0  # not due yet
            clock.now += 10
            assert await cb.run_once() == 1
            seen.append(rows(host)[0])
            clock.now += 15  # 20 would be due; the cap is 15
            assert await cb.run_once() == 1
            seen.append(rows(host))
            return seen

        first, second, done = run_callbacks(host, clock, settings, steps)  # type: ignore[misc]
        assert first[:3] == ("pending", 1, 1010.0) and first[3].startswith("HTTP 503")
        assert second[:3] == ("pending", 2, 1025.0) and second[3].startswith("HTTP 500")
        assert done == [("delivered", 3, None, None)]
        assert [s.target for s in app.seen()] == ["/dlr?d=1"] * 3


def test_a_4xx_is_dead_at_once_and_attempts_are_bounded(
        host_factory: Callable[..., Host]) -> None:
    def respond(seen: Seen, n: int) -> Reply:
        return Reply(404 if seen.path == "/gone" else 502)

    with FakeBroker(respond) as app:
        host, clock = host_factory(), Clock()
        settings = CompatSettings(callback_attempts=3, callback_first_delay=1,
                                  callback_max_delay=1)

        async def steps(cb: Callbacks) -> object:
            await add(host, [Call("GET", f"{app.url}/gone"),
                       Call("POST", f"{app.url}/down", "id=7", kind="jasmin")])
            for _ in range(5):
                await cb.run_once()
                clock.now += 1
            return rows(host)

        found = run_callbacks(host, clock, settings, steps)
        assert [(s, a, str(e)[:8]) for s, a, _, e in found] == [  # type: ignore[attr-defined]
            ("dead", 1, "HTTP 404"), ("dead", 3, "HTTP 502")]
        posts = [s for s in app.seen() if s.path == "/down"]
        assert len(posts) == 3 and posts[0].body == b"id=7"
        assert posts[0].headers["content-type"] == "application/x-www-form-urlencoded"


def test_a_refused_connection_is_retried(host_factory: Callable[..., Host]) -> None:
    from tests.conftest import free_port

    host, clock = host_factory(), Clock()

    async def steps(cb: Callbacks) -> object:
        await add(host, [Call("GET", f"http://127.0.0.1:{free_port()}/dlr")])
        await cb.run_once()
        return rows(host)

    ((status, attempts, next_at, error),) = run_callbacks(  # type: ignore[misc]
        host, clock, CompatSettings(), steps)
    assert (status, attempts, next_at) == ("pending", 1, 1010.0)
    assert "cannot connect" in str(error)
