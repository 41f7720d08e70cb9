"""ACD (issue 14 point 2): who is offered which interaction, with a fake clock. Each
strategy, capacity, FIFO with priority, offer timeouts and declines going to the next
agent, missed offers setting an agent away, wrap-up, the sticky agent, and atomicity
under concurrent SMS and status changes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from host.ledger import NewMessage
from tests.desk import Desk, config, running


@pytest.fixture
def desk(tmp_path: Path) -> Any:
    with running(config(tmp_path)) as found:
        yield found


def available(desk: Desk, *logins: str, gap: float = 1.0) -> None:
    """Each of ``logins`` available, ``gap`` seconds apart (the first idle longest)."""
    for login in logins:
        desk.status(login, "available")
        desk.clock.now += gap


def test_longest_idle_offers_the_agent_free_the_longest_with_the_why(desk: Desk) -> None:
    available(desk, "bob", "alice")
    first = desk.interaction_of(desk.text("+14085550001", "hello"))
    second = desk.interaction_of(desk.text("+14085550002", "hi"))
    assert desk.offers("bob") == [first]
    assert desk.offers("alice") == [second]  # bob was offered since: alice idles longest
    why = desk.get(first)["why"]
    assert (why["strategy"], why["rule"], why["chosen"]) == ("longest_idle", "longest_idle",
                                                            "bob")
    skipped = {c["agent"]: c["skipped"] for c in why["candidates"]}
    assert skipped == {"alice": None, "bob": None, "carol": "offline"}


def test_least_loaded_and_round_robin(tmp_path: Path) -> None:
    with running(config(tmp_path / "a", strategy="least_loaded")) as desk:
        available(desk, "alice", "bob")
        ids = [desk.interaction_of(desk.text(f"+1408555000{n}", "x")) for n in range(3)]
        desk.act("alice", ids[0], "accept")
        # alice 1 (connected), bob 1 (offered): the third goes to the least loaded, then
        # by longest idle: alice became available first
        assert (desk.offers("alice"), desk.offers("bob")) == ([ids[2]], [ids[1]])
    with running(config(tmp_path / "b", strategy="round_robin", capacity=5)) as desk:
        available(desk, "carol", "alice", "bob")
        ids = [desk.interaction_of(desk.text(f"+1408555001{n}", "x")) for n in range(4)]
        # never offered first (by login), then the one offered the longest ago
        assert desk.offers("alice") == [ids[0], ids[3]]
        assert (desk.offers("bob"), desk.offers("carol")) == ([ids[1]], [ids[2]])


def test_capacity_fifo_and_priority(tmp_path: Path) -> None:
    with running(config(tmp_path, capacity=1)) as desk:
        plain = [desk.text(f"+1408555000{n}", f"plain {n}") for n in range(3)]
        vip = desk.text("+14155550001", "vip")
        assert desk.client.get("/api/queues/support").json()["interactions"][0][
            "body"] == "vip"  # the line: priority first, then arrival
        available(desk, "alice", "bob")
        offered = desk.offers("alice") + desk.offers("bob")
        assert sorted(offered) == sorted([desk.interaction_of(vip),
                                          desk.interaction_of(plain[0])])
        assert desk.offers("alice") == [desk.interaction_of(vip)]  # first seat, first in line
        assert desk.me("alice")["load"] == 1 and desk.me("alice")["capacity"] == 1
        assert desk.client.get("/api/queues/support").json()["waiting"] == 2
        why = desk.get(desk.interaction_of(plain[1]))["why"]
        assert why is None  # never offered: nobody had a seat


def test_offer_timeout_goes_to_the_next_agent_and_missed_offers_set_away(
        desk: Desk) -> None:
    available(desk, "alice", "bob")
    first = desk.interaction_of(desk.text("+14085550001", "one"))
    assert desk.offers("alice") == [first]
    desk.tick(29)
    assert desk.offers("alice") == [first]  # not yet
    desk.tick(2)
    assert (desk.offers("alice"), desk.offers("bob")) == ([], [first])
    assert desk.me("alice")["status"] == "available"  # one miss of 2
    why = desk.get(first)["why"]
    assert {c["agent"]: c["skipped"] for c in why["candidates"]}["alice"] == \
        "missed this one"
    second = desk.interaction_of(desk.text("+14085550002", "two"))
    assert desk.offers("alice") == [second]
    desk.tick(31)  # alice misses again (and bob his): alice is away
    me = desk.me("alice")
    assert (me["status"], me["reason"]) == ("away", "missed offers")
    assert desk.me("bob")["status"] == "available"
    assert set(desk.offers("bob")) == {second}
    events = [e["state"] for e in desk.get(first)["events"]]
    assert events[:4] == ["waiting", "offered", "waiting", "offered"]


def test_a_decline_goes_to_the_next_agent_and_back_after_the_timeout(desk: Desk) -> None:
    available(desk, "alice")
    first = desk.interaction_of(desk.text("+14085550001", "one"))
    assert desk.act("bob", first, "decline").status_code == 403  # not his
    assert desk.act("alice", first, "decline").status_code == 200
    assert desk.offers("alice") == []  # declined this one; nobody else available
    available(desk, "bob")
    assert desk.offers("bob") == [first]
    assert desk.act("bob", first, "decline").status_code == 200
    desk.tick(31)  # both declined it a timeout ago: offered again
    assert desk.offers("alice") == [first]
    assert desk.act("alice", first, "decline").json()["offer"]["agent"] == "bob"
    assert desk.act("bob", first, "decline").json()["state"] == "waiting"
    again = desk.act("alice", first, "decline")
    assert again.status_code == 409 and "is waiting" in again.json()["message"]


def test_wrapup_blocks_offers_until_it_ends(desk: Desk) -> None:
    available(desk, "alice")
    first = desk.interaction_of(desk.text("+14085550001", "one"))
    desk.act("alice", first, "accept")
    assert desk.act("alice", first, "disconnect").json()["state"] == "disconnected"
    assert desk.me("alice")["wrapup_until"] is not None
    second = desk.interaction_of(desk.text("+14085550002", "two"))
    assert desk.offers("alice") == []
    desk.tick(9)
    assert desk.offers("alice") == []
    desk.tick(2)
    assert desk.offers("alice") == [second]
    assert desk.me("alice")["wrapup_until"] is None


def test_the_sticky_agent_gets_its_texter_back(desk: Desk) -> None:
    available(desk, "alice", "bob")
    first = desk.interaction_of(desk.text("+14085550001", "one"))
    assert desk.offers("alice") == [first]
    desk.act("alice", first, "accept")
    desk.act("alice", first, "disconnect")
    desk.tick(11)  # wrap-up over; bob has idled longest now
    again = desk.interaction_of(desk.text("+14085550001", "me again"))
    assert desk.offers("alice") == [again]
    why = desk.get(again)["why"]
    assert (why["rule"], why["sticky_agent"]) == ("sticky", "alice")
    other = desk.interaction_of(desk.text("+14085550002", "someone else"))
    assert desk.offers("bob") == [other]


def test_sticky_agent_not_eligible_falls_back_to_the_strategy(desk: Desk) -> None:
    available(desk, "alice", "bob")
    first = desk.interaction_of(desk.text("+14085550001", "one"))
    desk.act("alice", first, "accept")
    desk.act("alice", first, "disconnect")  # alice in wrap-up
    again = desk.interaction_of(desk.text("+14085550001", "me again"))
    assert desk.offers("bob") == [again]
    why = desk.get(again)["why"]
    assert why["sticky_agent"] == "alice" and why["rule"] == "longest_idle"
    assert {c["agent"]: c["skipped"] for c in why["candidates"]}["alice"] == "in wrap-up"


def test_going_offline_returns_interactions_to_the_front_of_the_line(desk: Desk) -> None:
    available(desk, "alice")
    ids = [desk.interaction_of(desk.text(f"+1408555000{n}", "x")) for n in range(3)]
    desk.act("alice", ids[0], "accept")
    assert desk.offers("alice") == [ids[1]]
    desk.status("alice", "offline")
    line = desk.client.get("/api/queues/support").json()["interactions"]
    assert [i["id"] for i in line] == ids  # in their places: queued_at kept
    assert desk.me("alice")["load"] == 0
    assert desk.get(ids[0])["events"][-1]["detail"] == {"returned": "agent alice offline"}


def test_concurrent_sms_and_status_changes_never_double_offer_nor_exceed_capacity(
        desk: Desk) -> None:
    sink, host = desk.sink, desk.host

    async def storm() -> None:
        statuses = ["available", "away", "available", "offline", "available"]
        changes = [sink.run(lambda tx, login=login, status=status: _set(tx, login, status))
                   for status in statuses for login in ("alice", "bob", "carol")]
        route = SimpleNamespace(name="default", target="support")
        texts = [sink.deliver(await _stored(host, n), route) for n in range(40)]
        await asyncio.gather(*changes, *texts)

    desk.call(storm)
    desk.tick(0)
    counts = desk.call(host.store.read, lambda db: (
        list(db.execute("select interaction_id, count(*) from queue_offers where outcome = "
                        "'pending' group by interaction_id having count(*) > 1")),
        list(db.execute("select assigned_to, count(*) from queue_interactions where state "
                        "in ('offered', 'connected') group by assigned_to")),
        db.execute("select count(*) from queue_interactions where state = 'offered'")
        .fetchone()[0],
        db.execute("select count(*) from queue_offers where outcome = 'pending'").fetchone()[0]))
    doubled, loads, offered, pending = counts
    assert doubled == []
    assert all(load <= 2 for _, load in loads) and offered == pending == 6
    assert desk.client.get("/api/queues/support").json()["waiting"] == 34


def _set(tx: Any, login: str, status: str) -> None:
    """What PUT /api/agents/{login}/status does, in the sink's transaction."""
    from_plugin = tx.__class__.__module__.rsplit(".", 1)[0]
    agents = sys.modules[f"{from_plugin}.agents"]
    acd = sys.modules[f"{from_plugin}.acd"]
    agents.set_status(tx, login, status, "", "test")
    acd.dispatch(tx)


async def _stored(host: Any, n: int) -> Any:
    message, _ = await host.messages.add(NewMessage(
        direction="in", broker="simulator", account="default", local="+15550100",
        remote=f"+1408556{n:04d}", body=f"storm {n}", status="received"))
    return message


def test_a_tick_a_hair_before_a_retry_keeps_the_retry_due(tmp_path: Path) -> None:
    """The tick answers the next deadline at its own "now": a tick that finds a missed
    offer's retry window still open (woken a hair early) keeps the retry due; read at a
    later now it was lost, and the interaction waited for the periodic tick."""
    with running(config(tmp_path)) as desk:
        desk.status("bob", "available")
        interaction = desk.interaction_of(desk.text("+14085550009", "hi"))
        assert desk.offers("bob") == [interaction]
        desk.clock.now += 30
        due = desk.call(desk.sink.tick)  # expired: bob missed it, nobody else is there
        assert desk.offers("bob") == [] and due is not None
        desk.clock.now = due - 0.000_01  # the scheduler woke a hair early
        again = desk.call(desk.sink.tick)
        assert desk.offers("bob") == [] and again is not None and again >= desk.clock.now
        desk.clock.now = again + 0.001
        desk.call(desk.sink.tick)
        assert desk.offers("bob") == [interaction]
