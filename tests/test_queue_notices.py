"""Queue notices (issue 14 point 5, SPEC S5): SMS auto-replies to texters waiting in a
queue, on a real node (uvicorn on loopback) whose simulator phone receives them
(``/api/simulator/inbox``), with a fake clock: the worker's steps and the ACD's ticks
run when a test calls them, on the node's loop."""

from __future__ import annotations

import asyncio
from datetime import datetime
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from host.config import load_settings
from host.core import Host
from tests.desk import Clock
from tests.outbound.conftest import Smshost, wait_until

T = TypeVar("T")
OURS = "+15550100"
BROKERS = f"""
[[brokers]]
name = "simulator"
definition = "simulator"
encryption = "http"
[[brokers.accounts]]
id = "default"
local_address = "{OURS}"
"""
ROUTES = """
[[inbound]]
name = "default"
destination = "queue"
target = "support"
default = true
"""
SINKS = """
[queue]
capacity = 1
offer_timeout = 30
wrapup = 10
sticky_seconds = 0

[queue.notices]
{notices}

[[queue.queues]]
name = "support"
members = ["alice", "bob"]
"""
ON = "enabled = true"
A, B, C = "+14085550001", "+14085550002", "+14085550003"


class Node:
    """The running node, its fake clock, and the agents' tokens."""

    def __init__(self, smshost: Smshost, clock: Clock) -> None:
        self.smshost = smshost
        self.clock = clock
        self.tokens: dict[str, dict[str, str]] = {}
        self.attach()

    def attach(self) -> None:
        """After a start: the clock in, agents' tokens made."""
        self.sink.clock = self.clock
        for login in ("alice", "bob"):
            made = self.api.post("/api/tokens", json={"user": login, "scopes": ["admin"]})
            assert made.status_code == 201, made.text
            self.tokens[login] = {"Authorization": f"Bearer {made.json()['token']}"}

    @property
    def api(self) -> Any:
        return self.smshost.api

    @property
    def host(self) -> Host:
        assert self.smshost.host is not None
        return self.smshost.host

    @property
    def sink(self) -> Any:
        return self.host.sinks["queue"]

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        loop = self.sink.notices.loop
        assert loop is not None, "the notice worker did not start"
        return asyncio.run_coroutine_threadsafe(fn(), loop).result(15)  # type: ignore[arg-type]

    def text(self, sender: str, body: str = "hello") -> int:
        """A phone texts us; routed, then the notices drained."""
        answer = self.api.post("/api/simulator/mo", json={"from": sender, "text": body})
        assert answer.status_code == 201, answer.text
        assert self.call(lambda: self.host.router.idle(10)), "routing did not finish"
        self.drain()
        return int(answer.json()["id"])

    def drain(self, seconds: float = 0.0) -> int:
        self.clock.now += seconds
        self.call(self.sink.tick)
        return int(self.call(self.sink.notices.drain))

    def status(self, login: str, status: str) -> None:
        answer = self.api.put("/api/agents/me/status", headers=self.tokens[login],
                              json={"status": status, "reason": ""})
        assert answer.status_code == 200, answer.text
        self.drain()

    def act(self, login: str, interaction: int, action: str) -> None:
        answer = self.api.post(f"/api/interactions/{interaction}/{action}",
                               headers=self.tokens[login], json={})
        assert answer.status_code == 200, answer.text
        self.drain()

    def offers(self, login: str) -> list[int]:
        me = self.api.get("/api/agents/me", headers=self.tokens[login]).json()
        return [o["interaction"] for o in me["offers"]]

    def notices(self, number: str) -> list[str]:
        """The notices stored for ``number``'s interactions, oldest first."""
        return [r["text"] for r in self.smshost.rows(
            "select n.text from queue_notices n join queue_interactions i on i.id = "
            "n.interaction_id where i.remote = ? and n.status <> 'off' order by n.id",
            [number])]

    def inbox(self, number: str, count: int) -> list[str]:
        """The phone's texts (oldest first) once it has ``count``."""
        def texts() -> list[str]:
            found = self.api.get("/api/simulator/inbox", params={"number": number}).json()
            return [m["text"] for m in reversed(found["messages"])]
        return wait_until(lambda: len(t := texts()) >= count and t,
                          what=f"{count} texts to {number}", explain=lambda: str(texts()))


@pytest.fixture
def node_for(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    started: list[Smshost] = []

    def make(notices: str = ON, clock: Clock | None = None) -> Node:
        smshost = Smshost(tmp_path / f"node{len(started)}", brokers=BROKERS, routes=ROUTES,
                          sinks=SINKS.format(notices=notices))
        started.append(smshost)
        return Node(smshost.start(), clock or Clock())

    yield make
    for smshost in started:
        smshost.close()


def busy_line(node: Node) -> list[int]:
    """alice available and connected to A's interaction; B and C waiting behind."""
    node.status("alice", "available")
    node.text(A)
    (first,) = node.offers("alice")
    node.act("alice", first, "accept")
    node.text(B)
    node.text(C)
    return [first]


def next_one(node: Node, first: int) -> None:
    """alice closes A's interaction and, after her wrap-up, accepts B's: C is first."""
    node.act("alice", first, "disconnect")
    node.drain(11)
    (second,) = node.offers("alice")
    node.act("alice", second, "accept")


def test_entering_notices_say_the_place_and_the_wait(node_for: Callable[..., Node]) -> None:
    node = node_for()
    busy_line(node)
    # nobody ahead of B; one ahead of C, no free seat (counted 1): 1 × 5 min (initial)
    assert node.inbox(B, 1) == ["You are number 1 in line for support. Estimated wait: "
                                "about 1 min."]
    assert node.inbox(C, 1) == ["You are number 2 in line for support. Estimated wait: "
                                "about 5 min."]
    assert node.notices(A) == ["alice is now handling your messages."]  # offered at once


def test_assignment_names_the_agent(node_for: Callable[..., Node]) -> None:
    node = node_for('enabled = true\nassigned_text = "Hi, {agent} here."')
    answer = node.api.patch("/api/users/alice", json={"display_name": "Alice Liddell"})
    assert answer.status_code == 200, answer.text
    node.status("alice", "available")
    node.text(A)
    (first,) = node.offers("alice")
    assert node.notices(A) == []  # offered, not yet accepted
    node.act("alice", first, "accept")
    assert node.inbox(A, 1) == ["Hi, Alice Liddell here."]
    thread = node.api.get(f"/api/interactions/{first}").json()["messages"]
    assert [(m["direction"], m["text"]) for m in thread] == [
        ("in", "hello"), ("out", "Hi, Alice Liddell here.")]


def test_improved_position_is_told_at_most_every_five_minutes(
        node_for: Callable[..., Node]) -> None:
    node = node_for()
    (first,) = busy_line(node)
    next_one(node, first)
    assert node.notices(C) == ["You are number 2 in line for support. Estimated wait: "
                               "about 5 min."]  # too soon after the entering notice
    node.drain(60 * 4)
    assert len(node.notices(C)) == 1
    node.drain(60)  # five minutes after the last notice
    told = "You are now number 1 in line. Estimated wait: about 1 min."
    assert node.notices(C)[1:] == [told]
    assert node.inbox(C, 2)[1] == told
    node.drain(60 * 10)  # no better place since: nothing more
    assert len(node.notices(C)) == 2


def test_restart_keeps_the_rate_limit(node_for: Callable[..., Node]) -> None:
    node = node_for()
    (first,) = busy_line(node)
    node.smshost.restart()
    node.attach()
    next_one(node, first)
    node.drain(60 * 4)
    assert len(node.notices(C)) == 1  # the entering notice's time was kept
    node.drain(60)
    assert node.notices(C)[1] == "You are now number 1 in line. Estimated wait: about 1 min."


def test_no_agent_and_out_of_hours(node_for: Callable[..., Node]) -> None:
    node = node_for()
    node.text(A)  # alice and bob offline
    assert node.inbox(A, 1) == ["No one at support can answer right now; we will reply as "
                                "soon as someone can."]
    today = datetime.fromtimestamp(node.clock.now, ZoneInfo("Asia/Tokyo")).weekday()
    other = "tue" if today == 0 else "mon"  # open another day only
    answer = node.api.put("/api/queues/support/notices", json={
        "timezone": "Asia/Tokyo", "hours": [f"{other} 09:00-17:00"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["open_now"] is False
    node.status("alice", "available")  # an agent there: closed still wins
    node.status("alice", "away")
    node.text(B)
    assert node.inbox(B, 1) == [f"support is closed now (open {other} 09:00-17:00); we "
                                "will reply when we open."]


def test_past_the_limit_says_more_than(node_for: Callable[..., Node]) -> None:
    node = node_for("enabled = true\nwait_limit_minutes = 4")
    busy_line(node)
    assert node.inbox(C, 1) == ["You are number 2 in line for support. Estimated wait: "
                                "more than 4 min."]


def test_notices_are_off_by_default(node_for: Callable[..., Node]) -> None:
    node = node_for("")
    busy_line(node)
    assert node.notices(B) == node.notices(C) == node.notices(A) == []
    assert node.smshost.rows("select id from messages where direction = 'out'") == []


def test_handle_time_average_is_updated_on_close(node_for: Callable[..., Node]) -> None:
    node = node_for("")  # kept whether notices are on or not
    node.status("alice", "available")
    node.text(A)
    (first,) = node.offers("alice")
    node.act("alice", first, "accept")
    node.clock.now += 120
    node.act("alice", first, "disconnect")
    view = node.api.get("/api/queues/support/notices").json()
    assert view["handle_time"] == {"seconds": 120.0, "closes": 1}
    node.drain(11)
    node.text(B, "again")
    (second,) = node.offers("alice")
    node.act("alice", second, "accept")
    node.clock.now += 40
    node.act("alice", second, "disconnect")
    assert node.api.get("/api/queues/support/notices").json()["handle_time"] == {
        "seconds": 100.0, "closes": 2}  # (3 × 120 + 40) / 4
    node.smshost.restart()
    node.attach()
    assert node.api.get("/api/queues/support/notices").json()["handle_time"][
        "seconds"] == 100.0


def test_an_opted_out_texter_is_not_texted(node_for: Callable[..., Node]) -> None:
    node = node_for("enabled = true\nposition_notice_minutes = 1")
    (first,) = busy_line(node)
    node.text(C, "STOP")
    next_one(node, first)
    node.drain(120)
    rows = node.smshost.rows("select n.kind, n.status, n.detail from queue_notices n join "
                             "queue_interactions i on i.id = n.interaction_id where "
                             "i.remote = ? order by n.id", [C])
    assert [(r["kind"], r["status"]) for r in rows] == [("entering", "queued"),
                                                         ("position", "failed")]
    assert "opted out" in rows[1]["detail"]
    texts = node.inbox(C, 2)  # the entering notice, the STOP confirmation; no more
    assert len(texts) == 2 and "now number 1" not in " ".join(texts)


def test_workgroup_overrides_are_checked(node_for: Callable[..., Node]) -> None:
    node = node_for()
    put = node.api.put
    for body, field in (({"entering_text": "{nope}"}, "entering_text"),
                        ({"hours": ["mon 18:00-08:00"]}, "hours"),
                        ({"timezone": "Mars/Olympus"}, "timezone"),
                        ({"enabled": "yes"}, "enabled"), ({"colour": 1}, "colour")):
        answer = put("/api/queues/support/notices", json=body)
        assert answer.status_code == 400 and field in answer.json()["message"], answer.text
    assert put("/api/queues/nobody/notices", json={}).status_code == 404
    answer = put("/api/queues/support/notices", json={"position_notice_minutes": 2})
    assert answer.json()["effective"]["position_notice_minutes"] == 2
    assert answer.json()["overrides"] == {"position_notice_minutes": 2}
    answer = put("/api/queues/support/notices", json={"position_notice_minutes": None})
    assert answer.json()["effective"]["position_notice_minutes"] == 5
    acd = node.api.get("/api/queues/support/settings").json()
    assert acd["effective"]["capacity"] == 1  # the ACD overrides beside untouched


def test_a_template_with_an_unknown_name_is_refused_at_load(tmp_path: Path) -> None:
    smshost = Smshost(tmp_path, brokers=BROKERS, routes=ROUTES, sinks=SINKS.format(
        notices='enabled = true\nentering_text = "Wait {wait_time}"'))
    try:
        host = Host(load_settings(smshost.cfg), config_dir=smshost.cfg)
        host.load_plugins()
        (problem,) = [r.error or "" for r in host.plugins.failures
                      if r.kind == "sink settings"]
    finally:
        smshost.close()
    assert problem.startswith(f"{smshost.cfg / 'sinks.toml'}:10: queue.notices."
                              "entering_text: unknown name {wait_time}; names: {queue}")



def test_concurrent_steps_send_each_notice_once(node_for: Callable[..., Node]) -> None:
    node = node_for()
    node.status("alice", "available")
    node.text(A)
    (first,) = node.offers("alice")
    node.act("alice", first, "accept")
    for sender in (B, C):
        answer = node.api.post("/api/simulator/mo", json={"from": sender, "text": "hi"})
        assert answer.status_code == 201, answer.text
    assert node.call(lambda: node.host.router.idle(10))

    async def together() -> list[int]:
        notices = node.sink.notices
        return list(await asyncio.gather(*(notices.drain() for _ in range(4))))
    node.call(together)  # besides the worker's own steps
    assert (len(node.notices(B)), len(node.notices(C))) == (1, 1)
