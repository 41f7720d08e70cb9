"""Chat idle handling (SPEC S2): EnableIdleTimeout, PartyIdleTime, PartyIdleGraceTime.

A real smshost (uvicorn on 127.0.0.1, the shipped plugins, the simulator broker whose
phone receives our SMS on /api/simulator/inbox); SMS come in through
``POST /api/simulator/mo``. The chat sink's clock is a fake one the test moves; each
tick runs in the server's loop, driven from here. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from host.config import load_settings
from host.config.change import ConfigChange
from host.core import Host
from host.errors import ConfigRefused
from tests.conftest import ROOT, base_config
from tests.outbound.conftest import WAIT, Smshost, wait_until, write_config

OUR_NUMBER = "+14155550100"
ANN, BOB = "+14155550123", "+14155550124"
SIMULATOR = f"""
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "http"

[[brokers.accounts]]
id = "default"
local_address = "{OUR_NUMBER}"
"""
ROUTES = r"""
[[inbound]]
name = "vip"
type = "body"
pattern = '(?i)vip.*'
destination = "chat"
target = "vip"

[[inbound]]
name = "default"
destination = "chat"
default = true
"""
ENABLED = "[chat]\nenable_idle_timeout = true\nparty_idle_time = 300\nparty_idle_grace_time = 120\n"


class Clock:
    """A clock the test moves: Unix seconds."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class Node:
    """A started smshost with the chat sink on ``clock``."""

    def __init__(self, make: Callable[..., Smshost], clock: Clock, **kwargs: Any) -> None:
        self.clock = clock
        self.node = make(brokers=SIMULATOR, routes=kwargs.pop("routes", ROUTES),
                         prepare=self._prepare, **kwargs)

    def _prepare(self, host: Host) -> None:
        host.sinks["chat"].clock = self.clock  # type: ignore[attr-defined]

    @property
    def host(self) -> Host:
        assert self.node.host is not None
        return self.node.host

    @property
    def sink(self) -> Any:
        return self.host.sinks["chat"]

    def run(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a coroutine in the server's loop; its result."""
        loop = self.sink.timers.task.get_loop()
        return asyncio.run_coroutine_threadsafe(make(), loop).result(WAIT)

    def tick(self) -> bool:
        return bool(self.run(self.sink.timers.tick))

    def text(self, sender: str, body: str, count: int = 1) -> None:
        """A phone texts our number; wait until its conversation has ``count`` SMS."""
        answer = self.node.api.post("/api/simulator/mo", json={"from": sender, "text": body})
        assert answer.status_code == 201, answer.text
        wait_until(lambda: any(c["messages_in"] >= count for c in self.conversations(sender)),
                   what=f"the SMS of {sender} to join a conversation")

    def conversations(self, remote: str | None = None) -> list[dict[str, Any]]:
        params = {"remote": remote} if remote else {}
        answer = self.node.api.get("/api/conversations", params=params)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["conversations"])

    def conversation(self, remote: str) -> dict[str, Any]:
        return self.conversations(remote)[0]

    def inbox(self, number: str) -> list[str]:
        answer = self.node.api.get("/api/simulator/inbox", params={"number": number})
        return [m["text"] for m in reversed(answer.json()["messages"])]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    started: list[Smshost] = []

    def start(**kwargs: Any) -> Smshost:
        started.append(Smshost(tmp_path / f"node{len(started)}", **kwargs))
        return started[-1].start()

    def make(clock: Clock | None = None, **kwargs: Any) -> Node:
        return Node(start, clock or Clock(), **kwargs)

    yield make
    for server in reversed(started):
        server.close()


# -- the timers ------------------------------------------------------------------------------

def test_open_becomes_idle_then_disconnected(node: Callable[..., Node]) -> None:
    chat = node(sinks=ENABLED)
    sub = chat.host.events.subscribe()
    chat.text(ANN, "hello")
    opened = chat.conversation(ANN)
    chat.clock.advance(299)
    assert not chat.tick()
    still = chat.conversation(ANN)
    chat.clock.advance(2)
    chat.tick()
    idle = chat.conversation(ANN)
    chat.clock.advance(119)
    chat.tick()
    waiting = chat.conversation(ANN)
    chat.clock.advance(2)
    chat.tick()
    closed = chat.conversation(ANN)
    events = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]

    assert opened["state"] == "open" and opened["route"] == "default"
    assert epoch(opened["idle_due"]) == pytest.approx(epoch(opened["party_active_at"]) + 300)
    assert still["state"] == "open"
    assert idle["state"] == "idle" and idle["idle_due"] is None
    assert epoch(idle["disconnect_due"]) == pytest.approx(epoch(idle["idle_at"]) + 120)
    assert waiting["state"] == "idle"
    assert (closed["state"], closed["close_reason"]) == ("closed", "idle timeout")
    assert closed["closed_at"] and closed["disconnect_due"] is None
    named = [(e["old"], e["new"], e["reason"]) for e in events if e.get("event") == "conversation"]
    assert named == [(None, "open", "opened"), ("open", "idle", "party idle"),
                     ("idle", "closed", "idle timeout")]
    assert chat.node.outbound() == []  # no text unless configured: SMS cost money


def test_a_texter_writing_while_idle_reopens_the_conversation(node: Callable[..., Node]) -> None:
    chat = node(sinks=ENABLED)
    chat.text(ANN, "hello")
    chat.clock.advance(301)
    chat.tick()
    assert chat.conversation(ANN)["state"] == "idle"
    chat.text(ANN, "still here", count=2)
    back = chat.conversation(ANN)
    chat.clock.advance(200)  # past the grace time of the idle spell, not the idle time
    chat.tick()
    later = chat.conversation(ANN)

    assert (back["state"], back["idle_at"], back["messages_in"]) == ("open", None, 2)
    assert epoch(back["idle_due"]) == pytest.approx(chat.clock.now - 200 + 300)
    assert later["state"] == "open" and later["id"] == back["id"]


def test_idle_and_disconnect_texts_reach_the_phone_with_their_values(
        node: Callable[..., Node]) -> None:
    sinks = ENABLED + ('idle_text = "Still there? This chat closes in {minutes} min."\n'
                       'disconnect_text = "Closed after {idle_minutes} min of silence ({local})."\n')
    chat = node(sinks=sinks)
    chat.text(ANN, "hello")
    chat.clock.advance(301)
    chat.tick()
    chat.clock.advance(121)
    chat.tick()
    texts = wait_until(lambda: len(found := chat.inbox(ANN)) >= 2 and found,
                       what="both texts on Ann's phone")
    thread = chat.node.api.get(f"/api/conversations/{chat.conversation(ANN)['id']}").json()

    assert texts == ["Still there? This chat closes in 2 min.",
                     f"Closed after 5 min of silence ({OUR_NUMBER})."]
    out = [(m["direction"], m["body"], m["from"], m["account"]) for m in thread["messages"]]
    assert out == [("in", "hello", ANN, "default"),
                   ("out", texts[0], OUR_NUMBER, "default"),
                   ("out", texts[1], OUR_NUMBER, "default")]
    assert all(m["status"] for m in thread["messages"]) and thread["messages_out"] == 2


def test_disabled_by_default(node: Callable[..., Node]) -> None:
    chat = node()
    chat.text(ANN, "hello")
    chat.clock.advance(10 * 86400)
    chat.tick()
    found = chat.conversation(ANN)
    assert (found["state"], found["idle_due"], found["disconnect_due"]) == ("open", None, None)


def test_a_route_override_beats_the_sms_attributes_which_beat_chat(
        node: Callable[..., Node]) -> None:
    sinks = ("[chat]\nparty_idle_time = 600\n\n"
             "[chat.routes.vip]\nparty_idle_time = 30\nparty_idle_grace_time = 10\n")
    attrs = '\n[attrs]\nEnableIdleTimeout = "1"\nPartyIdleTime = "120"\n'
    chat = node(sinks=sinks, extra=attrs)
    chat.text(ANN, "VIP: my order")
    chat.text(BOB, "hello")
    ann, bob = chat.conversation(ANN), chat.conversation(BOB)
    chat.clock.advance(60)
    chat.tick()
    states = {n: chat.conversation(n)["state"] for n in (ANN, BOB)}
    chat.clock.advance(70)
    chat.tick()
    after = {n: chat.conversation(n)["state"] for n in (ANN, BOB)}

    assert (ann["route"], bob["route"]) == ("vip", "default")
    assert epoch(ann["idle_due"]) == pytest.approx(epoch(ann["party_active_at"]) + 30)
    assert epoch(bob["idle_due"]) == pytest.approx(epoch(bob["party_active_at"]) + 120)
    assert states == {ANN: "idle", BOB: "open"}
    assert after == {ANN: "closed", BOB: "idle"}  # Ann's grace: 10 s; Bob: [chat]'s 300


def test_a_restart_resumes_the_timers_from_stored_times(node: Callable[..., Node]) -> None:
    clock = Clock()
    chat = node(clock, sinks=ENABLED)
    chat.text(ANN, "hello")
    chat.node.stop()
    clock.advance(301)  # the server was down when the deadline passed
    chat.node.start()
    chat.tick()
    idle = chat.conversation(ANN)
    chat.node.stop()
    clock.advance(121)
    chat.node.start()
    chat.tick()
    closed = chat.conversation(ANN)

    assert idle["state"] == "idle" and epoch(idle["idle_at"]) == pytest.approx(clock.now - 121)
    assert (closed["state"], closed["close_reason"]) == ("closed", "idle timeout")


def test_a_live_sinks_change_keeps_the_timers(node: Callable[..., Node]) -> None:
    chat = node(sinks=ENABLED)
    chat.text(ANN, "hello")
    chat.clock.advance(200)
    old = chat.sink
    (chat.node.cfg / "sinks.toml").write_text(ENABLED.replace("300", "150"))
    chat.run(lambda: chat.host.live.apply(ConfigChange("file")))
    new = chat.sink
    new.clock = chat.clock
    due = chat.conversation(ANN)["idle_due"]
    chat.tick()
    idle = chat.conversation(ANN)

    assert new is not old and old.timers.task is None  # the old sink stopped its timers
    assert epoch(due) == pytest.approx(chat.clock.now - 200 + 150)
    assert idle["state"] == "idle"


def test_a_tick_moves_a_bounded_batch(node: Callable[..., Node],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    chat = node(sinks=ENABLED)
    package = type(chat.sink).__module__.rsplit(".", 1)[0]
    for module in ("conversations", "timers"):
        monkeypatch.setattr(sys.modules[f"{package}.{module}"], "BATCH", 2)
    for number in (ANN, BOB, "+14155550125"):
        chat.text(number, "hi")
    chat.clock.advance(301)
    first = chat.tick()
    idle_after_first = sum(c["state"] == "idle" for c in chat.conversations())
    second = chat.tick()
    states = sorted(c["state"] for c in chat.conversations())
    assert (first, idle_after_first, second) == (True, 2, False)
    assert states == ["idle", "idle", "idle"]


def test_state_changes_stream_on_the_events_endpoint(node: Callable[..., Node]) -> None:
    chat = node(sinks=ENABLED)
    chat.text(ANN, "hello")
    with chat.node.api.stream("GET", "/api/events") as stream:
        lines = (line for line in stream.iter_lines() if line)
        assert next(lines) == ": connected"
        chat.clock.advance(301)
        chat.tick()
        seen = []
        for line in lines:  # status events of the SMS may come first
            seen.append(line)
            if len(seen) > 1 and seen[-2] == "event: conversation" or len(seen) > 20:
                break
    assert seen[-2] == "event: conversation", seen
    assert '"new": "idle"' in seen[-1] and f'"remote": "{ANN}"' in seen[-1]


# -- the settings ----------------------------------------------------------------------------

def loaded(tmp_path: Path, config_dir: Callable[..., Path], sinks: str,
           extra: str = "") -> list[str]:
    """The plugin problems of a configuration with the shipped chat sink."""
    smshost = base_config(tmp_path, extra=extra).replace("shipped = false", "shipped = true")
    cfg = config_dir(smshost=smshost, brokers=SIMULATOR, routes="""
[[inbound]]
name = "mail"
type = "body"
pattern = 'mail.*'
destination = "email"
""" + ROUTES, sinks=sinks)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    return [r.error or "" for r in host.plugins.failures if "chat" in (r.error or "")
            or "attrs" in (r.error or "")]


@pytest.mark.parametrize(("table", "expected"), [
    ("party_idle_time = 9", "chat.party_idle_time: must be between 10 and 2592000; got 9"),
    ("party_idle_time = 2592001", "must be between 10 and 2592000; got 2592001"),
    ("party_idle_grace_time = -1", "chat.party_idle_grace_time: must be between 0 and"),
    ("enable_idle_timeout = 1", "chat.enable_idle_timeout: expected true or false"),
    ('idle_text = "in {mins} min"', "chat.idle_text: names an unknown value {mins}"),
    ('idle_text = "in {minutes:>3} min"', "{minutes} takes no format or conversion"),
    ('disconnect_text = "bye {"', "chat.disconnect_text: is not a valid template"),
    (f'idle_text = "{"x" * 1001}"', "must be at most 1000 characters; got 1001"),
    ("[chat.routes.vip]\nparty_idle_time = 5", "chat.routes.vip.party_idle_time: must be"),
    ("[chat.routes.nosuch]\nparty_idle_time = 60",
     "chat.routes.nosuch: no inbound route 'nosuch' to chat; chat routes: default, vip"),
    ("[chat.routes.mail]\nparty_idle_time = 60", "no inbound route 'mail' to chat"),
])
def test_bounds_of_the_settings(tmp_path: Path, config_dir: Callable[..., Path], table: str,
                                expected: str) -> None:
    problems = loaded(tmp_path, config_dir, f"[chat]\n{table}\n")
    assert any(expected in p for p in problems), problems
    assert any("sinks.toml:" in p for p in problems), problems  # file and line


def test_good_settings_load_without_problems(tmp_path: Path,
                                             config_dir: Callable[..., Path]) -> None:
    sinks = (ENABLED + 'idle_text = "{minutes} {seconds} {idle_minutes} {idle_seconds} '
             '{local} {channel} {{braces}}"\n[chat.routes.vip]\nparty_idle_grace_time = 0\n')
    attrs = '\n[attrs]\nEnableIdleTimeout = "true"\nPartyIdleTime = "60"\n'
    assert loaded(tmp_path, config_dir, sinks, attrs) == []


@pytest.mark.parametrize(("value", "expected"), [
    ('EnableIdleTimeout = "maybe"', "attrs.EnableIdleTimeout: must be 1 or 0"),
    ('PartyIdleTime = "5 min"', "attrs.PartyIdleTime: must be a whole number of seconds"),
    ('PartyIdleGraceTime = "99999999"', "attrs.PartyIdleGraceTime: must be between 0 and"),
])
def test_a_bad_attribute_is_reported_and_ignored(tmp_path: Path, config_dir: Callable[..., Path],
                                                 value: str, expected: str) -> None:
    problems = loaded(tmp_path, config_dir, ENABLED, f"\n[attrs]\n{value}\n")
    assert len(problems) == 1 and expected in problems[0] and "(ignored)" in problems[0]
    assert "smshost.toml:" in problems[0]


def test_a_bad_attribute_value_is_ignored_by_the_policy(tmp_path: Path) -> None:
    """A bad value there at start is reported (/health) and the next level applies."""
    sinks = ENABLED.replace("300", "100", 1)
    cfg = write_config(tmp_path, 8080, brokers=SIMULATOR, routes=ROUTES, sinks=sinks,
                       extra='\n[attrs]\nEnableIdleTimeout = "0"\nPartyIdleTime = "soon"\n')
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    base, _ = host.sinks["chat"].policies()  # type: ignore[attr-defined]
    assert (base.party_idle_time, base.enable_idle_timeout) == (100, False)
    assert [r.name for r in host.plugins.failures] == ["chat"]


def test_a_live_edit_bringing_a_bad_attribute_is_refused(node: Callable[..., Node]) -> None:
    chat = node(sinks=ENABLED)
    smshost = chat.node.cfg / "smshost.toml"
    smshost.write_text(smshost.read_text() + '\n[attrs]\nPartyIdleTime = "soon"\n')
    with pytest.raises(ConfigRefused, match="attrs.PartyIdleTime: must be a whole number"):
        chat.run(lambda: chat.host.live.apply(ConfigChange("file")))
    assert chat.sink.policies()[0].party_idle_time == 300  # the running value stays


def test_every_chat_setting_is_documented() -> None:
    from plugins.sinks.chat.settings import ChatSettings, RouteIdle  # noqa: PLC0415
    text = (ROOT / "docs" / "sinks-queue-chat.md").read_text(encoding="utf-8")
    for cls in (ChatSettings, RouteIdle):
        for field in dataclasses.fields(cls):
            assert f"| `{field.name}` |" in text, f"{cls.__name__}.{field.name}"
