"""Inbound routing: order, whole-field RE2 matching, defaults, fallback, opt-out (R1-R6)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from host.errors import ConfigErrors
from host.messages import NewMessage
from host.optout import OptedOut
from host.sends import SendRequest
from tests.conftest import base_config, routes_toml, run_cli, write_lock

ROUTES = routes_toml(
    ("from-sf", "ani", r"\+1415\d{7}", "memory", "sf"),
    ("hello", "body", "HELLO.*", "memory", "hello"),
    ("short-code", "dnis", "12345", "memory", "short"),
    ("default", "", "", "memory", "default"),
)


def mo(body: str, remote: str = "+12125550123", local: str = "+15550100",
       **kw: Any) -> NewMessage:
    return NewMessage(direction="in", body=body, status="received", remote=remote,
                      local=local, **kw)


def route_all(host: Host, *messages: NewMessage) -> list[Any]:
    async def flow() -> list[Any]:
        async with host.running():
            ids = [(await host.messages.add(m))[0].id for m in messages]
            assert await host.router.idle()
            return [await host.messages.get(i) for i in ids]
    return asyncio.run(flow())


@pytest.fixture
def routed_host(host_factory: Callable[..., Host], memory_sink: Path) -> Host:
    return host_factory(routes=ROUTES)


def test_first_matching_route_wins_on_the_whole_field(routed_host: Host) -> None:
    messages = route_all(routed_host,
                         mo("HELLO there", remote="+14155550123"),  # ani route first
                         mo("HELLO there"),
                         mo("say HELLO"),                         # not the whole body
                         mo("x", local="12345"),
                         mo("hello"))                             # case matters
    assert [m.route for m in messages] == ["from-sf", "hello", "default", "short-code",
                                           "default"]
    assert all(m.status == "routed" for m in messages)
    got = routed_host.sinks["memory"].got  # type: ignore[attr-defined]
    assert [g[0] for g in got] == ["sf", "hello", "default", "short", "default"]


def test_numbers_are_e164_before_matching(broker_host_generic: Host) -> None:
    with TestClient(broker_host_generic.app_for()) as client:
        client.post("/generic/mo", json={"id": "1", "from": "(415) 555-0123", "text": "x"})
        assert client.portal.call(broker_host_generic.router.idle)  # type: ignore[union-attr]
        body = client.get("/api/messages/1",
                          headers={"Authorization": "Bearer test-token"}).json()
    assert body["remote"] == "+14155550123" and body["route"] == "from-sf"
    routed = [e for e in body["events"] if e["status"] == "routed"]
    assert routed[0]["detail"] == {"route": "from-sf", "destination": "memory", "target": "sf"}


@pytest.fixture
def broker_host_generic(tmp_path: Path, memory_sink: Path) -> Host:
    from tests.brokers.conftest import broker_config

    cfg = broker_config(tmp_path, """
[[brokers]]
name = "gen"
definition = "generic"

[[brokers.accounts]]
id = "main"
local_address = "+15550100"
""")
    (cfg / "routes.toml").write_text(ROUTES)
    text = (cfg / "smshost.toml").read_text().replace("dirs = []", f'dirs = ["{tmp_path / "plugins"}"]')
    (cfg / "smshost.toml").write_text(text)
    return Host(load_settings(cfg), config_dir=cfg)


def test_linear_time_matching_of_a_hostile_body(host_factory: Callable[..., Host],
                                                memory_sink: Path) -> None:
    host = host_factory(routes=routes_toml(("evil", "body", "(a+)+$", "memory", "evil"),
                                           ("default", "", "", "memory", "default")))
    (message,) = route_all(host, mo("a" * 10_000 + "b"))
    assert message.route == "default"  # RE2: no catastrophic backtracking


@pytest.mark.parametrize(("routes", "fragment"), [
    (routes_toml(("x", "body", r"(a)\1", "memory", "x"), ("default", "", "", "memory", "d")),
     "inbound[0].pattern: route 'x': bad pattern '(a)\\1': invalid escape sequence: \\1 "
     "(backreferences are not supported)"),
    (routes_toml(("x", "body", "a(?=b)", "memory", "x"), ("default", "", "", "memory", "d")),
     "(lookahead and lookbehind are not supported)"),
    (routes_toml(("x", "body", "[", "memory", "x"), ("default", "", "", "memory", "d")),
     "bad pattern '[': missing ]"),
    (routes_toml(("x", "body", "a", "memory", "x")),
     "inbound: once any route exists, a default route (default = true) must be the last one"),
    (routes_toml(("default", "", "", "memory", "d"), ("x", "body", "a", "memory", "x")),
     "inbound[0].default: the default route must be the last one"),
    ('[[inbound]]\nname = "d"\ndestination = "memory"\ndefault = true\npattern = "a"\n',
     "inbound[0].pattern: the default route matches everything"),
    (routes_toml(("x", "body", "a", "memory", "x"), ("x", "body", "b", "memory", "y"),
                 ("default", "", "", "memory", "d")),
     "inbound[1].name: route name 'x' is used twice"),
])
def test_bad_routes_are_config_errors_with_file_and_line(config_dir: Callable[..., Path],
                                                         routes: str, fragment: str) -> None:
    cfg = config_dir(routes=routes)
    with pytest.raises(ConfigErrors) as info:
        load_settings(cfg)
    text = "\n".join(e.describe() for e in info.value)
    assert str(cfg / "routes.toml") + ":" in text
    assert fragment in text, text


def test_no_routes_means_email(host_factory: Callable[..., Host]) -> None:
    host = host_factory(routes="")
    assert [r.name for r in host.router.routes] == ["email"]
    assert host.router.routes[0].destination == "email" and host.router.routes[0].default


def test_no_routes_means_the_sink_that_claims_catch_all(
        host_factory: Callable[..., Host], memory_sink: Path) -> None:
    """R3's email is the shipped email sink's claim (Sink.catch_all), not a name: with no
    routes, a plugin sink that claims it (the email sink not loaded) gets every message,
    and the route listing says where they go."""
    memory_sink.write_text(memory_sink.read_text() + "\nMemorySink.catch_all = True\n")
    host = host_factory(routes="")
    (message,) = route_all(host, mo("hello"))
    assert [(r.name, r.destination, r.default) for r in host.router.routes] == [
        ("memory", "memory", True)]
    assert message.status == "routed" and message.route == "memory"
    assert host.sinks["memory"].got == [  # type: ignore[attr-defined]
        ("", "hello", message.remote, message.local)]


def test_failing_destination_falls_back_to_the_default_route(
        host_factory: Callable[..., Host], memory_sink: Path) -> None:
    host = host_factory(routes=routes_toml(
        ("broken", "body", "X.*", "memory", "fail"), ("default", "", "", "memory", "default"),
        extra="[routing]\nretry_delays = [0.01]\n"))
    broken, retried = route_all(host, mo("X marks the spot"),
                                mo("Xtra", remote="+13125550000"))
    assert broken.route == "default" and broken.status == "routed"

    async def events() -> list[Any]:
        async with host.running(background=False):
            return await host.messages.events(broken.id)
    (routed,) = [e for e in asyncio.run(events()) if e.status == "routed"]
    assert routed.detail["failures"] == [{"route": "broken", "destination": "memory",
                                          "target": "fail",
                                          "reason": "memory sink told to fail"}]


def test_retry_then_fallback_and_unknown_destination(host_factory: Callable[..., Host],
                                                     memory_sink: Path) -> None:
    host = host_factory(routes=routes_toml(
        ("slow", "body", "R", "memory", "retry"), ("default", "", "", "memory", "default"),
        extra="[routing]\nretry_delays = [0.01, 0.01]\n"))
    (message,) = route_all(host, mo("R"))
    assert message.route == "default"


def test_a_default_route_that_fails_for_now_is_retried_not_the_failed_route(
        host_factory: Callable[..., Host], memory_sink: Path) -> None:
    host = host_factory(routes=routes_toml(
        ("broken", "body", "X.*", "memory", "fail"),
        ("default", "", "", "memory", "flaky"),
        extra="[routing]\nretry_delays = [0.01, 0.01]\n"))
    (message,) = route_all(host, mo("X then the default, which hiccups"))
    assert (message.status, message.route) == ("routed", "default")
    tried = host.sinks["memory"].tried
    assert tried == [("fail", message.id), ("flaky", message.id), ("flaky", message.id)]


def test_a_status_the_database_refuses_is_written_again_in_the_conversation_order(
        host_factory: Callable[..., Host], memory_sink: Path, tmp_path: Path) -> None:
    """Recording the routing fails (another process holds the database's write lock
    past busy_timeout): the status is written again once the lock is gone, the message
    is not delivered a second time, and the next message of the same conversation,
    delivered after it, has its status stored after it."""
    host = host_factory(
        routes=routes_toml(("default", "", "", "memory", "gate"),
                           extra="[routing]\nretry_delays = [0.3]\n"),
        smshost=base_config(tmp_path) + "\n[store]\nbusy_timeout_ms = 100\n")

    async def flow() -> tuple[list[Any], list[str]]:
        async with host.running():
            sink = host.sinks["memory"]
            sink.gate = asyncio.Event()
            first = (await host.messages.add(mo("first")))[0]
            second = (await host.messages.add(mo("second")))[0]
            with write_lock(host.store):  # the router's record of "first" waits
                sink.gate.set()
                await asyncio.sleep(0.6)  # > busy_timeout: that record failed
                assert (await host.messages.get(first.id)).status == "received"
            assert await host.router.idle(timeout=20)
            routed = [await host.messages.get(m.id) for m in (first, second)]
            events = [[e for e in await host.messages.events(m.id) if e.status == "routed"]
                      for m in (first, second)]
            return routed, [ev[0].at for ev in events]
    (first, second), at = asyncio.run(flow())
    assert (first.status, second.status) == ("routed", "routed")
    assert at[0] <= at[1]
    assert host.sinks["memory"].tried == [("gate", first.id), ("gate", second.id)]


def test_a_delivery_whose_write_the_database_refuses_is_routed_again(
        host_factory: Callable[..., Host], memory_sink: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The destination's own write is refused (another process holds the write lock
    past busy_timeout): a delivery to try again, not a failed message (it was failed,
    with a traceback); logged once for the spell, and its end once."""
    host = host_factory(
        routes=routes_toml(("default", "", "", "memory", "stored"),
                           extra="[routing]\nretry_delays = [0.3, 0.3, 0.3]\n"),
        smshost=base_config(tmp_path) + "\n[store]\nbusy_timeout_ms = 100\n")

    async def flow() -> Any:
        async with host.running():
            sink = host.sinks["memory"]
            sink.gate = asyncio.Event()
            message = (await host.messages.add(mo("hello")))[0]
            with write_lock(host.store):  # the sink's write waits, then is refused
                sink.gate.set()
                await asyncio.sleep(0.5)
            assert await host.router.idle(timeout=20)
            return await host.messages.get(message.id)
    message = asyncio.run(flow())
    assert (message.status, message.route) == ("routed", "default")
    assert [g[1] for g in host.sinks["memory"].got] == ["hello"]
    lines = [r.getMessage() for r in caplog.records if r.name == "smshost.routing"]
    errors = [r.getMessage() for r in caplog.records
              if r.name == "smshost.routing" and r.levelname == "ERROR"]
    assert len(errors) == 1, lines
    assert errors[0].startswith(f"routing failed (message {message.id} to memory): ")
    assert ("database is locked" if host.store.dialect == "sqlite" else "lock timeout") \
        in errors[0]
    assert lines[-1].startswith("routing recovered after "), lines
    assert not [r for r in caplog.records if r.exc_info]


def test_when_even_the_default_fails_the_message_is_kept_as_failed(
        host_factory: Callable[..., Host], memory_sink: Path) -> None:
    host = host_factory(routes=routes_toml(("default", "", "", "memory", "fail")))
    (message,) = route_all(host, mo("nowhere to go"))
    assert message.status == "failed" and message.route == "default"


def test_unrouted_messages_are_routed_at_start(host_factory: Callable[..., Host],
                                               memory_sink: Path) -> None:
    host = host_factory(routes=routes_toml(("default", "", "", "memory", "d")))

    async def store_without_routing() -> None:
        async with host.running(background=False):  # no router
            for i in range(3):
                await host.messages.add(mo(f"m{i}"))
    asyncio.run(store_without_routing())
    messages = route_all(host)  # starting again routes what was left
    assert messages == []
    assert [g[1] for g in host.sinks["memory"].got] == ["m0", "m1", "m2"]  # type: ignore[attr-defined]


def test_route_tester_cli_and_api(config_dir: Callable[..., Path], host_factory: Callable[..., Host],
                                  memory_sink: Path) -> None:
    cfg = config_dir(routes=ROUTES)
    result = run_cli("route", "test", "--config", str(cfg), "--ani", "(212) 555-0123",
                     "--body", "HELLO")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        r"  no  from-sf: ani '+12125550123' does not match '\+1415\d{7}' (whole remote)",
        "  yes hello: memory hello"]
    host = host_factory(routes=ROUTES)
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        answer = client.post("/api/routes/test", json={"ani": "+14155550123", "body": "x"})
        missing = client.post("/api/routes/test", json={"body": "x"})
        listed = client.get("/api/routes").json()
    assert answer.json()["route"]["name"] == "from-sf" and answer.json()["tried"] == []
    assert missing.status_code == 400
    assert [r["name"] for r in listed["routes"]] == ["from-sf", "hello", "short-code", "default"]


def test_route_test_shows_patterns_and_text_as_written(
        config_dir: Callable[..., Path], host_factory: Callable[..., Host],
        memory_sink: Path) -> None:
    """Backslashes are shown once (not doubled as repr does, and again by JSON); a line
    break in the text is shown as \\n so each route stays on one line."""
    routes = routes_toml(("paths", "body", r"C:\\\w+", "memory", "p"),
                         ("default", "", "", "memory", "d"),
                         extra="[[outbound]]\nname = \"us\"\npattern = '\\+1\\d{10}'\n"
                         "[[outbound]]\nname = \"rest\"\n")
    cfg = config_dir(routes=routes)
    inbound = run_cli("route", "test", "--config", str(cfg), "--ani", "+14155550123",
                      "--body", "D:\\x\ny")
    assert inbound.returncode == 0, inbound.stderr
    reason = r"body 'D:\x\ny' does not match 'C:\\\w+' (whole body)"
    assert inbound.stdout.splitlines() == [f"  no  paths: {reason}", "  yes default: memory d"]
    outbound = run_cli("route", "test", "--config", str(cfg), "--outbound", "--dnis", "12")
    assert outbound.returncode == 0, outbound.stderr
    assert outbound.stdout.splitlines() == [
        r"  no  us: '12' does not match '\+1\d{10}'", "  yes rest: send to 12"]
    host = host_factory(routes=routes)
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        answer = client.post("/api/routes/test", json={"ani": "+14155550123",
                                                       "body": "D:\\x\ny"}).json()
    assert answer["tried"] == [{"route": "paths", "reason": reason}]


def test_check_warns_about_a_shadowed_route(config_dir: Callable[..., Path],
                                            memory_sink: Path) -> None:
    cfg = config_dir(routes=routes_toml(("all", "body", "(?s).*", "memory", "a"),
                                        ("never", "ani", r"\+1.*", "memory", "b"),
                                        ("default", "", "", "memory", "d")))
    result = run_cli("check", "--config", str(cfg))
    assert "warning: route 'never' can never match: route 'all' before it matches everything" \
        in result.stdout


def test_route_to_unknown_sink_or_target_is_reported(config_dir: Callable[..., Path],
                                                     memory_sink: Path) -> None:
    cfg = config_dir(routes=routes_toml(("x", "body", "a", "nosuch", "t"),
                                        ("default", "", "", "memory", "d")))
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 1
    assert "inbound[0].destination: no nosuch sink is available" in result.stdout


# -- opt-out (R6) ------------------------------------------------------------------------

OPTOUT_BROKERS = """
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "https"

[[brokers.accounts]]
id = "a"
local_address = "+15550100"

[[brokers.accounts]]
id = "b"
local_address = "+15550111"
opt_out = false
"""


@pytest.fixture
def optout_host(tmp_path: Path, memory_sink: Path) -> Host:
    from tests.brokers.conftest import broker_config

    cfg = broker_config(tmp_path, OPTOUT_BROKERS)
    (cfg / "routes.toml").write_text(routes_toml(("default", "", "", "memory", "d")))
    text = (cfg / "smshost.toml").read_text().replace("dirs = []", f'dirs = ["{tmp_path / "plugins"}"]')
    (cfg / "smshost.toml").write_text(text)
    return Host(load_settings(cfg), config_dir=cfg)


def test_stop_start_help(optout_host: Host) -> None:
    host = optout_host
    sender = "+14155550123"

    async def flow() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with host.running():
            async def say(text: str, account: str = "a", local: str = "+15550100") -> None:
                await host.messages.add(NewMessage(direction="in", body=text,
                                                   status="received", broker="sim",
                                                   account=account, local=local,
                                                   remote=sender))
                assert await host.router.idle()
            await say(" stop ")
            out["after_stop"] = await host.optouts.list()
            try:
                await host.outbound.submit(SendRequest(to=sender, text="promo", broker="sim",
                                                       account="a"))
            except OptedOut as exc:
                out["refused"] = str(exc)
            await say("HELP")
            await say("Start")
            out["after_start"] = await host.optouts.list()
            await host.outbound.submit(SendRequest(to=sender, text="welcome back",
                                                   broker="sim", account="a"))
            await say("STOP", account="b", local="+15550111")  # keywords off for b
            out["after_b"] = await host.optouts.list()
            out["outbound"] = [m.body for m in await host.messages.find(
                __import__("host.messages", fromlist=["MessageFilter"]).MessageFilter(
                    direction="out", limit=10))][::-1]
        return out
    out = asyncio.run(flow())
    assert [(o["local"], o["remote"]) for o in out["after_stop"]] == [("+15550100", sender)]
    assert out["refused"].startswith(f"{sender} opted out of messages from +15550100")
    assert out["after_start"] == [] and out["after_b"] == []
    settings = host.settings.optout
    assert out["outbound"] == [settings.stop_reply, settings.help_reply, settings.start_reply,
                               "welcome back"]
    assert [g[1] for g in host.sinks["memory"].got] == ["STOP"]  # account b: routed as text


def test_optouts_api(optout_host: Host) -> None:
    with TestClient(optout_host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        client.post("/api/simulator/mo", json={"from": "+14155550123", "text": "stop"})
        assert client.portal.call(optout_host.router.idle)  # type: ignore[union-attr]
        listed = client.get("/api/optouts").json()["optouts"]
        none = client.get("/api/optouts", params={"local": "+15550111"}).json()["optouts"]
    assert [(o["local"], o["remote"]) for o in listed] == [("+15550100", "+14155550123")]
    assert none == []


def test_one_conversation_does_not_wait_for_each_status_commit(
        host_factory: Callable[..., Host], memory_sink: Path) -> None:
    """The messages of one conversation are routed one after another, in order, but a
    message's "routed" status is queued without waiting for its commit: the store
    commits it together with the next message's delivery. 40 messages to a sink that
    writes take ~40 commits (they took 80: each delivery, then each status)."""
    host = host_factory(routes=routes_toml(("default", "", "", "memory", "stored"),
                                           extra="[routing]\nenabled = false\n"))

    async def flow() -> tuple[int, list[Any], list[int]]:
        async with host.running():
            ids = [(await host.messages.add(mo(f"burst {n}")))[0].id for n in range(40)]
            commits = host.store.stats.commits
            await host.router.start()  # routes every message still "received"
            assert await host.router.idle()
            used = host.store.stats.commits - commits
            messages = [await host.messages.get(i) for i in ids]
            order = await host.store.read(lambda db: [r[0] for r in db.execute(
                "select message_id from message_events where status = 'routed' "
                "order by id")])
            await host.router.stop()
            return used, messages, order
    used, messages, order = asyncio.run(flow())
    assert all(m.status == "routed" for m in messages)
    assert [g[1] for g in host.sinks["memory"].got] == [f"burst {n}" for n in range(40)]
    assert order == [m.id for m in messages]  # statuses stored in the conversation's order
    assert used <= 42, f"{used} commits for 40 messages of one conversation"


def test_a_destination_that_lets_a_cancellation_out_does_not_stop_routing(
        host_factory: Callable[..., Host], memory_sink: Path) -> None:
    """A sink raising CancelledError (not the router's own stop) is a failure for now:
    the message is tried again and the only worker goes on with the others. (It used
    to end the worker: with one, every later message stayed "received".)"""
    host = host_factory(routes=routes_toml(
        ("cancels", "ani", r"\+12125550100", "memory", "cancel"),
        ("default", "", "", "memory", "default"),
        extra="[routing]\nworkers = 1\nretry_delays = [0.1]\n"))

    async def flow() -> list[str]:
        async with host.running():
            first = (await host.messages.add(mo("cancelled once", remote="+12125550100")))[0]
            second = (await host.messages.add(mo("next", remote="+12125550199")))[0]
            assert await host.router.idle()
            return [(await host.messages.get(m.id)).status for m in (first, second)]
    assert asyncio.run(flow()) == ["routed", "routed"]
    assert [t for t, _ in host.sinks["memory"].tried].count("cancel") == 2


def test_hooks_of_routed_messages_run_before_the_stop_not_after(
        host_factory: Callable[..., Host], memory_sink: Path) -> None:
    """Statuses are announced after their commit, in the background, but never more
    than one per conversation ahead of routing, and the stop waits for them: slow hooks
    do not pile up, nor run on a stopped host."""
    from host import hookimpl

    calls: list[bool] = []
    host = host_factory(routes=routes_toml(("default", "", "", "memory", "stored")))

    class SlowListener:
        @hookimpl
        async def message_routed(self, host: Host) -> None:
            await asyncio.sleep(0.02)
            calls.append(host.store.is_open)

    host.plugins.register(SlowListener(), "slow")
    pending: list[int] = []

    async def flow() -> None:
        async with host.running():
            for n in range(20):
                await host.messages.add(mo(f"slow {n}"))
            for _ in range(300):  # bounded: ~3 s
                pending.append(len(host.router._announcing))
                if not host.router._lanes:
                    break
                await asyncio.sleep(0.01)
    asyncio.run(flow())
    assert max(pending) <= 1
    assert len(calls) == 20 and all(calls)


def test_a_conversation_waiting_for_a_retry_does_not_hold_a_worker(
        host_factory: Callable[..., Host], memory_sink: Path) -> None:
    """With one routing worker, a conversation whose destination fails for now waits
    for its retry without the worker: the next conversation is routed meanwhile."""
    host = host_factory(routes=routes_toml(
        ("later", "ani", r"\+12125550100", "memory", "retry"),
        ("default", "", "", "memory", "default"),
        extra="[routing]\nworkers = 1\nretry_delays = [30]\n"))

    async def flow() -> tuple[str, str]:
        async with host.running():
            waiting = (await host.messages.add(mo("try later", remote="+12125550100")))[0]
            other = (await host.messages.add(mo("go now", remote="+12125550199")))[0]
            for _ in range(500):  # bounded: ~5 s
                if (await host.messages.get(other.id)).status == "routed":
                    break
                await asyncio.sleep(0.01)
            return ((await host.messages.get(waiting.id)).status,
                    (await host.messages.get(other.id)).status)
    assert asyncio.run(flow()) == ("received", "routed")
