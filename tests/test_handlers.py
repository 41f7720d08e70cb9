"""Handler scripts: hot reload through the real watcher, failures, context API (H1-H5)."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.core import Host
from host.messages import MessageFilter, NewMessage
from tests.conftest import routes_toml, run_cli

BROKERS = """
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "http"

[[brokers.accounts]]
id = "main"
local_address = "+15550100"
attrs = { team = "blue" }
"""

ROUTES = routes_toml(("to-handler", "body", "H.*", "handler", "Echo"),
                     ("default", "", "", "memory", "default"),
                     extra="[routing]\nretry_delays = []\n")


def handler(plugins_dir: Path, name: str, source: str) -> Path:
    path = plugins_dir / "handlers" / f"{name}.py"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(source), encoding="utf-8")
    tmp.rename(path)  # like an editor's atomic save
    return path


@pytest.fixture
def make_host(host_factory: Callable[..., Host], memory_sink: Path,
              plugins_dir: Path) -> Callable[..., Host]:
    def make(routes: str = ROUTES, extra: str = "") -> Host:
        from tests.conftest import base_config

        tmp = plugins_dir.parent
        # shipped plugins on: the simulator broker and the example handler are shipped
        config = base_config(tmp, extra=extra).replace("shipped = false", "shipped = true")
        return host_factory(smshost=config, brokers=BROKERS, routes=routes)
    return make


def mo(body: str, remote: str = "+14155550123") -> NewMessage:
    return NewMessage(direction="in", body=body, status="received", broker="sim",
                      account="main", local="+15550100", remote=remote, attrs={"k": "v"})


async def send(host: Host, body: str, remote: str = "+14155550123") -> Any:
    message, _ = await host.messages.add(mo(body, remote))
    assert await host.router.idle()
    return await host.messages.get(message.id)


async def outbound(host: Host) -> list[str]:
    found = await host.messages.find(MessageFilter(direction="out", limit=50))
    return [m.body for m in reversed(found)]


async def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def test_save_reload_break_and_delete_through_the_real_watcher(
        make_host: Callable[..., Host], plugins_dir: Path) -> None:
    path = handler(plugins_dir, "Echo", "def handle(ctx):\n    ctx.reply('v1: ' + ctx.body)\n")
    host = make_host()

    async def flow() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with host.running():
            await send(host, "Hi one")
            v1 = host.handlers.get("Echo").digest  # type: ignore[union-attr]
            handler(plugins_dir, "Echo", "async def handle(ctx):\n    ctx.reply('v2: ' + ctx.body)\n")
            assert await wait_for(lambda: host.handlers.get("Echo").digest != v1)  # type: ignore[union-attr]
            await send(host, "Hi two")
            handler(plugins_dir, "Echo", "def handle(ctx):\n    ctx.reply('v3' \n")
            assert await wait_for(lambda: "Echo" in host.handlers.failed)
            await send(host, "Hi three")  # the old version still serves
            out["failure"] = host.handlers.failed["Echo"].error
            out["health"] = await asyncio.to_thread(lambda: None)
            path.unlink()
            assert await wait_for(lambda: host.handlers.get("Echo") is None)
            deleted = await send(host, "Hi four")
            out["deleted_route"] = deleted.route
            out["outbound"] = await outbound(host)
            out["loads"] = await host.store.read(lambda db: [
                r[0] for r in db.execute(
                    "select status from handler_loads where name = 'Echo' order by id")])
        return out
    out = asyncio.run(flow())
    assert out["outbound"] == ["v1: Hi one", "v2: Hi two", "v2: Hi three"]
    assert out["failure"].startswith(f"{path}:2: SyntaxError")
    assert out["deleted_route"] == "default"
    assert [g[1] for g in host.sinks["memory"].got] == ["Hi four"]  # type: ignore[attr-defined]
    assert out["loads"] == ["loaded", "loaded", "failed", "removed"]


def test_health_shows_a_failed_handler_and_a_route_without_handler(
        make_host: Callable[..., Host], plugins_dir: Path) -> None:
    handler(plugins_dir, "Broken", "import nothing_here_at_all\n")
    host = make_host(routes=routes_toml(("h", "body", "x", "handler", "Echo"),
                                        ("default", "", "", "memory", "d")))
    with TestClient(host.app_for()) as client:
        health = client.get("/health").json()
        status = client.get("/api/handlers",
                            headers={"Authorization": "Bearer test-token"}).json()
    assert health["status"] == "degraded"
    (failure,) = health["handlers"]["failures"]
    assert failure["name"] == "Broken" and "ModuleNotFoundError" in failure["error"]
    assert health["handlers"]["routes_without_handler"] == [{"route": "h", "handler": "Echo"}]
    assert [h["status"] for h in status["history"] if h["name"] == "Broken"] == ["failed"]


@pytest.mark.parametrize(("source", "fragment"), [
    ("x = 1\n", "no handle(ctx) function"),
    ("def handle():\n    pass\n", "handle must take one argument"),
    ("import sys\nsys.exit(2)\n", "SystemExit: 2"),
    ("from host import hookimpl\n@hookimpl\ndef startupp(host):\n    pass\n"
     "def handle(ctx):\n    pass\n", "unknown hook 'startupp'"),
])
def test_invalid_handler_files_are_refused(make_host: Callable[..., Host], plugins_dir: Path,
                                           source: str, fragment: str) -> None:
    handler(plugins_dir, "Echo", source)
    host = make_host()
    host.load_plugins()
    assert host.handlers.get("Echo") is None
    assert fragment in (host.handlers.failed["Echo"].error or "")


def test_exception_and_timeout_fall_back_to_the_default_route_with_the_traceback(
        make_host: Callable[..., Host], plugins_dir: Path) -> None:
    handler(plugins_dir, "Echo", """
        import asyncio, time

        def handle(ctx):
            if ctx.body == "H boom":
                ctx.reply("never sent")
                raise ValueError("boom in the handler")
            if ctx.body == "H slow":
                time.sleep(1.5)
            ctx.reply("ok")
        """)
    handler(plugins_dir, "Slowasync", """
        import asyncio

        async def handle(ctx):
            await asyncio.sleep(5)
        """)
    routes = routes_toml(("a", "body", "A.*", "handler", "Slowasync"),
                         ("to-handler", "body", "H.*", "handler", "Echo"),
                         ("default", "", "", "memory", "default"),
                         extra="[routing]\nretry_delays = []\n")
    host = make_host(routes=routes, extra="[handlers]\ntimeout = 0.3\nwatch = false\n")

    async def flow() -> tuple[list[Any], list[str]]:
        async with host.running():
            messages = [await send(host, b) for b in ("H boom", "H slow", "A sleepy", "H fine")]
            events = [await host.messages.events(m.id) for m in messages]
            return events, await outbound(host)
    events, sent = asyncio.run(flow())
    details = [[e.detail for e in ev if e.status == "routed"][0] for ev in events]
    assert details[0]["route"] == "default"
    reason = details[0]["failures"][0]["reason"]
    assert reason.startswith("handler Echo raised ValueError: boom in the handler")
    assert "Traceback (most recent call last)" in reason and 'line 7, in handle' in reason
    assert details[1]["failures"][0]["reason"].startswith("handler Echo timed out after 0.3 s")
    assert details[2]["failures"][0]["reason"].startswith("handler Slowasync timed out")
    assert details[3]["route"] == "to-handler"
    assert sent == ["ok"]  # nothing from the failed calls


def test_context_api(make_host: Callable[..., Host], plugins_dir: Path) -> None:
    handler(plugins_dir, "Echo", """
        def handle(ctx):
            count = ctx.state.get("count", 0) + 1
            ctx.state["count"] = count
            ctx.reply(f"#{count} from {ctx.ani} to {ctx.dnis}: team {ctx.attrs['team']}, "
                      f"k={ctx.attrs['k']}")
            if count == 2:
                ctx.send("+13125550000", "second message seen")
                ctx.route_to("memory", "second")
            ctx.log.info("handled %s", ctx.body)
        """)
    host = make_host()

    async def flow() -> tuple[list[Any], list[str], Any]:
        async with host.running():
            messages = [await send(host, "H1"), await send(host, "H2"),
                        await send(host, "H3", remote="+16175550100")]
            state = await host.store.read(lambda db: list(db.query(
                "select scope, remote, data from conversation_state order by remote")))
            return messages, await outbound(host), state
    messages, sent, state = asyncio.run(flow())
    assert sent == ["#1 from +14155550123 to +15550100: team blue, k=v",
                    "#2 from +14155550123 to +15550100: team blue, k=v",
                    "second message seen",
                    "#1 from +16175550100 to +15550100: team blue, k=v"]
    assert [m.route for m in messages] == ["to-handler"] * 3
    assert host.sinks["memory"].got == [("second", "H2", "+14155550123", "+15550100")]  # type: ignore[attr-defined]
    assert [(r["remote"], json.loads(r["data"])) for r in state] == [
        ("+14155550123", {"count": 2}), ("+16175550100", {"count": 1})]


def test_a_state_in_use_says_so_once_a_day(make_host: Callable[..., Host],
                                           plugins_dir: Path) -> None:
    """The purge takes a conversation's state unused for purge.days. A state that does
    not change (set on the first message) is saved again, unchanged, when it was last
    saved more than a day ago, so a conversation that goes on keeps it; no more often
    (at most one write a day per conversation)."""
    from host.models import ago

    handler(plugins_dir, "Echo", """
        def handle(ctx):
            ctx.state.setdefault("greeted", True)
        """)
    host = make_host()
    two_days, twelve_hours = ago(2 * 86400), ago(12 * 3600)

    async def saved_at() -> str:
        return str(await host.store.read(lambda db: db.execute(
            "select updated_at from conversation_state").fetchone()[0]))

    async def flow() -> list[str]:
        seen = []
        async with host.running():
            await send(host, "H1")
            for stamp in (two_days, twelve_hours):
                await host.store.write(lambda db, stamp=stamp: db.execute(
                    "update conversation_state set updated_at = ?", [stamp]))
                await send(host, "H again")
                seen.append(await saved_at())
        return seen
    refreshed, untouched = asyncio.run(flow())
    assert refreshed > ago(60) and untouched == twelve_hours


def test_dry_run_prints_and_stores_nothing(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    result = run_cli("handler", "test", "CustomSMSRoutingToHandler", "--config",
                     str(root / "config"), "--ani", "4155550123", "--body", "billing question",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "  route to queue support",
        "  reply to +14155550123: Thanks! Someone from support will text you shortly.",
        '  state: {"messages": 1}']
    assert not (tmp_path / "data").exists()
    broken = run_cli("handler", "test", "Nope", "--config", str(root / "config"), cwd=tmp_path)
    assert broken.returncode == 1 and "no handler named 'Nope'" in broken.stdout


def test_shipped_example_handler(make_host: Callable[..., Host], plugins_dir: Path) -> None:
    source = (Path(__file__).resolve().parent.parent / "plugins" / "handlers" /
              "CustomSMSRoutingToHandler.py").read_text()
    handler(plugins_dir, "Echo", source)
    host = make_host(routes=routes_toml(("default", "", "", "handler", "Echo"),
                                        extra="[routing]\nretry_delays = []\n"))

    async def flow() -> tuple[list[Any], list[str]]:
        async with host.running():
            messages = [await send(host, "hours?"),
                        await send(host, "Sales please", remote="+16175550100"),
                        await send(host, "sales again", remote="+16175550100"),
                        await send(host, "hello")]
            return messages, await outbound(host)
    messages, sent = asyncio.run(flow())
    assert sent == ["We are open Monday to Friday, 9:00 to 17:00.",
                    "Thanks! Someone from sales will text you shortly.",  # first contact only
                    "Text SALES, SUPPORT or BILLING to reach us, or HOURS for opening hours."]
    # "Sales please" went on to the sales queue; without a queue sink it fell back
    assert messages[1].status in ("routed", "failed")


def test_reload_keeps_in_flight_calls_on_their_version(make_host: Callable[..., Host],
                                                       plugins_dir: Path) -> None:
    handler(plugins_dir, "Echo", """
        import time
        VERSION = "old"

        def handle(ctx):
            time.sleep(0.3)
            ctx.reply(VERSION)
        """)
    host = make_host(extra="[handlers]\nwatch = false\n")

    async def flow() -> list[str]:
        async with host.running():
            first, _ = await host.messages.add(mo("H a"))
            await asyncio.sleep(0.1)  # the call is running in its thread
            handler(plugins_dir, "Echo", "def handle(ctx):\n    ctx.reply('new')\n")
            await host.handlers.reconcile_async()
            assert await host.router.idle()
            await send(host, "H b", remote="+16175550100")
            return await outbound(host)
    assert asyncio.run(flow()) == ["old", "new"]
    assert time  # imported for handlers' sake


def test_timeout_counts_the_run_not_the_wait_for_a_thread(
        make_host: Callable[..., Host], plugins_dir: Path) -> None:
    """Three conversations at once, one handler thread: the calls take turns, and none
    times out for having waited its turn (each runs 1 s, the last waits 2 s: both under
    the 2.5 s timeout, their sum is not)."""
    handler(plugins_dir, "Echo", """
        import time

        def handle(ctx):
            time.sleep(1.0)
            ctx.reply("done")
        """)
    host = make_host(extra="[handlers]\ntimeout = 2.5\nthreads = 1\nwatch = false\n")

    async def flow() -> list[Any]:
        async with host.running():
            added = [await host.messages.add(mo("H turn", f"+1415555012{n}"))
                     for n in range(3)]
            assert await host.router.idle(timeout=30)
            return [await host.messages.events(m.id) for m, _ in added]
    events = asyncio.run(flow())
    routes = [[e.detail for e in ev if e.status == "routed"][0]["route"] for ev in events]
    assert routes == ["to-handler"] * 3


def test_a_hung_handler_holds_its_threads_and_later_calls_fall_back(
        make_host: Callable[..., Host], plugins_dir: Path, tmp_path: Path) -> None:
    """A sync handler that hangs: its threads cannot be killed, so they keep their slots
    (two, handlers.threads) until they end; the other calls do not start more threads,
    they fall back to the default route; once the hung calls end, the next one runs."""
    started, release = tmp_path / "started", tmp_path / "release"
    handler(plugins_dir, "Echo", f"""
        import pathlib, time

        def handle(ctx):
            with open({str(started)!r}, "a") as f:
                f.write(ctx.body + "\\n")
            if ctx.body == "H hang":
                for _ in range(400):  # bounded: 20 s at most
                    if pathlib.Path({str(release)!r}).exists():
                        break
                    time.sleep(0.05)
            ctx.reply("done " + ctx.body)
        """)
    host = make_host(extra="[handlers]\ntimeout = 0.3\nthreads = 2\nwatch = false\n")

    async def flow() -> tuple[list[str], list[str]]:
        async with host.running():
            added = [await host.messages.add(mo("H hang", f"+1415555013{n}"))
                     for n in range(6)]
            assert await host.router.idle(timeout=30)
            routes = [[e.detail for e in await host.messages.events(m.id)
                       if e.status == "routed"][0]["route"] for m, _ in added]
            release.touch()
            later = None
            for n in range(100):  # bounded: the hung threads end within ~0.1 s
                later = await send(host, "H after", f"+1415555014{n % 10}")
                events = await host.messages.events(later.id)
                if [e.detail for e in events if e.status == "routed"][0]["route"] \
                        == "to-handler":
                    break
                await asyncio.sleep(0.05)
            return routes, [line for line in started.read_text().splitlines()]
    routes, calls = asyncio.run(flow())
    assert routes == ["default"] * 6
    assert calls.count("H hang") == 2  # no more threads than handlers.threads
    assert calls[-1] == "H after"


def test_replies_and_sends_that_cannot_round_trip_go_out_as_u_fffd(
        make_host: Callable[..., Host], plugins_dir: Path) -> None:
    """What a handler hands back is text entering smshost (host/text.py): a lone
    surrogate or NUL becomes U+FFFD. Before issue 11 (point 3) such a reply failed to
    store (the handler's action was lost with a warning)."""
    handler(plugins_dir, "Echo", """
        def handle(ctx):
            ctx.reply("half " + chr(0xD83D) + " nul " + chr(0))
            ctx.send("+14155550199", chr(0xDC00) + "x")
        """)
    host = make_host()
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        client.portal.call(send, host, "H hi")  # type: ignore[union-attr]
        page = client.get("/api/messages", params={"direction": "out"})
    assert page.status_code == 200, page.text
    assert sorted(m["body"] for m in page.json()["messages"]) == [
        "half \ufffd nul \ufffd", "\ufffdx"]
