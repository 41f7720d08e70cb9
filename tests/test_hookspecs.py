"""Every hook is documented and tested; each hook works through the real host."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database, Migrations
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from host import hookimpl, hookspecs
from host.core import Host
from host.defaults.handler import HandlerSink
from host.messages import NewMessage
from host.sends import SendError, SendRequest

HOOKS = sorted(name for name, fn in vars(hookspecs).items()
               if callable(fn) and hasattr(fn, "smshost_spec"))


def test_hooks_are_found() -> None:
    assert "startup" in HOOKS and "purge" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented(name: str) -> None:
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert "Use in handler scripts:" in doc, f"{name}: say whether handler scripts may use it"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name}: document parameter {param}"
    docs = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    signature = f"{name}({', '.join(inspect.signature(fn).parameters)})"
    assert signature in docs, f"docs/plugins.md must show {signature}"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name: str) -> None:
    assert f"test_hook_{name}" in globals(), f"write test_hook_{name} in this file"


def run(host: Host, coro_fn: Callable[[], Any]) -> Any:
    async def main() -> Any:
        async with host.running(background=False):
            return await coro_fn()
    return asyncio.run(main())


def plugin_file(plugins_dir: Path, name: str, text: str) -> None:
    (plugins_dir / "sinks" / f"{name}.py").write_text(textwrap.dedent(text))


def test_hook_register_brokers(host: Host, tmp_path: Path) -> None:
    definition = tmp_path / "acme.xml"
    definition.write_text("<broker name='acme'/>")

    class Package:
        @hookimpl
        def register_brokers(self, register: Callable[..., None]) -> None:
            register(definition)

    host.plugins.register(Package(), "package")
    assert host.load_plugins().brokers["acme"].definition.path == definition


def test_hook_register_sinks(host: Host) -> None:
    class Echo:
        kind = "echo"

    class Package:
        @hookimpl
        def register_sinks(self, register: Callable[[type], None]) -> None:
            register(Echo)

    host.plugins.register(Package(), "package")
    # handler: the default sink (host.defaults.handler), there whatever the plugins
    assert host.load_plugins().sinks == {"echo": Echo, "handler": HandlerSink}


def test_hook_register_migrations(host: Host) -> None:
    migrations = Migrations("notes-plugin")

    @migrations()
    def create_notes(db: Database) -> None:
        db.execute("create table notes (id integer primary key, text text)")

    class Notes:
        @hookimpl
        def register_migrations(self, register: Callable[[Migrations], None]) -> None:
            register(migrations)

    host.plugins.register(Notes(), "notes")
    tables = run(host, lambda: host.store.read(lambda db: db.table_names()))
    assert "notes" in tables and "messages" in tables


def test_hook_register_routes(host: Host) -> None:
    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    class Extra:
        @hookimpl
        def register_routes(self, host: Host) -> list[Route]:
            return [Route("/api/hello", hello), Route("/hello", hello)]

    host.plugins.register(Extra(), "extra")
    with TestClient(host.app_for()) as client:
        assert client.get("/hello").text == "hello"
        assert client.get("/api/hello").status_code == 401  # /api needs the token
        ok = client.get("/api/hello", headers={"Authorization": "Bearer test-token"})
        assert ok.text == "hello"


def test_a_registration_hook_that_raises_is_a_recorded_load_failure(host: Host) -> None:
    class Broken:
        @hookimpl
        def register_migrations(self, register: Callable[[Migrations], None]) -> None:
            raise RuntimeError("no tables")

        @hookimpl
        def register_sinks(self, register: Callable[[type], None]) -> None:
            raise RuntimeError("no sinks")

    host.plugins.register(Broken(), "broken")
    host.load_plugins()
    host.migration_sets()
    host.migration_sets()  # recorded once
    assert [(r.name, r.source, r.error) for r in host.plugins.failures] == [
        ("broken", "hook register_sinks", "RuntimeError: no sinks"),
        ("broken", "hook register_migrations", "RuntimeError: no tables")]


@pytest.mark.sqlite_only  # the hook prepares SQLite connections (none on PostgreSQL)
def test_hook_prepare_connection(host: Host) -> None:
    class Functions:
        @hookimpl
        def prepare_connection(self, conn: sqlite3.Connection) -> None:
            conn.create_function("shout", 1, lambda s: s.upper() + "!")

    host.plugins.register(Functions(), "functions")
    result = run(host, lambda: host.store.read(
        lambda db: db.execute("select shout('hi')").fetchone()[0]))
    assert result == "HI!"


def test_hook_startup(host: Host) -> None:
    seen: list[str] = []

    class Lifecycle:
        @hookimpl
        async def startup(self, host: Host) -> None:
            seen.append("startup:" + str(host.store.is_open))

    host.plugins.register(Lifecycle(), "lifecycle")
    run(host, lambda: asyncio.sleep(0))
    assert seen == ["startup:True"]


def test_hook_shutdown(host: Host) -> None:
    seen: list[bool] = []

    class Lifecycle:
        @hookimpl
        def shutdown(self, host: Host) -> None:
            seen.append(host.store.is_open)  # the store is still open

    host.plugins.register(Lifecycle(), "lifecycle")
    run(host, lambda: asyncio.sleep(0))
    assert seen == [True]


def test_hook_message_stored(host: Host) -> None:
    stored: list[tuple[int, str]] = []

    class Listener:
        @hookimpl
        async def message_stored(self, message: Any) -> None:
            stored.append((message.id, message.body))

    host.plugins.register(Listener(), "listener")

    async def add_twice() -> None:
        new = NewMessage(direction="in", body="hi", status="received", broker="b",
                         broker_message_id="m1")
        await host.messages.add(new)
        await host.messages.add(new)  # a broker retry: not announced again

    run(host, add_twice)
    assert stored == [(1, "hi")]


def test_hook_message_status_changed(host: Host) -> None:
    changes: list[tuple[str | None, str, str]] = []

    class Listener:
        @hookimpl
        def message_status_changed(self, old: str | None, new: str, event: Any) -> None:
            changes.append((old, new, event.source))

    host.plugins.register(Listener(), "listener")

    async def flow() -> None:
        message, _ = await host.messages.add(NewMessage(
            direction="out", body="x", status="queued", source="api"))
        await host.messages.set_status(message.id, "sent", source="broker")

    run(host, flow)
    assert changes == [(None, "queued", "api"), ("queued", "sent", "broker")]


def test_hook_purge(host: Host) -> None:
    calls: list[tuple[str, int, bool]] = []

    class Cleaner:
        @hookimpl
        def purge(self, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
            calls.append((cutoff[:4], batch_size, dry_run))
            return {"cleaner_rows": 7}

    host.plugins.register(Cleaner(), "cleaner")
    counts = run(host, lambda: host.purger.run(10, dry_run=True))
    assert counts == {"cleaner_rows": 7, "messages": 0, "message_events": 0,
                      "simulator_inbox": 0, "idempotency": 0, "orphan_receipts": 0,
                      "mo_parts": 0, "conversation_state": 0, "handler_loads": 0,
                      "callback_deliveries": 0}
    assert calls and calls[0][1:] == (100, True)  # purge.batch_size


def test_hook_messages_kept(host: Host, caplog: pytest.LogCaptureFixture) -> None:
    """The purge keeps what a plugin's query names, however old; a query that fails
    keeps every message that run (and says so) instead of deleting what it keeps."""
    query = ["select id from messages where body = 'still open'"]

    class Keeper:
        @hookimpl
        def messages_kept(self, host: Host) -> Any:
            if query[0] == "raise":
                raise RuntimeError("keeper broke")
            return query[0]

    host.plugins.register(Keeper(), "keeper")
    later = "9999-01-01T00:00:00.000000Z"  # every message is older

    async def flow() -> tuple[list[dict[str, int]], list[dict[str, int]], list[str]]:
        for body in ("done", "still open", "done too"):
            # routed: an MO still "received" is work in progress, kept by the core
            await host.messages.add(NewMessage(direction="in", body=body, status="routed"))
        refused = []
        for bad in ("select nope from nowhere", "select id, body from messages", "raise",
                    42):  # a failing query, two columns, an error, no SQL text
            query[0] = bad  # type: ignore[call-overload]
            refused += (await host.hooks.purge(host, later, 100, False)).results
        query[0] = "select id from messages where body = 'still open'"
        purged = (await host.hooks.purge(host, later, 100, False)).results
        left = await host.store.read(lambda db: [r["body"] for r in db.query(
            "select body from messages")])
        return refused, purged, left

    refused, purged, left = run(host, flow)
    assert not any("messages" in counts for counts in refused)
    assert {"idempotency": 0, "orphan_receipts": 0, "mo_parts": 0}.items() <= \
        next(c for c in refused if "mo_parts" in c).items()  # the rest is purged
    assert caplog.text.count("the query of plugin keeper of the messages it keeps "
                             "failed") == 2
    assert caplog.text.count("plugin keeper failed to say which messages it keeps") == 1
    assert caplog.text.count("plugin keeper gave no SQL text") == 1
    assert {"messages": 2, "message_events": 2} in [
        {k: v for k, v in c.items() if k.startswith("message")} for c in purged]
    assert left == ["still open"]


def test_hook_message_routed(host_factory: Callable[..., Host], tmp_path: Path) -> None:
    from host.sinks.base import Delivery, Sink

    seen: list[tuple[str, str | None, str]] = []

    class Echo(Sink):
        kind = "echo"

        async def deliver(self, message: Any, route: Any) -> Delivery:
            return Delivery.delivered()

    class Package:
        @hookimpl
        def register_sinks(self, register: Callable[[type], None]) -> None:
            register(Echo)

        @hookimpl
        def message_routed(self, message: Any, route: Any, outcome: str) -> None:
            seen.append((message.body, route.name if route else None, outcome))

    host = host_factory(routes="""
        [[inbound]]
        name = "everything"
        destination = "echo"
        default = true
        """)
    host.plugins.register(Package(), "package")

    async def flow() -> None:
        async with host.running():
            await host.messages.add(NewMessage(direction="in", body="hi", status="received",
                                               local="+1", remote="+2"))
            assert await host.router.idle()
    asyncio.run(flow())
    assert seen == [("hi", "everything", "routed")]


def test_hook_handler_reloaded(host: Host, plugins_dir: Path) -> None:
    events: list[tuple[str, str, bool]] = []

    class Listener:
        @hookimpl
        def handler_reloaded(self, name: str, status: str, error: str | None) -> None:
            events.append((name, status, error is not None))

    host.plugins.register(Listener(), "listener")
    path = plugins_dir / "handlers" / "Greeter.py"

    async def flow() -> None:
        async with host.running(background=False):
            path.write_text("def handle(ctx):\n    ctx.reply('hi')\n")
            await host.handlers.reconcile_async()
            path.write_text("def handle(ctx):\n    oops(\n")
            await host.handlers.reconcile_async()
            path.unlink()
            await host.handlers.reconcile_async()
    asyncio.run(flow())
    assert events == [("Greeter", "loaded", False), ("Greeter", "failed", True),
                      ("Greeter", "removed", False)]


def test_hook_signed_out(host: Host) -> None:
    """A browser session signed out is announced with its login (a token is not)."""
    from starlette.testclient import TestClient

    seen: list[str] = []

    class Listener:
        @hookimpl
        def signed_out(self, login: str) -> None:
            seen.append(login)

    host.plugins.register(Listener(), "listener")
    admin = {"Authorization": "Bearer test-token"}
    with TestClient(host.app_for(), base_url="https://testserver") as client:
        assert client.post("/api/users", headers=admin, json={
            "login": "ann", "roles": ["agent"], "password": "correct horse"}
        ).status_code == 201
        signed = client.post("/api/session", json={"login": "ann",
                                                   "password": "correct horse"})
        csrf = {"X-CSRF-Token": signed.json()["csrf_token"]}
        assert client.delete("/api/session", headers=csrf).status_code == 204
        assert client.delete("/api/session", headers=admin).status_code == 400
    assert seen == ["ann"]


def test_hook_people_in_config(host: Host) -> None:
    """A plugin's configured workgroups and users are imported into the database once,
    at the first start; a plugin that raises is left out, the others still count."""
    class Config:
        @hookimpl
        def people_in_config(self, host: Host) -> Any:
            return [{"kind": "workgroup", "name": "night", "members": ["ann"],
                     "broker": "", "account": "main"}]

    class Broken:
        @hookimpl
        def people_in_config(self, host: Host) -> Any:
            raise RuntimeError("no config")

    host.plugins.register(Config(), "config")
    host.plugins.register(Broken(), "broken")

    async def flow() -> list[Any]:
        return [await host.people.workgroup("night"), await host.people.user("ann")]

    night, ann = run(host, flow)
    assert night["members"] == ["ann"] and night["account"] == "main"
    assert ann["roles"] == ["agent"]


def test_hook_sender_for(host: Host) -> None:
    """A send as a workgroup or user goes out from the broker and account the first
    plugin names; unknown without an answer, refused with none to send from."""
    class Teams:
        @hookimpl
        def sender_for(self, host: Host, kind: str, name: str) -> Any:
            if kind == "workgroup" and name in ("team", "silent"):
                return ("nowhere", "acct") if name == "team" else (None, "")
            return None

    async def flow() -> list[Any]:
        answers: list[Any] = [host.hooks.sender_for(host, "workgroup", "team"),
                              host.hooks.sender_for(host, "user", "team")]
        for who in ({"workgroup": "team"}, {"workgroup": "silent"}, {"user": "team"}):
            try:
                await host.outbound.send(SendRequest(to="+15550001", text="hi", **who))
            except SendError as exc:
                answers.append(exc.code)
        return answers

    host.plugins.register(Teams(), "teams")
    assert run(host, flow) == [("nowhere", "acct"), None, "unknown_broker", "no_account",
                               "unknown_user"]
