"""Two nodes on one PostgreSQL database (issue 17 points 2 and 3): a configuration change
made on one is live on the other with one history entry, a version the other cannot
run is refused there and shown, and the event streams of one node carry what the other
did (host.follow, host.config.adopt, host.pg.listen)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from host.config import load_settings
from host.config.local import shared_digest
from host.config.change import ConfigChange, atomic_write, read_files
from host.core import Host
from host.messages import NewMessage
from host.pg.listen import Listener
from tests.conftest import NO_ROUTING, base_config

WAIT = 10.0
AUTH = {"Authorization": "Bearer test-token"}
SECRET = '\n[callbacks]\nsecret = { env = "ONLY_ON_A" }\n'
"""A secret in A's environment only (a file secret missing on B would do the same)."""


def node(tmp_path: Path, name: str, pg_url: str) -> Host:
    """A node with its own config and data directories; the same files as its peers."""
    cfg = tmp_path / name / "config"
    cfg.mkdir(parents=True)
    smshost = base_config(tmp_path, extra=f"""
        [store]
        url = "{pg_url}"

        [cluster]
        config_poll_s = 0.05
        events_poll_s = 0.05
        """)
    for file, text in (("smshost", smshost), ("routes", NO_ROUTING)):
        (cfg / f"{file}.toml").write_text(text, encoding="utf-8")
    return Host(load_settings(cfg), data_dir=tmp_path / name / "data", config_dir=cfg)


async def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def client(host: Host) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=host.app_for())
    async with httpx.AsyncClient(transport=transport, base_url="http://smshost",
                                 headers=AUTH) as http:
        yield http


class Stream:
    """An SSE request to a node's app, driven over ASGI: the chunks as they come."""

    def __init__(self, host: Host, path: str) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._gone = asyncio.Event()
        self.status = 0
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8080),
                 "client": ("127.0.0.1", 50000),
                 "headers": [(b"host", b"smshost"), (b"accept", b"text/event-stream"),
                             (b"authorization", b"Bearer test-token")]}
        self.task = asyncio.create_task(host.app_for()(scope, self._receive, self._send))
        self._asked = False
        self._text = ""

    async def _receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message.get("body"):
            await self.chunks.put(message["body"])

    async def events(self, kind: str, count: int) -> list[dict[str, Any]]:
        """The data of the next ``count`` events of ``kind`` (bounded in time)."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT
        while len(found) < count:
            while "\n\n" not in self._text:
                try:
                    chunk = await asyncio.wait_for(self.chunks.get(),
                                                   max(deadline - time.monotonic(), 0.01))
                except TimeoutError:
                    pytest.fail(f"the stream gave {found} of {count} {kind} events "
                                f"(then {self._text!r}; done: {self.task.done()})")
                self._text += chunk.decode()
            block, self._text = self._text.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.splitlines()
                          if ": " in line and not line.startswith(":"))
            if fields.get("event") == kind:
                found.append(json.loads(fields["data"]))
        return found

    async def quiet(self, kind: str, seconds: float) -> list[str]:
        """The ``kind`` events that come within ``seconds`` (none expected)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    self._text += (await self.chunks.get()).decode()
        return [b for b in self._text.split("\n\n") if f"event: {kind}" in b]

    async def close(self) -> None:
        self._gone.set()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


# -- configuration -----------------------------------------------------------------------

def test_an_api_change_on_one_node_is_live_on_the_other_with_one_entry(
        tmp_path: Path, pg_url: str) -> None:
    a, b = node(tmp_path, "a", pg_url), node(tmp_path, "b", pg_url)
    b_data = b.settings.server.data_dir

    async def main() -> None:
        async with a.running(), b.running(), client(a) as on_a, client(b) as on_b:
            assert b.live.applied_version == a.live.applied_version == 1
            changed = await on_a.patch("/api/config/purge", json={"days": 10},
                                       params={"note": "made on a"}, headers={"If-Match": "*"})
            assert changed.status_code == 200, changed.text
            await until(lambda: b.live.settings.purge.days == 10, "the change live on b")
            assert b.settings.purge.days == 10  # the running node's, through the live path
            assert b.live.applied_version == a.live.applied_version == 2
            b_files = read_files(b.config_dir)  # type: ignore[arg-type]
            a_files = read_files(a.config_dir)  # type: ignore[arg-type]
            assert shared_digest(b_files) == shared_digest(a_files)  # the same but...
            assert b_files != a_files  # ...b's own data_dir (host.config.local)
            assert b.settings.server.data_dir == b_data
            history = (await on_b.get("/api/history")).json()
            entries = history["entries"] if isinstance(history, dict) else history
            assert [(e["id"], e["source"]) for e in entries] == [(2, "api"), (1, "start")]
            health = (await on_b.get("/health")).json()
            assert health["config"]["applied_version"] == 2
            assert health["config"]["source"] == "cluster"
    asyncio.run(main())


def test_a_version_a_node_cannot_run_is_refused_there_and_shown(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker whose secret is in A's environment only: B, started after the change,
    keeps its files and shows the refusal; a later version it can run clears it."""
    a, b = node(tmp_path, "a", pg_url), node(tmp_path, "b", pg_url)
    assert a.config_dir is not None and b.config_dir is not None
    before = (b.config_dir / "smshost.toml").read_text()

    async def main() -> None:
        monkeypatch.setenv("ONLY_ON_A", "s3cret")
        async with a.running(), client(a) as on_a:
            atomic_write(a.config_dir / "smshost.toml", before + SECRET)  # type: ignore[operator]
            await a.live.apply(ConfigChange("file"))
            assert a.live.applied_version == 2
            assert a.live.settings.callbacks.secret is not None
            monkeypatch.delenv("ONLY_ON_A")
            async with b.running(), client(b) as on_b:
                refused = await until(lambda: b.live.refused, "b refusing version 2")
                assert refused.change.source == "cluster"
                assert "ONLY_ON_A" in "\n".join(refused.errors)
                assert b.live.applied_version == 1  # what it runs: the first version
                assert (b.config_dir / "smshost.toml").read_text() == before  # type: ignore[operator]
                assert b.live.settings.callbacks.secret is None
                health = (await on_b.get("/health")).json()
                assert health["status"] == "degraded"
                assert health["config"]["applied_version"] == 1
                assert "version 2" in health["config"]["refused"]["note"]
                assert (await on_a.get("/health")).json()["config"]["applied_version"] == 2
                # A reverts: version 3 has version 1's files, which B runs already
                reverted = await on_a.post("/api/history/1/revert")
                assert reverted.status_code == 201, reverted.text
                await until(lambda: b.live.applied_version == 3, "b on version 3")
                assert b.live.refused is None
                history = (await on_b.get("/api/history")).json()
                entries = history["entries"] if isinstance(history, dict) else history
                assert [e["source"] for e in entries] == ["revert", "file", "start"]
    asyncio.run(main())


# -- events ------------------------------------------------------------------------------

def msg(body: str) -> NewMessage:
    return NewMessage(direction="in", body=body, status="received", broker="sim")  # type: ignore[arg-type]


def test_status_events_made_on_one_node_stream_on_the_other_once_in_order(
        tmp_path: Path, pg_url: str) -> None:
    a, b = node(tmp_path, "a", pg_url), node(tmp_path, "b", pg_url)

    async def main() -> None:
        async with a.running(), b.running():
            stream = Stream(b, "/api/events")
            try:
                await until(lambda: b.events.subscribers, "the stream subscribed")
                ids = [(await a.messages.add(msg("one")))[0].id,
                       (await b.messages.add(msg("two")))[0].id,  # one of b's own
                       (await a.messages.add(msg("three")))[0].id]
                got = await stream.events("status", 3)
                assert stream.status == 200
                assert [e["message_id"] for e in got] == ids
                assert [e["new"] for e in got] == ["received"] * 3
                assert got[0]["id"] < got[1]["id"] < got[2]["id"]
                assert await stream.quiet("status", 0.5) == []  # once each
            finally:
                await stream.close()
    asyncio.run(main())


def test_a_write_group_that_stored_events_notifies_listeners_once(
        tmp_path: Path, pg_url: str) -> None:
    """The hint comes from the writer's NOTIFY alone (no poll here), after the commit,
    naming the followed tables the group wrote."""
    a = node(tmp_path, "a", pg_url)
    hints: list[tuple[str, ...]] = []

    async def main() -> None:
        async with a.running():
            listener = Listener(pg_url, lambda *tables: hints.append(tables))
            task = asyncio.create_task(listener.run())
            try:
                await until(lambda: listener.listening, "listening")
                hints.clear()
                await asyncio.gather(*(a.messages.add(msg(f"m{i}")) for i in range(5)))
                await until(lambda: hints, "a notification")
                await asyncio.sleep(0.2)
                assert all(h == ("message_events",) for h in hints), hints
                assert 1 <= len(hints) <= 5  # one per write group, not per row
                assert a.store.stats.commits >= len(hints)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())


def test_a_lost_listening_connection_is_opened_again(tmp_path: Path, pg_url: str) -> None:
    b = node(tmp_path, "b", pg_url)

    async def main() -> None:
        async with b.running():
            listener = await until(lambda: b.follower.listener, "the listener")
            await until(lambda: listener.listening, "listening")
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("select pg_terminate_backend(%s)", [listener.backend_pid])
            await until(lambda: listener.connections == 2 and listener.listening,
                        "listening again", timeout=5)
    asyncio.run(main())


def test_a_followed_table_wakes_its_follower_on_the_other_node(
        tmp_path: Path, pg_url: str) -> None:
    """What the desk's streams use (the queue sink follows ``queue_feed``): a plugin's
    wake-up when another node commits rows to the table it follows; none after it
    stops following."""
    a, b = node(tmp_path, "a", pg_url), node(tmp_path, "b", pg_url)
    woken: list[int] = []

    async def main() -> None:
        async with a.running(), b.running():
            unfollow = b.follow("messages", lambda: woken.append(1))
            await until(lambda: b.follower.rounds > 2, "b following")
            assert woken == []  # rows before it followed wake nothing
            await a.messages.add(msg("for the desk"))
            await until(lambda: woken, "b woken")
            unfollow()
            count = len(woken)
            await a.messages.add(msg("after"))
            rounds = b.follower.rounds
            await until(lambda: b.follower.rounds > rounds + 2, "more rounds on b")
            assert len(woken) == count
    asyncio.run(main())


@pytest.mark.sqlite_only
def test_a_node_on_sqlite_follows_nothing(host_factory: Callable[..., Host]) -> None:
    """One node: no follower, no listener; status events go straight to the bus."""
    host = host_factory()

    async def main() -> None:
        async with host.running():
            sub = host.events.subscribe()
            await host.messages.add(msg("local"))
            event = await asyncio.wait_for(sub.queue.get(), WAIT)
            assert event["new"] == "received"
            assert host.follower.rounds == 0 and host.follower.listener is None
    asyncio.run(main())
