"""Live configuration (issue 13 point 4, SPEC P11): a saved edit of config/*.toml is
validated as a whole and applied without restart; a bad one is refused, shown in
/health with file and line, and the running configuration stays.

Each test runs a real node (``host.running()``: router, sender, the config watcher)
and talks to its app over HTTP (httpx's ASGI transport): MOs come in through the
simulator broker's real webhook path. Every wait is a bounded poll on a condition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import contextlib
import logging
import shutil
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from host.config import load_settings
from host.config.change import Applied, ConfigChange
from host.core import Host
from host.errors import ConfigRefused
from tests.conftest import MEMORY_SINK, ROOT, base_config, run_cli

WAIT = 15.0
AUTH = {"Authorization": "Bearer test-token"}
OURS, PHONE = "+15550100", "+14155550123"

SIMULATOR = """
[[brokers]]
name = "simulator"
definition = "simulator"
encryption = "http"
attrs = { tier = "broker", shared = "broker" }

[[brokers.accounts]]
id = "default"
local_address = "+15550100"
"""


def routes(target: str, pattern: str = "(?i)hello.*") -> str:
    return textwrap.dedent(f"""
        [[inbound]]
        name = "greeting"
        type = "body"
        pattern = '{pattern}'
        destination = "memory"
        target = "{target}"

        [[inbound]]
        name = "default"
        destination = "memory"
        target = "fallback"
        default = true
        """)


Make = Callable[..., Host]


@pytest.fixture
def make_host(tmp_path: Path, config_dir: Callable[..., Path], plugins_dir: Path) -> Make:
    """A node with the memory sink (tests/conftest.py) and the simulator broker."""
    (plugins_dir / "sinks" / "memory.py").write_text(MEMORY_SINK, encoding="utf-8")
    shutil.copy(ROOT / "plugins" / "brokers" / "simulator.xml",
                plugins_dir / "brokers" / "simulator.xml")

    def make(*, extra: str = "", brokers: str = SIMULATOR, route_text: str | None = None,
             sinks: str = "", watch: bool = True) -> Host:
        smshost = base_config(tmp_path, port=free_api_port(), extra=extra)
        if not watch:
            smshost = smshost.replace("[server]\n", "[server]\nwatch_config = false\n", 1)
        cfg = config_dir(smshost=smshost,
                         brokers=brokers, routes=route_text or routes("one"), sinks=sinks)
        return Host(load_settings(cfg), config_dir=cfg)
    return make


def free_api_port() -> int:
    from tests.conftest import free_port
    return free_port()


@contextlib.asynccontextmanager
async def serving(host: Host) -> AsyncIterator[httpx.AsyncClient]:
    async with host.running():
        transport = httpx.ASGITransport(app=host.app_for())
        async with httpx.AsyncClient(transport=transport, base_url="http://smshost",
                                     headers=AUTH) as client:
            yield client


async def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` (sync or async) until it gives something true; fail after timeout."""
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


async def mo(client: httpx.AsyncClient, host: Host, text: str, path: str = "/simulator/mo",
             to: str = OURS) -> httpx.Response:
    """A phone texts us through the simulator's webhook; wait until it is routed."""
    answer = await client.post(path, json={"id": uuid.uuid4().hex, "from": PHONE, "to": to,
                                           "text": text})
    if answer.status_code == 200:
        assert await host.router.idle(WAIT), "routing did not finish in time"
    return answer


def got(host: Host) -> list[tuple[str, str]]:
    """(target, body) of every message the memory sink took."""
    return [(target, body) for target, body, *_ in host.sinks["memory"].got]  # type: ignore[attr-defined]


def write(host: Host, name: str, text: str) -> None:
    assert host.config_dir is not None
    (host.config_dir / name).write_text(textwrap.dedent(text), encoding="utf-8")


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/health")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


# -- a file edit, applied by the watcher -------------------------------------------------

def test_a_saved_route_edit_takes_the_next_mo_without_restart(make_host: Make) -> None:
    host = make_host()

    async def flow() -> None:
        async with serving(host) as client:
            assert (await mo(client, host, "hello one")).status_code == 200
            before = (await health(client))["config"]
            write(host, "routes.toml", routes("two"))
            await until(lambda: host.live.version != before["version"], "the edit applied")
            assert (await mo(client, host, "hello two")).status_code == 200
            config = (await health(client))["config"]
            assert config["source"] == "file" and config["refused"] is None
            assert config["restart_needed"] == []
    asyncio.run(flow())
    assert got(host) == [("one", "hello one"), ("two", "hello two")]


BROKEN = {
    "toml syntax": ("routes.toml", '[[inbound]\nname = "x"\n', "routes.toml:1"),
    "bad regex": ("routes.toml", routes("two", pattern="(unclosed"), "routes.toml:"),
    "missing sink": ("routes.toml", routes("two").replace('"memory"', '"nowhere"', 1),
                     "routes.toml:"),
    "missing definition": ("brokers.toml", SIMULATOR + """
[[brokers]]
name = "other"
definition = "no-such-broker"
encryption = "http"
mo = { path = "/other/mo" }

[[brokers.accounts]]
id = "x"
""", "brokers.toml:"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_edit_is_refused_and_the_old_routes_stay(make_host: Make, case: str) -> None:
    name, text, where = BROKEN[case]
    host = make_host()

    async def flow() -> dict[str, Any]:
        async with serving(host) as client:
            version = host.live.version
            write(host, name, text)
            await until(lambda: host.live.refused is not None, "the refusal")
            body = await health(client)
            assert host.live.version == version
            assert (await mo(client, host, "hello still")).status_code == 200
            status = (await client.get("/api/config/status")).json()
            write(host, "routes.toml", routes("three"))
            if name != "routes.toml":
                write(host, name, SIMULATOR)
            await until(lambda: host.live.refused is None, "the fix applied")
            assert (await mo(client, host, "hello fixed")).status_code == 200
            return {"broken": body, "status": status, "fixed": await health(client)}
    seen = asyncio.run(flow())
    broken = seen["broken"]
    assert broken["status"] == "degraded"
    refused = broken["config"]["refused"]
    assert refused["source"] == "file"
    assert any(where in error for error in refused["errors"]), refused
    assert seen["status"]["refused"]["errors"] == refused["errors"]
    assert seen["fixed"]["status"] == "ok" and seen["fixed"]["config"]["refused"] is None
    assert got(host) == [("one", "hello still"), ("three", "hello fixed")]


def test_the_same_refusal_is_logged_once_and_identical_saves_apply_nothing(
        make_host: Make, caplog: pytest.LogCaptureFixture) -> None:
    host = make_host(watch=False)
    heard: list[Applied] = []
    host.live.listeners.append(heard.append)

    async def flow() -> None:
        async with host.running():
            same = await host.live.apply(ConfigChange("api"))
            assert not same.changed
            write(host, "routes.toml", "[[inbound]\n")
            for _ in range(2):
                with pytest.raises(ConfigRefused):
                    await host.live.apply(ConfigChange("api"))
    with caplog.at_level(logging.ERROR, "smshost.config"):
        asyncio.run(flow())
    assert heard == []
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


# -- brokers and accounts ----------------------------------------------------------------

SECOND_ACCOUNT = SIMULATOR + """
[[brokers.accounts]]
id = "second"
local_address = "+15550199"
attrs = { tier = "account" }
"""


def test_a_new_account_sends_at_once(make_host: Make) -> None:
    host = make_host()

    async def flow() -> tuple[int, int, dict[str, Any]]:
        async with serving(host) as client:
            refused = await client.post("/api/messages", json={
                "to": PHONE, "text": "hi", "account": "second"})
            write(host, "brokers.toml", SECOND_ACCOUNT)
            applied = await client.post("/api/config/reload")
            sent = await client.post("/api/messages", json={
                "to": PHONE, "text": "hi", "account": "second"})
            return refused.status_code, applied.status_code, sent.json()
    refused, applied, sent = asyncio.run(flow())
    assert (refused, applied) == (422, 200)
    assert sent["account"] == "second" and sent["from"] == "+15550199"


SECOND_BROKER = SIMULATOR + """
[[brokers]]
name = "slow"
definition = "simulator"
encryption = "http"
mo = { path = "/slow/mo", receipt_path = "/slow/receipt" }
mt = { rate = 0.001 }

[[brokers.accounts]]
id = "main"
local_address = "+15550177"
"""


def test_a_removed_broker_answers_404_and_its_queue_waits_for_its_return(
        make_host: Make) -> None:
    """Its webhooks answer 404 at once; its queued messages stay queued (not failed as
    strays) while it is gone, and go on when it is configured again."""
    host = make_host(brokers=SECOND_BROKER)

    async def flow() -> dict[str, Any]:
        async with serving(host) as client:
            seen: dict[str, Any] = {"before": (await mo(client, host, "hi", "/slow/mo",
                                                        "+15550177")).status_code}
            ids = [(await client.post("/api/messages", json={
                "to": PHONE, "text": f"m{i}", "broker": "slow"})).json()["id"]
                for i in range(2)]
            write(host, "brokers.toml", SIMULATOR)
            assert (await client.post("/api/config/reload")).status_code == 200
            seen["after"] = (await mo(client, host, "hi", "/slow/mo", "+15550177")).status_code
            host.sender._strays_at = 0.0  # the next claim looks for strays
            host.sender.wake()
            await until(lambda: host.sender._strays_at > time.monotonic(), "a stray scan")
            seen["held"] = (await client.get(f"/api/messages/{ids[1]}")).json()["status"]
            write(host, "brokers.toml", SECOND_BROKER.replace("mt = { rate = 0.001 }", ""))
            assert (await client.post("/api/config/reload")).status_code == 200

            async def tried() -> bool:
                rows = await host.store.read(lambda db: list(db.execute(
                    "select attempts from outbox where message_id = ?", [ids[1]])))
                return not rows or rows[0][0] > 0
            await until(tried, "the held message tried again")
            return seen
    seen = asyncio.run(flow())
    assert seen == {"before": 200, "after": 404, "held": "queued"}


# -- purge, logging, attributes, sinks, restart-needed -------------------------------------

def test_purge_days_and_logging_level_change_live(make_host: Make) -> None:
    host = make_host()
    root = logging.getLogger()
    level = root.level

    async def flow() -> None:
        async with serving(host) as client:
            write(host, "smshost.toml", host.config_dir.joinpath("smshost.toml").read_text()  # type: ignore[union-attr]
                  + "\n[purge]\ndays = 45\nat = \"04:30\"\n\n[logging]\nlevel = \"DEBUG\"\n")
            answer = await client.post("/api/config/reload", json={"note": "longer"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["changed"] is True
    try:
        asyncio.run(flow())
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(level)
    assert (host.settings.purge.days, host.settings.purge.at) == (45, "04:30")
    assert host.purger.describe()["enabled"] is True


PROBE = '''
import json

def handle(ctx):
    ctx.reply(json.dumps(ctx.attrs, sort_keys=True))
'''


def test_handlers_see_sms_broker_and_account_attrs_after_an_edit(
        make_host: Make, plugins_dir: Path) -> None:
    (plugins_dir / "handlers" / "probe.py").write_text(PROBE, encoding="utf-8")
    probe = """
        [[inbound]]
        name = "probe"
        destination = "handler"
        target = "probe"
        default = true
        """
    host = make_host(route_text=probe)

    async def flow() -> list[str]:
        async with serving(host) as client:
            await mo(client, host, "first")
            config = host.config_dir.joinpath("smshost.toml")  # type: ignore[union-attr]
            write(host, "smshost.toml", config.read_text()
                  + '\n[attrs]\ntier = "sms"\nshared = "sms"\nsite = "paris"\n')
            write(host, "brokers.toml", SIMULATOR.replace(
                'id = "default"', 'id = "default"\nattrs = { tier = "account" }'))
            assert (await client.post("/api/config/reload")).status_code == 200
            await mo(client, host, "second")
            answer = await client.get("/api/messages", params={"direction": "out"})
            return [m["body"] for m in answer.json()["messages"]]
    bodies = asyncio.run(flow())
    assert '{"shared": "broker", "site": "paris", "tier": "account"}' in bodies
    assert '{"shared": "broker", "tier": "broker"}' in bodies


def test_a_listeners_change_needs_a_restart_and_the_rest_applies(make_host: Make) -> None:
    host = make_host()

    async def flow() -> dict[str, Any]:
        async with serving(host) as client:
            text = host.config_dir.joinpath("smshost.toml").read_text()  # type: ignore[union-attr]
            port = host.settings.api_listener.port
            write(host, "smshost.toml", text.replace(f"port = {port}", f"port = {port + 1}")
                  + "\n[purge]\ndays = 60\n")
            answer = await client.post("/api/config/reload")
            assert answer.status_code == 200, answer.text
            return {"reload": answer.json(), "health": await health(client),
                    "status": (await client.get("/api/config/status")).json(), "port": port}
    seen = asyncio.run(flow())
    assert seen["reload"]["restart_needed"] == ["listeners"]
    assert seen["health"]["config"]["restart_needed"] == ["listeners"]
    assert seen["health"]["status"] == "ok"
    assert seen["status"]["restart_needed"] == ["listeners"]
    assert host.settings.purge.days == 60
    assert host.settings.api_listener.port == seen["port"]  # running until the restart


def test_concurrent_applies_serialize(make_host: Make) -> None:
    host = make_host(watch=False)
    gate = asyncio.Event()
    entered: list[str | None] = []

    async def listener(applied: Applied) -> None:
        entered.append(applied.change.note)
        if applied.change.note == "first":
            await gate.wait()
    host.live.listeners.append(listener)

    async def flow() -> list[str]:
        async with host.running():
            write(host, "routes.toml", routes("two"))
            first = asyncio.create_task(host.live.apply(ConfigChange("api", note="first")))
            await until(lambda: entered == ["first"] or first.done(), "the first apply")
            if first.done():
                first.result()
            write(host, "routes.toml", routes("three"))
            second = asyncio.create_task(host.live.apply(ConfigChange("api", note="second")))
            await asyncio.wait([second], timeout=0.2)
            held = [r.target for r in host.router.routes]
            gate.set()
            await asyncio.gather(first, second)
            return held
    held = asyncio.run(flow())
    assert entered == ["first", "second"]
    assert held == ["two", "fallback"]
    assert [r.target for r in host.router.routes] == ["three", "fallback"]


def test_check_reports_the_problem_a_live_reload_refuses(make_host: Make) -> None:
    host = make_host()
    write(host, "routes.toml", routes("two").replace('"memory"', '"nowhere"', 1))

    async def flow() -> list[str]:
        async with host.running(background=False):
            with pytest.raises(ConfigRefused) as refused:
                await host.live.apply(ConfigChange("cli"))
            return [e.describe() for e in refused.value]
    errors = asyncio.run(flow())
    out = run_cli("check", "--config", str(host.config_dir))
    assert out.returncode == 1
    assert errors and all(error in out.stdout for error in errors), (errors, out.stdout)


def test_a_sinks_edit_replaces_that_sink_and_keeps_the_others(
        make_host: Make, plugins_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed [webhook] table: the next delivery goes to the new URL; the memory
    sink, whose settings did not change, keeps its object."""
    from tests.sinks.test_webhook import PLUGIN, SECRET, SECRET_ENV, Receiver, sinks_toml
    monkeypatch.setenv(SECRET_ENV, SECRET)
    (plugins_dir / "sinks" / "webhook").symlink_to(PLUGIN)
    hooked = '[[inbound]]\nname = "hook"\ntype = "body"\npattern = "(?i)hook.*"\n' \
        'destination = "webhook"\ntarget = "out"\n' + routes("one")

    async def flow() -> tuple[int, int, bool, bool]:
        async with Receiver() as old, Receiver() as new:
            host = make_host(route_text=hooked, sinks=sinks_toml({"out": old.url("/old")}))
            async with serving(host) as client:
                memory, webhook = host.sinks["memory"], host.sinks["webhook"]
                await mo(client, host, "hook one")
                await until(lambda: old.on("/old"), "the first delivery")
                write(host, "sinks.toml", sinks_toml({"out": new.url("/new")}))
                assert (await client.post("/api/config/reload")).status_code == 200
                await mo(client, host, "hook two")
                await until(lambda: new.on("/new"), "the delivery to the new URL")
                return (len(old.hits), len(new.hits), host.sinks["memory"] is memory,
                        host.sinks["webhook"] is webhook)
    assert asyncio.run(flow()) == (1, 1, True, False)


# -- comparing settings (host.reconfigure) ------------------------------------------------

def test_sections_and_restart_keys_are_compared_one_by_one(
        make_host: Make, tmp_path: Path) -> None:
    from host.reconfigure import changed_sections, effective, restart_needed
    host = make_host()
    old = host.settings
    assert changed_sections(old, old) == () and restart_needed(old, old) == ()
    listener = dataclasses.replace(old.listeners[0], port=old.listeners[0].port + 1)
    new = dataclasses.replace(
        old, listeners=(listener,), purge=dataclasses.replace(old.purge, days=9),
        server=dataclasses.replace(old.server, data_dir="elsewhere", role="backup"),
        attrs={"site": "paris"})
    assert changed_sections(old, new) == ("server", "listeners", "purge", "attrs")
    assert restart_needed(old, new) == ("server.data_dir", "listeners")
    running = effective(old, new)
    assert running.listeners == old.listeners and running.server.data_dir == old.server.data_dir
    assert (running.server.role, running.purge.days, running.attrs) == \
        ("backup", 9, {"site": "paris"})
    assert restart_needed(running, new) == ("server.data_dir", "listeners")


def test_a_problem_moved_to_another_line_is_the_same_problem() -> None:
    from host.reconfigure import Problem
    one = Problem("route", "r", "routes.toml", "/c/routes.toml:3: inbound[0].target: no x")
    two = Problem("route", "r", "routes.toml", "/c/routes.toml:9: inbound[0].target: no x")
    assert one.key == two.key
    # a route added above it moves it to another index: still the same problem
    moved = Problem("route", "r", "routes.toml", "/c/routes.toml:9: inbound[1].target: no x")
    assert moved.key == one.key
    other = Problem("route", "s", "routes.toml", "/c/routes.toml:9: inbound[1].target: no x")
    assert other.key != one.key
    error = two.error()
    assert (error.file, error.line, error.describe()) == ("/c/routes.toml", 9, two.message)
