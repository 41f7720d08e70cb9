"""The webhook sink (SPEC S4) through its real interfaces.

A receiver on 127.0.0.1 (an aiohttp web app in the test's event loop) checks every
request's signature the way a real receiver would and records it. Messages are stored
with ``host.messages.add`` inside ``host.running()`` and routed by routes.toml to the
webhook sink, which ships in ``plugins/sinks/webhook/`` (linked into the test's plugin
folder). Dead letters are listed and replayed through the API served by uvicorn and
through the ``smshost webhooks`` CLI. Retry settings are short; every wait is bounded;
nothing asserts how long anything took, only the times the sink recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import json
import os
import re
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web

from host.config import load_settings
from host.core import Host
from host.messages import NewMessage
from tests.conftest import ROOT, base_config, free_port, run_cli, write_lock

SECRET = "whsec-test-0123456789"
SECRET_ENV = "SMSHOST_TEST_WEBHOOK_SECRET"
TOKEN = "test-token"
WAIT = 15.0  # the longest any wait in these tests may take, seconds
PLUGIN = ROOT / "plugins" / "sinks" / "webhook"
FAST = {"max_attempts": 3, "first_delay": 0.05, "factor": 2.0, "max_delay": 0.2,
        "jitter": 0.0, "stop_grace": 2.0}


# -- the receiver -----------------------------------------------------------------------

def receiver_verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does: HMAC-SHA256 of "<t>.<raw body>", recent t, constant time."""
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    if match is None or abs(time.time() - int(match[1])) > tolerance:
        return False
    expected = hmac.new(secret.encode(), match[1].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, match[2])


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook endpoint that refuses bad signatures (401) and answers as scripted.

    ``script(path, (status, headers), ...)``: the answers for ``path`` in order; the last
    one repeats. Unscripted paths answer 200.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.hits: list[Hit] = []
        self.rejected: list[Hit] = []
        self._scripts: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self._runner: web.AppRunner | None = None
        self.release = asyncio.Event()  # lets hanging answers ("hang") finish
        self.echo = False  # answers repeat the request's headers (as some servers' errors do)

    def script(self, path: str, *answers: int | tuple[int, dict[str, str]]) -> None:
        self._scripts[path] = [a if isinstance(a, tuple) else (a, {}) for a in answers]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        hit = Hit(request.path, dict(request.headers), body, time.time())
        if not receiver_verify(SECRET, request.headers.get("X-Smshost-Signature", ""), body):
            self.rejected.append(hit)
            return web.Response(status=401, text="bad signature")
        self.hits.append(hit)
        script = self._scripts.get(request.path, [(200, {})])
        status, headers = script.pop(0) if len(script) > 1 else script[0]
        if status == 0:  # hang until released (bounded), then answer 200
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), WAIT)
            status = 200
        echoed = f" {dict(request.headers)}" if self.echo else ""
        return web.Response(status=status, headers=headers, text=f"answer {status}{echoed}")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()


# -- hosts ------------------------------------------------------------------------------

def sinks_toml(targets: dict[str, str], **policy: Any) -> str:
    lines = ["[webhook]"]
    for key, value in {**FAST, **policy}.items():
        lines.append(f"{key} = {json.dumps(value)}")
    for name, url in targets.items():
        lines += ["", f"[webhook.targets.{name}]", f'url = "{url}"',
                  f'secret = {{ env = "{SECRET_ENV}" }}', 'headers = { "X-Api-Key" = "k-123" }',
                  "timeout = 2.0"]
    return "\n".join(lines) + "\n"


def routes_toml(targets: list[str]) -> str:
    """A route per target for bodies "<target>: ...", the first target as the default."""
    out = ""
    for name in targets:
        out += textwrap.dedent(f"""
            [[inbound]]
            name = "to-{name}"
            destination = "webhook"
            target = "{name}"
            pattern = "{name}:.*"
            """)
    return out + textwrap.dedent(f"""
        [[inbound]]
        name = "default"
        destination = "webhook"
        target = "{targets[0]}"
        default = true
        """)


@pytest.fixture
def make_host(tmp_path: Path, config_dir: Callable[..., Path], plugins_dir: Path,
              monkeypatch: pytest.MonkeyPatch) -> Callable[..., Host]:
    """``make_host(targets, api_port=..., **policy)``: a host routing to those targets."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    (plugins_dir / "sinks" / "webhook").symlink_to(PLUGIN)

    def make(targets: dict[str, str], *, api_port: int = 8080, routes: str | None = None,
             sinks: str | None = None, extra: str = "", **policy: Any) -> Host:
        client = os.environ.get("SMSHOST_TEST_HTTP_CLIENT")  # =aiohttp: the other client
        if client:
            extra = textwrap.dedent(extra) + f'\n[outbox]\nhttp_client = "{client}"\n'
        cfg = config_dir(smshost=base_config(tmp_path, port=api_port, extra=extra),
                         routes=routes if routes is not None else routes_toml(list(targets)),
                         sinks=sinks if sinks is not None else sinks_toml(targets, **policy))
        return Host(load_settings(cfg), config_dir=cfg)
    return make


async def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` (sync or async) until it returns something true; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def inbound(host: Host, body: str, **extra: Any) -> int:
    values = {"local": "+15550001111", "remote": "+15552223333", "broker": "twilio",
              "account": "main", **extra}
    message, created = await host.messages.add(NewMessage(
        direction="in", status="received", body=body, **values))
    assert created
    return message.id


async def deliveries(host: Host) -> list[dict[str, Any]]:
    return await host.store.read(lambda db: list(db.query(
        "select * from webhook_deliveries order by id")))


async def delivery(host: Host, delivery_id: int | None = None) -> dict[str, Any] | None:
    rows = await deliveries(host)
    if delivery_id is None:
        return rows[-1] if rows else None
    return next((r for r in rows if r["id"] == delivery_id), None)


async def attempt_log(host: Host, delivery_id: int) -> list[dict[str, Any]]:
    return await host.store.read(lambda db: list(db.query(
        "select * from webhook_attempts where delivery_id = ? order by id", [delivery_id])))


async def status_is(host: Host, status: str, **more: Any) -> dict[str, Any] | None:
    row = await delivery(host)
    if row is None or row["status"] != status:
        return None
    return row if all(row[k] >= v for k, v in more.items()) else None


def epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:  # leave the test runner's signals alone
        yield


@contextlib.asynccontextmanager
async def api_server(host: Host, port: int) -> AsyncIterator[str]:
    """Serve the host's API listener on 127.0.0.1:port in this loop."""
    server = _Uvicorn(uvicorn.Config(host.app_for(), host="127.0.0.1", port=port,
                                     lifespan="off", log_config=None, access_log=False,
                                     ws="none"))
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), "the API server to start")
    if task.done():
        task.result()
        pytest.fail("the API server stopped at once")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


async def cli(*args: str) -> Any:
    return await asyncio.to_thread(run_cli, *args, timeout=WAIT * 2)


# -- a signed, documented payload ------------------------------------------------------

def test_routed_message_arrives_signed_with_the_documented_payload(
        make_host: Callable[..., Host]) -> None:
    async def flow() -> None:
        async with Receiver() as receiver:
            host = make_host({"crm": receiver.url("/crm")})
            async with host.running():
                message_id = await inbound(host, "Hello, I would like a quote",
                                           broker_message_id="SM-1",
                                           attrs={"campaign": "spring"})
                assert await host.router.idle()
                row = await until(lambda: status_is(host, "delivered"), "the delivery")
                message = await host.messages.get(message_id)
                events = await host.messages.events(message_id)
            assert receiver.rejected == []
            assert len(receiver.hits) == 1
            hit = receiver.hits[0]
            headers = {k.lower(): v for k, v in hit.headers.items()}
            assert headers["content-type"] == "application/json"
            assert headers["x-smshost-delivery"] == str(row["id"])
            assert headers["x-api-key"] == "k-123"
            assert headers["user-agent"].startswith("smshost/")
            body = hit.json
            assert body["delivery_id"] == row["id"]
            assert body["event"] == "message.inbound"
            assert body["message"] == {
                "id": message_id, "direction": "in", "from": "+15552223333",
                "to": "+15550001111", "body": "Hello, I would like a quote",
                "broker": "twilio", "account": "main", "broker_message_id": "SM-1",
                "encoding": None, "segments": None, "created_at": message.created_at,
                "attrs": {"campaign": "spring"}}
            assert body["route"] == {"name": "default", "target": "crm", "type": "body",
                                     "pattern": ".*", "default": True}
            assert body["queued_at"] == row["created_at"]
            # The router recorded the message as routed to the webhook, with the delivery.
            assert message.status == "routed"
            assert events[-1].detail["delivery_id"] == row["id"]
            assert events[-1].detail["target"] == "crm"
            assert row["attempts"] == 1 and row["last_status"] == 200
            # The receiver's check can fail: another body or secret is refused.
            header = headers["x-smshost-signature"]
            assert receiver_verify(SECRET, header, hit.body)
            assert not receiver_verify(SECRET, header, hit.body.replace(b"quote", b"QUOTE"))
            assert not receiver_verify("another secret", header, hit.body)
    asyncio.run(flow())


def test_documented_verification_recipe_accepts_our_signature(
        make_host: Callable[..., Host]) -> None:
    text = (ROOT / "docs" / "sinks-webhook.md").read_text(encoding="utf-8")
    recipe = re.search(r"<!-- recipe: verify_signature -->\s*```python\n(.*?)```", text,
                       re.DOTALL)
    assert recipe, "docs/sinks-webhook.md lost its verification recipe"
    scope: dict[str, Any] = {}
    exec(compile(recipe[1], "docs/sinks-webhook.md", "exec"), scope)  # noqa: S102
    verify_signature = scope["verify_signature"]

    async def flow() -> Hit:
        async with Receiver() as receiver:
            host = make_host({"crm": receiver.url("/crm")})
            async with host.running():
                await inbound(host, "recipe")
                await until(lambda: receiver.hits, "the delivery")
            return receiver.hits[0]
    hit = asyncio.run(flow())
    header = {k.lower(): v for k, v in hit.headers.items()}["x-smshost-signature"]
    assert verify_signature(SECRET, header, hit.body)
    assert not verify_signature(SECRET, header, hit.body + b" ")
    assert not verify_signature("wrong", header, hit.body)
    old = int(time.time()) - 3600  # a replayed capture: a correct HMAC, too old
    stale = hmac.new(SECRET.encode(), f"{old}.".encode() + hit.body, hashlib.sha256)
    assert not verify_signature(SECRET, f"t={old},v1={stale.hexdigest()}", hit.body)


# -- retries ----------------------------------------------------------------------------

def test_server_errors_are_retried_with_backoff_and_delivered_once(
        make_host: Callable[..., Host]) -> None:
    async def flow() -> None:
        async with Receiver() as receiver:
            receiver.script("/flaky", 500, 500, 200)
            host = make_host({"flaky": receiver.url("/flaky")}, max_attempts=5)
            async with host.running():
                await inbound(host, "flaky: hello")
                row = await until(lambda: status_is(host, "delivered"), "the delivery")
                log = await attempt_log(host, row["id"])
                await asyncio.sleep(0.3)  # longer than any retry wait: nothing more comes
            hits = receiver.on("/flaky")
            assert len(hits) == 3
            assert {h.headers["X-Smshost-Delivery"] for h in hits} == {str(row["id"])}
            assert len({h.body for h in hits}) == 1  # the same bytes every time
            assert row["attempts"] == 3 and row["last_status"] == 200
            # the last attempt's outcome, not an earlier failure's
            assert row["last_error"] is None and row["next_attempt_at"] is None
            assert [(a["attempt"], a["http_status"], a["outcome"]) for a in log] == [
                (1, 500, "retry"), (2, 500, "retry"), (3, 200, "delivered")]
            assert log[0]["error"].startswith("HTTP 500")
            # Exponential backoff (no jitter here): first_delay, then first_delay * factor,
            # counted from the end of each failed attempt ...
            waits = [epoch(a["next_attempt_at"]) - epoch(a["finished_at"]) for a in log[:2]]
            assert waits == pytest.approx([0.05, 0.1], abs=2e-6)
            # ... and no retry arrived before the time recorded for it.
            for failed, retry in zip(log[:2], hits[1:], strict=True):
                assert retry.at >= epoch(failed["next_attempt_at"])
    asyncio.run(flow())


def test_client_error_is_a_dead_letter_at_once(make_host: Callable[..., Host]) -> None:
    async def flow() -> None:
        async with Receiver() as receiver:
            receiver.script("/strict", 400)
            host = make_host({"strict": receiver.url("/strict")}, max_attempts=5)
            async with host.running():
                await inbound(host, "strict: hello")
                row = await until(lambda: status_is(host, "dead"), "the dead letter")
                log = await attempt_log(host, row["id"])
                await asyncio.sleep(0.3)  # longer than any retry wait: nothing more comes
            assert len(receiver.on("/strict")) == 1
            assert row["attempts"] == 1 and row["last_status"] == 400
            assert row["last_error"] == "HTTP 400: answer 400"
            assert row["dead_at"] is not None and row["next_attempt_at"] is None
            assert [a["outcome"] for a in log] == ["dead"]
    asyncio.run(flow())


def test_an_error_answer_echoing_the_api_key_is_stored_masked(
        make_host: Callable[..., Host]) -> None:
    """A receiver whose error echoes the request had the target's API key (its extra
    headers) stored in last_error and shown by /api/webhooks/deliveries, before issue
    11's review."""
    async def flow() -> None:
        async with Receiver() as receiver:
            receiver.script("/strict", 400)
            receiver.echo = True
            host = make_host({"strict": receiver.url("/strict")}, max_attempts=5)
            async with host.running():
                await inbound(host, "strict: hello")
                row = await until(lambda: status_is(host, "dead"), "the dead letter")
                log = await attempt_log(host, row["id"])
            assert row["last_error"].startswith("HTTP 400: answer 400 {")
            assert "X-Api-Key': '********'" in row["last_error"]
            assert "k-123" not in row["last_error"] + str(log)
    asyncio.run(flow())


def test_too_many_requests_waits_for_retry_after(make_host: Callable[..., Host]) -> None:
    async def flow() -> None:
        async with Receiver() as receiver:
            later = format_datetime(datetime.fromtimestamp(time.time() + 600, UTC), usegmt=True)
            receiver.script("/busy", (429, {"Retry-After": "120"}))
            receiver.script("/dated", (503, {"Retry-After": later}))
            host = make_host({"busy": receiver.url("/busy"),
                              "dated": receiver.url("/dated")}, max_attempts=5)
            async with host.running():
                await inbound(host, "busy: hello")
                await inbound(host, "dated: hello")
                await until(lambda: len(receiver.hits) == 2, "both first attempts")
                rows = await until(lambda: _all_tried(host, 2), "both attempts recorded")
                logs = [await attempt_log(host, r["id"]) for r in rows]
        busy, dated = rows
        assert busy["status"] == "pending" and busy["last_status"] == 429
        assert dated["status"] == "pending" and dated["last_status"] == 503
        # Without Retry-After the next attempt would be first_delay (0.05 s) later.
        busy_wait = epoch(busy["next_attempt_at"]) - epoch(busy["last_attempt_at"])
        assert 120 <= busy_wait < 125
        dated_wait = epoch(dated["next_attempt_at"]) - epoch(dated["last_attempt_at"])
        assert 595 <= dated_wait < 605
        assert [(a["http_status"], a["outcome"]) for a in logs[0]] == [(429, "retry")]
        assert logs[0][0]["next_attempt_at"] == busy["next_attempt_at"]
        assert len(receiver.on("/busy")) == 1  # and it really waits
    asyncio.run(flow())


def test_a_retry_after_that_is_no_number_is_an_ordinary_retry(
        make_host: Callable[..., Host]) -> None:
    """"²" is a digit to str.isdigit but no number: it must not stop the delivery."""
    async def flow() -> None:
        async with Receiver() as receiver:
            receiver.script("/sup", (503, {"Retry-After": "\u00b2"}), 200)
            host = make_host({"sup": receiver.url("/sup")}, max_attempts=5)
            async with host.running():
                await inbound(host, "sup: hello")
                row = await until(lambda: status_is(host, "delivered"), "the delivery")
            assert row["attempts"] == 2 and len(receiver.on("/sup")) == 2
    asyncio.run(flow())


@pytest.mark.sqlite_only  # holds the SQLite file's write lock past busy_timeout (sqlite3)
def test_a_delivery_whose_record_fails_is_tried_again(make_host: Callable[..., Host],
                                                      caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    """The receiver took the POST, but recording it failed (another process held the
    database's write lock past busy_timeout): the delivery is not left pending until a
    restart; it is sent again (same X-Smshost-Delivery: receivers de-duplicate). The
    refusal is logged in one line, without a traceback (it had one per try), and the
    recovery in one."""
    async def flow() -> None:
        async with Receiver() as receiver:
            receiver.script("/rec", 0, 200)  # the first answer waits for release
            host = make_host({"rec": receiver.url("/rec")}, max_attempts=5,
                             extra="\n[store]\nbusy_timeout_ms = 100\n")
            async with host.running():
                await inbound(host, "rec: hello")
                await until(lambda: len(receiver.on("/rec")) == 1, "the first POST")
                with write_lock(host.store.path):
                    receiver.release.set()
                    await asyncio.sleep(0.5)  # > busy_timeout: recording the answer failed
                row = await until(lambda: status_is(host, "delivered"), "the delivery")
            hits = receiver.on("/rec")
            assert len(hits) >= 2  # each try while the lock was held was taken, not recorded
            assert {h.headers["X-Smshost-Delivery"] for h in hits} == {str(row["id"])}
    asyncio.run(flow())
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "smshost.webhook" and r.levelname in ("ERROR", "WARNING")]
    assert [level for level, _ in lines] == ["ERROR", "WARNING"], lines
    assert lines[0][1].startswith("webhook deliveries failed (delivery ")
    assert lines[1][1].startswith("webhook deliveries recovered after ")
    assert not [r for r in caplog.records if r.exc_info]


async def _all_tried(host: Host, count: int) -> list[dict[str, Any]] | None:
    rows = await deliveries(host)
    return rows if len(rows) == count and all(r["attempts"] >= 1 for r in rows) else None


def test_refused_connection_is_retried_until_the_receiver_is_up(
        make_host: Callable[..., Host]) -> None:
    port = free_port()  # nothing listens there yet

    async def flow() -> None:
        host = make_host({"later": f"http://127.0.0.1:{port}/later"}, max_attempts=100)
        async with host.running():
            await inbound(host, "later: hello")
            await until(lambda: status_is(host, "pending", attempts=2), "two refused attempts")
            async with Receiver(port=port) as receiver:
                row = await until(lambda: status_is(host, "delivered"), "the delivery")
                log = await attempt_log(host, row["id"])
        assert len(receiver.hits) == 1
        assert receiver.hits[0].headers["X-Smshost-Delivery"] == str(row["id"])
        refused = [a for a in log if a["outcome"] == "retry"]
        assert len(refused) >= 2 and len(refused) == len(log) - 1
        assert all(a["http_status"] is None and "cannot connect" in a["error"]
                   for a in refused)
        assert log[-1]["outcome"] == "delivered"
    asyncio.run(flow())


def test_timeout_is_retried(make_host: Callable[..., Host]) -> None:
    async def flow() -> None:
        async with Receiver() as receiver:
            receiver.script("/slow", 0, 200)  # first: no answer in time, then 200
            host = make_host({"slow": receiver.url("/slow")},
                             sinks=sinks_toml({"slow": receiver.url("/slow")}, max_attempts=5)
                             .replace("timeout = 2.0", "timeout = 0.2"))
            async with host.running():
                await inbound(host, "slow: hello")
                row = await until(lambda: status_is(host, "delivered"), "the delivery")
                log = await attempt_log(host, row["id"])
                receiver.release.set()
        assert [(a["http_status"], a["outcome"]) for a in log] == [
            (None, "retry"), (200, "delivered")]
        assert log[0]["error"] == "no answer within 0.2 s"
    asyncio.run(flow())


# -- dead letters: API and CLI ----------------------------------------------------------

@pytest.mark.slow
def test_dead_letter_is_listed_and_replayed_by_api_and_cli(
        make_host: Callable[..., Host], tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "config"

    async def flow() -> None:
        async with Receiver() as receiver:
            receiver.script("/down", 500)
            host = make_host({"down": receiver.url("/down")}, api_port=port)
            now = [1000.0]
            host.metrics.clock = lambda: now[0]  # stored gauges are read at most 1/s

            async def gauge() -> list[str]:
                now[0] += 1.0
                async with api.get(f"{base}/metrics") as answer:
                    return [line for line in (await answer.text()).splitlines()
                            if line.startswith("smshost_webhook_deliveries{")]

            async with host.running(), api_server(host, port) as base, \
                    aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                await inbound(host, "down: hello")
                row = await until(lambda: status_is(host, "dead"), "the dead letter")
                assert len(receiver.on("/down")) == 3  # max_attempts
                assert await gauge() == ['smshost_webhook_deliveries{status="pending"} 0.0',
                                         'smshost_webhook_deliveries{status="dead"} 1.0']

                async with api.get(f"{base}/api/webhooks/dead-letters") as answer:
                    assert answer.status == 200
                    listed = (await answer.json())["deliveries"]
                assert [(d["id"], d["target"], d["attempts"], d["last_status"])
                        for d in listed] == [(row["id"], "down", 3, 500)]
                assert listed[0]["last_error"].startswith("HTTP 500")
                assert listed[0]["dead_at"] and listed[0]["last_attempt_at"]
                async with aiohttp.ClientSession() as anonymous, \
                        anonymous.get(f"{base}/api/webhooks/dead-letters") as answer:
                    assert answer.status == 401
                for bad, expected in (("/api/webhooks/deliveries?limit=%C2%B2", 400),
                                      ("/api/webhooks/dead-letters?before=%C2%B2", 400),
                                      ("/api/webhooks/deliveries/%C2%B2", 404),
                                      ("/api/webhooks/deliveries/99999999999999999999", 404)):
                    async with api.get(f"{base}{bad}") as answer:
                        assert answer.status == expected, bad
                async with api.post(f"{base}/api/webhooks/dead-letters/99999999999999999999"
                                    "/replay") as answer:
                    assert answer.status == 404

                shown = await cli("webhooks", "dead-letters", "--config", str(cfg))
                assert shown.returncode == 0, shown.stderr
                line = next(ln for ln in shown.stdout.splitlines()
                            if ln.split()[:1] == [str(row["id"])])
                assert "down" in line and "HTTP 500" in line

                receiver.script("/down", 200)  # the receiver is fixed
                # an id that is no dead letter first: reported, and the others still go
                replayed = await cli("webhooks", "replay", "999999", str(row["id"]),
                                     "--config", str(cfg))
                assert replayed.returncode == 1, replayed.stderr
                assert "error: delivery 999999: 404" in replayed.stderr
                assert "1 of 2 not replayed" in replayed.stderr
                assert f"delivery {row['id']} to down: queued again" in replayed.stdout
                done = await until(lambda: status_is(host, "delivered"), "the replay")
                assert len(receiver.on("/down")) == 4
                assert done["replays"] == 1 and done["attempts"] == 1
                # nothing left over from the dead letter once the replay went through
                assert (done["last_status"], done["last_error"], done["dead_at"],
                        done["next_attempt_at"]) == (200, None, None, None)
                assert done["delivered_at"] is not None
                assert await gauge() == ['smshost_webhook_deliveries{status="pending"} 0.0',
                                         'smshost_webhook_deliveries{status="dead"} 0.0']
                log = await attempt_log(host, row["id"])
                assert [(a["replay"], a["outcome"]) for a in log] == [
                    (0, "retry"), (0, "retry"), (0, "dead"), (1, "delivered")]

                async with api.post(f"{base}/api/webhooks/dead-letters/{row['id']}/replay"
                                    ) as answer:
                    assert answer.status == 409
                    assert "not a dead letter" in (await answer.json())["message"]
                async with api.post(f"{base}/api/webhooks/dead-letters/999999/replay"
                                    ) as answer:
                    assert answer.status == 404
                again = await cli("webhooks", "replay", str(row["id"]), "--config", str(cfg))
                assert again.returncode == 1 and "not a dead letter" in again.stderr
                empty = await cli("webhooks", "dead-letters", "--config", str(cfg))
                assert empty.returncode == 0 and "no dead letters" in empty.stdout
                async with api.get(f"{base}/api/webhooks/deliveries",
                                   params={"status": "delivered"}) as answer:
                    assert [d["id"] for d in (await answer.json())["deliveries"]] == [row["id"]]
    asyncio.run(flow())


# -- durability -------------------------------------------------------------------------

def test_pending_delivery_survives_a_restart(make_host: Callable[..., Host]) -> None:
    port = free_port()  # the receiver is down while the first host runs

    async def flow() -> None:
        first = make_host({"crm": f"http://127.0.0.1:{port}/crm"}, max_attempts=100)
        async with first.running():
            message_id = await inbound(first, "crm: survive")
            await until(lambda: status_is(first, "pending", attempts=1), "a failed attempt")
        async with Receiver(port=port) as receiver:
            second = make_host({"crm": f"http://127.0.0.1:{port}/crm"}, max_attempts=100)
            async with second.running():
                row = await until(lambda: status_is(second, "delivered"), "the delivery")
                rows = await deliveries(second)
                message = await second.messages.get(message_id)
        assert len(rows) == 1 and rows[0]["message_id"] == message_id
        assert message is not None and message.status == "routed"
        assert len(receiver.hits) == 1
        assert receiver.hits[0].json["delivery_id"] == row["id"]
        assert receiver.hits[0].json["message"]["body"] == "crm: survive"
    asyncio.run(flow())


def test_stop_with_a_post_under_way_sends_it_again_after_the_restart(
        make_host: Callable[..., Host]) -> None:
    async def flow() -> None:
        async with Receiver() as receiver:
            receiver.script("/hang", 0, 200)  # the first POST gets no answer before the stop
            targets = {"hang": receiver.url("/hang")}
            first = make_host(targets, stop_grace=0.1)
            async with first.running():
                await inbound(first, "hang: hello")
                await until(lambda: receiver.on("/hang"), "the first POST")
            receiver.release.set()
            second = make_host(targets, stop_grace=0.1)
            async with second.running():
                row = await until(lambda: status_is(second, "delivered"), "the delivery")
        hits = receiver.on("/hang")
        assert len(hits) == 2  # at least once: the same delivery again
        assert {h.headers["X-Smshost-Delivery"] for h in hits} == {str(row["id"])}
        assert row["attempts"] == 1  # the cancelled POST was not recorded as an attempt
    asyncio.run(flow())


def test_enqueueing_the_same_message_twice_makes_one_delivery(
        make_host: Callable[..., Host]) -> None:
    async def flow() -> None:
        async with Receiver() as receiver:
            host = make_host({"crm": receiver.url("/crm")})
            async with host.running():
                first = await inbound(host, "crm: once")
                await inbound(host, "crm: another")
                await until(lambda: _all_delivered(host, 2), "both deliveries")
                # What the router does again when it crashed between the sink's commit
                # and its own: the sink answers the delivery it already has.
                message = await host.messages.get(first)
                route = next(r for r in host.router.routes if r.name == "to-crm")
                again = await host.sinks["webhook"].deliver(message, route)
                rows = await deliveries(host)
                await asyncio.sleep(0.3)  # longer than any retry wait: nothing more comes
        mine = next(r for r in rows if r["message_id"] == first)
        assert again.outcome == "delivered" and again.data == {"delivery_id": mine["id"]}
        assert len(rows) == 2 and len(receiver.hits) == 2
    asyncio.run(flow())


async def _all_delivered(host: Host, count: int) -> bool:
    rows = await deliveries(host)
    return len(rows) == count and all(r["status"] == "delivered" for r in rows)


# -- configuration ----------------------------------------------------------------------

def test_route_checks_name_unknown_targets_and_bad_urls(
        make_host: Callable[..., Host]) -> None:
    host = make_host({"crm": "http://127.0.0.1:9/crm"},
                     routes=routes_toml(["crm"]).replace('target = "crm"\npattern',
                                                         'target = "nope"\npattern'))
    host.load_plugins()
    errors = [r.error or "" for r in host.plugins.failures]
    assert any("inbound[0].target" in e and "no webhook target named 'nope'" in e
               and "targets: crm" in e for e in errors), errors
    assert "webhook" in host.sinks  # the sink itself is fine


def test_bad_target_settings_are_reported_with_file_and_line(
        make_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    host = make_host({"crm": "ftp://example.com/crm"})
    host.load_plugins()
    errors = "\n".join(r.error or "" for r in host.plugins.failures)
    assert re.search(r"sinks\.toml:\d+: webhook\.targets\.crm\.url: must be an http:// or "
                     r"https:// URL", errors), errors
    assert f"environment variable {SECRET_ENV} is not set" in errors
    assert "webhook" not in host.sinks
    assert "no webhook sink is available" in errors  # and the routes say so


# -- purge ------------------------------------------------------------------------------

@pytest.mark.sqlite_only  # reads SQLite's explain query plan (PostgreSQL plans differ)
def test_the_metrics_queries_read_indexes_only(make_host: Callable[..., Host]) -> None:
    """The stored gauges run on every scrape: each must be an index-only read (measured:
    well under 1 ms at 1 M deliveries, 120 ms at 1 M waiting outbox rows)."""
    from host.metrics import OUTBOX_DEPTH
    from plugins.sinks.webhook import WAITING_AND_DEAD

    host = make_host({"t": "http://127.0.0.1:1/"})

    async def flow() -> list[str]:
        async with host.running(background=False):
            return await host.store.read(lambda db: [
                row[3] for sql in (OUTBOX_DEPTH, WAITING_AND_DEAD)
                for row in db.execute(f"explain query plan {sql}")])
    assert asyncio.run(flow()) == [
        "SCAN outbox USING COVERING INDEX outbox_account_due",
        "SEARCH webhook_deliveries USING COVERING INDEX webhook_deliveries_status (status=?)"]


def test_purge_deletes_old_deliveries_and_their_attempts(
        make_host: Callable[..., Host]) -> None:
    async def flow() -> None:
        async with Receiver() as receiver:
            host = make_host({"crm": receiver.url("/crm")})
            async with host.running():
                await inbound(host, "crm: old")
                await until(lambda: status_is(host, "delivered"), "the delivery")
                await host.store.write(lambda db: db.execute(
                    "update webhook_deliveries set updated_at = '2000-01-01T00:00:00.000000Z'"))
                counted = await host.purger.run(days=2, dry_run=True)
                assert len(await deliveries(host)) == 1
                purged = await host.purger.run(days=2)
                left = await deliveries(host)
                attempts = await host.store.read(lambda db: db.execute(
                    "select count(*) from webhook_attempts").fetchone()[0])
        assert counted["webhook_deliveries"] == 1 and counted["webhook_attempts"] == 1
        assert purged["webhook_deliveries"] == 1 and purged["webhook_attempts"] == 1
        assert left == [] and attempts == 0
    asyncio.run(flow())


def test_purge_keeps_pending_deliveries_and_their_messages(
        make_host: Callable[..., Host]) -> None:
    """A receiver down for longer than the purge age still gets its deliveries: a pending
    one is work in progress (it was purged with its attempts, and its message too)."""
    async def flow() -> tuple[list[str], list[str], dict[str, int]]:
        host = make_host({"crm": "http://127.0.0.1:1/crm"}, max_attempts=1000,
                         first_delay=30.0, max_delay=60.0)
        async with host.running():
            kept = await inbound(host, "crm: still to deliver")
            await until(lambda: status_is(host, "pending", attempts=1), "a failed attempt")
            done = await inbound(host, "crm: delivered long ago")
            await until(lambda: _two_deliveries(host), "the second delivery")
            await host.store.write(lambda db: db.executescript(
                f"update webhook_deliveries set status = 'delivered' where message_id = {done};"
                "update webhook_deliveries set updated_at = '2000-01-01T00:00:00.000000Z';"
                "update messages set status = 'routed', created_at = "
                "'2000-01-01T00:00:00.000000Z', updated_at = '2000-01-01T00:00:00.000000Z';"))
            purged = await host.purger.run(days=2)
            left = [r["status"] for r in await deliveries(host)]
            bodies = await host.store.read(lambda db: [r[0] for r in db.execute(
                "select body from messages order by id")])
        assert kept < done
        return left, bodies, purged
    left, bodies, purged = asyncio.run(flow())
    assert left == ["pending"] and bodies == ["crm: still to deliver"]
    assert purged["webhook_deliveries"] == 1 and purged["messages"] == 1


async def _two_deliveries(host: Host) -> bool:
    """Both deliveries stored and each tried once: a first attempt still under way would
    write its outcome (and a fresh updated_at) over what the test sets next."""
    rows = await deliveries(host)
    return len(rows) == 2 and all(r["attempts"] >= 1 for r in rows)


def test_backoff_never_overflows() -> None:
    """factor ** attempts overflowed a float (10 ** 400): a crash of the delivery's
    bookkeeping, with the largest settings that check accepts."""
    from plugins.sinks.webhook import WebhookSettings, backoff

    settings = WebhookSettings(max_attempts=1000, first_delay=86400.0, factor=100.0,
                               max_delay=86400.0, jitter=0.0)
    assert backoff(settings, 1000) == backoff(settings, 10**6) == 86400.0


def test_status_changes_go_to_the_status_target(make_host: Callable[..., Host]) -> None:
    """O8: with status_target set, every status change of an outbound message is POSTed."""
    async def flow() -> list[dict[str, Any]]:
        async with Receiver() as receiver:
            host = make_host({"crm": receiver.url("/crm"), "events": receiver.url("/events")},
                             status_target="events")
            async with host.running():
                message, _ = await host.messages.add(NewMessage(
                    direction="out", body="Your code is 42", status="queued",
                    broker="twilio", account="main", local="+15550001111",
                    remote="+15552223333"))
                await host.messages.set_status(message.id, "sent", source="test")
                await host.messages.set_status(message.id, "delivered", source="receipt")
                await inbound(host, "an inbound message is no status event")
                assert await host.router.idle()
                await until(lambda: len(receiver.on("/events")) == 3, "three status events")
            assert receiver.rejected == []
            return [hit.json for hit in receiver.on("/events")]
    events = sorted(asyncio.run(flow()), key=lambda e: e["at"])  # POSTs may overtake
    assert [(e["event"], e["old"], e["new"]) for e in events] == [
        ("message.status", None, "queued"), ("message.status", "queued", "sent"),
        ("message.status", "sent", "delivered")]
    assert {e["message_id"] for e in events} == {1}
    assert events[2]["source"] == "receipt" and events[0]["to"] == "+15552223333"
