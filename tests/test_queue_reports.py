"""Reports per queue and per agent (issue 14 point 9; docs/agent-desk.md, "Reports"):
a day of the desk played through the real API with a fake clock (SMS from the
simulator, agents' statuses, offers accepted, declined and expired, replies, a
pickup, a transfer, disconnects, abandons), then every figure asserted exactly; range
filters, CSV, who may read what, bad parameters, and the /metrics lines."""

from __future__ import annotations

import csv
import io
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host.api import from_epoch
from tests.desk import Clock, Desk, config, running

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SUPPORT = "support"


def at(offset: float) -> str:
    return from_epoch(T0 + offset)


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    clock = Clock()
    clock.now = T0
    # messages (SMS in, replies out) are stamped by the same fake clock as the desk
    monkeypatch.setattr("host.ledger.utcnow", lambda: from_epoch(clock.now))
    with running(config(tmp_path), clock) as found:
        # stored metrics are read at most once a second: each scrape 10 s later
        found.host.metrics.clock = itertools.count(0.0, 10.0).__next__
        yield found


def to(desk: Desk, offset: float) -> None:
    """The clock at T0 + ``offset``, the desk's timers run."""
    desk.tick(T0 + offset - desk.clock.now)


def ok(answer: Any) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def play(desk: Desk) -> dict[str, int]:
    """The scenario; the interactions by letter. Support: 30 s offers, wrap-up 10 s,
    service level 60 s (the default)."""
    ids: dict[str, int] = {}
    desk.status("alice", "available")
    to(desk, 1)
    desk.status("bob", "available")
    to(desk, 2)
    ids["A"] = desk.interaction_of(desk.text("+14085550001", "a"))  # offered to alice
    to(desk, 12)
    ok(desk.act("alice", ids["A"], "accept"))  # waited 10 s
    to(desk, 20)
    assert desk.act("alice", ids["A"], "reply", text="hello").status_code == 201  # 18 s
    to(desk, 22)
    ids["B"] = desk.interaction_of(desk.text("+14085550002", "b"))  # offered to bob
    assert desk.offers("bob") == [ids["B"]]
    to(desk, 32)
    ok(desk.act("bob", ids["B"], "decline"))  # then offered to alice
    assert desk.offers("alice") == [ids["B"]]
    to(desk, 62)  # alice's offer expires: missed; bob's decline is 30 s old: bob again
    assert desk.offers("bob") == [ids["B"]]
    to(desk, 70)
    ok(desk.act("bob", ids["B"], "accept"))  # waited 48 s
    to(desk, 80)
    ok(desk.act("bob", ids["B"], "disconnect"))  # handled 10 s, no reply
    to(desk, 100)
    ok(desk.act("alice", ids["A"], "disconnect"))  # handled 88 s
    to(desk, 105)
    desk.status("alice", "away")
    desk.status("bob", "away")
    to(desk, 110)
    ids["C"] = desk.interaction_of(desk.text("+14085550003", "c"))  # nobody available
    to(desk, 200)
    ok(desk.client.post(f"/api/interactions/{ids['C']}/disconnect",
                        json={"reason": "gave up"}))  # abandoned after 90 s
    to(desk, 210)
    ids["D"] = desk.interaction_of(desk.text("+14085550004", "d"))
    to(desk, 220)
    assert desk.call(lambda: desk.sink.disconnect(ids["D"], reason="texter ended"))
    to(desk, 230)  # D: abandoned after 10 s, within the service level
    ids["E"] = desk.interaction_of(desk.text("+14085550005", "e"))
    to(desk, 300)
    desk.status("bob", "available")  # E offered to bob
    to(desk, 305)
    ok(desk.act("bob", ids["E"], "accept"))  # waited 75 s: late
    to(desk, 310)
    assert desk.act("bob", ids["E"], "reply", text="hi").status_code == 201  # 80 s
    to(desk, 320)
    ids["F"] = desk.interaction_of(desk.text("+16505550001", "f"))  # dave's own queue
    to(desk, 330)
    ok(desk.act("dave", ids["F"], "pickup"))  # waited 10 s
    to(desk, 340)
    ok(desk.act("dave", ids["F"], "transfer", workgroup=SUPPORT))  # to bob
    to(desk, 345)
    ok(desk.act("bob", ids["F"], "accept"))  # waited 5 s in support
    return ids


def stats(count: int, mean: float | None = None, p50: float | None = None,
          p90: float | None = None, most: float | None = None) -> dict[str, Any]:
    return {"count": count, "mean": mean, "p50": p50, "p90": p90, "max": most}


def offers(accepted: int = 0, declined: int = 0, missed: int = 0) -> dict[str, int]:
    return {"accepted": accepted, "declined": declined, "missed": missed,
            "withdrawn": 0, "pending": 0}


SUPPORT_DAY = {
    "queue": SUPPORT, "queued": 6, "offered": 6, "answered": 4, "abandoned": 2,
    "transferred": 0, "offers": offers(accepted=4, declined=1, missed=1),
    "wait_time": stats(4, 34.5, 10.0, 75.0, 75.0),
    "abandon_time": stats(2, 50.0, 10.0, 90.0, 90.0),
    "first_reply_time": stats(2, 49.0, 18.0, 80.0, 80.0),
    "handle_time": stats(2, 49.0, 10.0, 88.0, 88.0),
    "service_level": {"seconds": 60.0, "answered_within": 3, "abandoned_after": 1,
                      "value": 0.6},
}
DAVE_DAY = {
    "queue": "dave", "queued": 1, "offered": 0, "answered": 1, "abandoned": 0,
    "transferred": 1, "offers": offers(), "wait_time": stats(1, 10.0, 10.0, 10.0, 10.0),
    "abandon_time": stats(0), "first_reply_time": stats(0),
    "handle_time": stats(1, 10.0, 10.0, 10.0, 10.0),
    "service_level": {"seconds": 60.0, "answered_within": 1, "abandoned_after": 0,
                      "value": 1.0},
}
AGENTS_DAY = [
    {"agent": "alice", "offered": 2, "offers": offers(accepted=1, missed=1), "answered": 1,
     "picked_up": 0, "first_reply_time": stats(1, 18.0, 18.0, 18.0, 18.0),
     "handle_time": stats(1, 88.0, 88.0, 88.0, 88.0)},
    {"agent": "bob", "offered": 4, "offers": offers(accepted=3, declined=1), "answered": 3,
     "picked_up": 0, "first_reply_time": stats(1, 80.0, 80.0, 80.0, 80.0),
     "handle_time": stats(1, 10.0, 10.0, 10.0, 10.0)},
    {"agent": "carol", "offered": 0, "offers": offers(), "answered": 0, "picked_up": 0,
     "first_reply_time": stats(0), "handle_time": stats(0)},
    {"agent": "dave", "offered": 0, "offers": offers(), "answered": 1, "picked_up": 1,
     "first_reply_time": stats(0), "handle_time": stats(1, 10.0, 10.0, 10.0, 10.0)},
]


def queues(desk: Desk, **params: Any) -> Any:
    return ok(desk.client.get("/api/reports/queues", params=params))


def test_every_figure_of_a_day_per_queue_and_per_agent(desk: Desk) -> None:
    play(desk)
    report = queues(desk, since=at(0), until=at(400))
    assert (report["since"], report["until"]) == (at(0), at(400))
    assert report["service_level_seconds"] == 60.0
    assert {q["queue"]: q for q in report["queues"]} == {SUPPORT: SUPPORT_DAY,
                                                          "dave": DAVE_DAY}
    agents = ok(desk.client.get("/api/reports/agents",
                                params={"since": at(0), "until": at(400)}))
    assert agents["agents"] == AGENTS_DAY
    # the default range is the day before now
    assert queues(desk)["since"] == at(345 - 86400)
    assert queues(desk, queue=SUPPORT, since=at(0), until=at(400))["queues"] == [
        SUPPORT_DAY]


def test_a_range_counts_what_happened_in_it(desk: Desk) -> None:
    play(desk)
    (support,) = queues(desk, since=at(100), until=at(250), queue=SUPPORT)["queues"]
    # C, D and E queued; C and D abandoned; A's connection ended at 100 (since is in)
    assert {k: support[k] for k in ("queued", "offered", "answered", "abandoned")} == {
        "queued": 3, "offered": 0, "answered": 0, "abandoned": 2}
    assert support["handle_time"] == stats(1, 88.0, 88.0, 88.0, 88.0)
    assert support["service_level"] == {"seconds": 60.0, "answered_within": 0,
                                        "abandoned_after": 1, "value": 0.0}
    # until is out: B's offer at 22 counts in [0, 22]? no; in [22, 23) yes
    assert queues(desk, since=at(0), until=at(22), queue=SUPPORT)["queues"][0][
        "offered"] == 1
    assert queues(desk, since=at(22), until=at(23), queue=SUPPORT)["queues"][0][
        "offered"] == 1
    # a reply alone brings its interaction in: E's at 310 (queued at 230, 80 s)
    (late,) = queues(desk, since=at(310), until=at(311), queue=SUPPORT)["queues"]
    assert late["first_reply_time"] == stats(1, 80.0, 80.0, 80.0, 80.0)
    assert late["answered"] == 0
    # nothing yet in an empty range
    (empty,) = queues(desk, since=at(-100), until=at(-50), queue=SUPPORT)["queues"]
    assert empty["offered"] == 0 and empty["service_level"]["value"] is None


def test_csv(desk: Desk) -> None:
    play(desk)
    answer = desk.client.get("/api/reports/queues", params={
        "since": at(0), "until": at(400)}, headers={"Accept": "text/csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    support = next(line for line in lines if line["queue"] == SUPPORT)
    assert (support["since"], support["until"]) == (at(0), at(400))
    assert (support["offered"], support["offers_missed"], support["wait_time_p90"],
            support["service_level_value"]) == ("6", "1", "75.0", "0.6")
    assert next(line for line in lines if line["queue"] == "dave")[
        "first_reply_time_mean"] == ""  # none: an empty cell
    agents = desk.client.get("/api/reports/agents", params={
        "since": at(0), "until": at(400)}, headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(agents.text)))
    assert [(r["agent"], r["answered"], r["handle_time_mean"]) for r in rows] == [
        ("alice", "1", "88.0"), ("bob", "3", "10.0"), ("carol", "0", ""),
        ("dave", "1", "10.0")]


def test_an_agent_reads_its_own_figures_only(desk: Desk) -> None:
    play(desk)
    span = {"since": at(0), "until": at(400)}
    mine = ok(desk.client.get("/api/reports/agents", params=span,
                              headers=desk.as_("alice")))
    assert mine["agents"] == [AGENTS_DAY[0]]
    assert ok(desk.client.get("/api/reports/agents", params={**span, "agent": "ALICE"},
                              headers=desk.as_("alice")))["agents"] == [AGENTS_DAY[0]]
    other = desk.client.get("/api/reports/agents", params={**span, "agent": "bob"},
                            headers=desk.as_("alice"))
    assert other.status_code == 403 and other.json()["error"] == "not_yours"
    assert desk.client.get("/api/reports/queues", headers=desk.as_("alice")
                           ).status_code == 403
    # a supervisor picks any agent
    assert ok(desk.client.get("/api/reports/agents", params={**span, "agent": "bob"})
              )["agents"] == [AGENTS_DAY[1]]


@pytest.mark.parametrize(("params", "status", "named"), [
    ({"since": "yesterday"}, 400, "since"),
    ({"until": "2027-13-01"}, 400, "until"),
    ({"since": "2027-01-15T09:00:00Z", "until": "2027-01-15T09:00:00Z"}, 400, "since"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, 400, "until"),
    ({"queue": ""}, 400, "queue"),
    ({"queue": "x" * 201}, 400, "queue"),
    ({"queue": "nowhere"}, 404, "queue"),
    ({"queues": "support"}, 400, "queues"),
])
def test_bad_parameters_are_refused_naming_the_field(
        desk: Desk, params: dict[str, str], status: int, named: str) -> None:
    answer = desk.client.get("/api/reports/queues", params=params)
    assert answer.status_code == status, answer.text
    assert named in answer.json()["message"]


def test_bad_agent_parameters(desk: Desk) -> None:
    missing = desk.client.get("/api/reports/agents", params={"agent": "nobody"})
    assert missing.status_code == 404 and "agent" in missing.json()["message"]
    assert desk.client.get("/api/reports/agents", params={"queue": SUPPORT}
                           ).status_code == 400


def metrics(desk: Desk) -> list[str]:
    text = desk.client.get("/metrics").text
    return [line for line in text.splitlines() if line.startswith("smshost_queue_")]


def test_metrics_per_queue(desk: Desk) -> None:
    first = metrics(desk)  # the counters start here, at 0
    assert 'smshost_queue_offered_total{queue="support"} 0.0' in first
    play(desk)
    to(desk, 350)
    desk.text("+14085550007", "g")  # bob is full (E, F), alice away: G waits
    to(desk, 380)
    lines = metrics(desk)  # G has waited 30 s
    for line in ('smshost_queue_waiting{queue="support"} 1.0',
                 'smshost_queue_longest_wait_seconds{queue="support"} 30.0',
                 'smshost_queue_waiting{queue="dave"} 0.0',
                 'smshost_queue_agents{queue="support",status="available"} 1.0',
                 'smshost_queue_agents{queue="support",status="away"} 1.0',
                 'smshost_queue_agents{queue="support",status="offline"} 1.0',
                 'smshost_queue_service_level{queue="support"} 0.6',
                 'smshost_queue_service_level{queue="dave"} 1.0',
                 'smshost_queue_offered_total{queue="support"} 6.0',
                 'smshost_queue_answered_total{queue="support"} 4.0',
                 'smshost_queue_answered_total{queue="dave"} 1.0',
                 'smshost_queue_abandoned_total{queue="support"} 2.0',
                 'smshost_queue_abandoned_total{queue="dave"} 0.0'):
        assert line in lines, (line, lines)
    to(desk, 4000)  # an hour after the last answer: no service level (none in the hour)
    assert not [line for line in metrics(desk) if "service_level" in line and "{" in line]


def test_a_caller_that_is_no_agent_has_no_figures_of_its_own(desk: Desk) -> None:
    made = desk.client.post("/api/tokens", json={"integration": "crm", "scopes": ["read"]})
    assert made.status_code == 201, made.text
    crm = {"Authorization": f"Bearer {made.json()['token']}"}
    answer = desk.client.get("/api/reports/agents", headers=crm)
    assert answer.status_code == 404 and answer.json()["error"] == "not_an_agent"
    assert desk.client.get("/api/reports/agents", headers=crm,
                           params={"agent": "alice"}).status_code == 403
    assert desk.client.get("/api/reports/queues", headers=crm).status_code == 403


def test_a_range_with_too_many_interactions_is_refused(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    play(desk)
    package = type(desk.sink).__module__.rpartition(".")[0]  # as the loader named it
    monkeypatch.setattr(sys.modules[f"{package}.reports"], "MAX_INTERACTIONS", 5)
    answer = desk.client.get("/api/reports/queues", params={"since": at(0),
                                                            "until": at(400)})
    assert answer.status_code == 422 and answer.json()["error"] == "range_too_large"
    assert "since" in answer.json()["message"]
    assert queues(desk, since=at(0), until=at(100))["queues"]  # a shorter one is answered
