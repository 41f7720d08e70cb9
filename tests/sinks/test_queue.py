"""The queue sink: SMS routed to user and workgroup queues wait as interactions, listed
by the API in arrival order with positions and ages; bad queue names and settings are
reported at load; finished interactions are purged, waiting ones kept (SPEC S1, P2, P5).

SMS come in through the simulator broker (``POST /api/simulator/mo``) and are routed by
the real router; every wait is bounded by ``WAIT``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from host.models import to_timestamp
from tests.conftest import ROOT, base_config, run_cli

PLUGIN = ROOT / "plugins" / "sinks" / "queue"
WAIT = 10.0  # seconds: every wait on routing is bounded by this
AUTH = {"Authorization": "Bearer test-token"}
OUR_NUMBER = "+15550100"

SIMULATOR = """
[[brokers]]
name = "simulator"
definition = "simulator"
encryption = "http"

[[brokers.accounts]]
id = "default"
local_address = "+15550100"
"""

QUEUES = """
[[queue.queues]]
name = "support"
kind = "workgroup"
members = ["alice", "bob"]

[[queue.queues]]
name = "carol"
kind = "user"
"""

ROUTES = r"""
[[inbound]]
name = "vip"
type = "ani"
pattern = '\+1415555\d{4}'
destination = "queue"
target = "carol"

[[inbound]]
name = "default"
destination = "queue"
target = "support"
default = true
"""


@pytest.fixture
def queue_host(tmp_path: Path, config_dir: Callable[..., Path]) -> Callable[..., Host]:
    """``queue_host(sinks=..., routes=...)``: a host whose plugin folder holds copies of
    the shipped queue sink and simulator broker (other shipped plugins stay out)."""
    def make(sinks: str = QUEUES, routes: str = ROUTES, brokers: str = SIMULATOR) -> Host:
        plugins = tmp_path / "plugins"
        for kind in ("sinks", "brokers"):
            (plugins / kind).mkdir(parents=True, exist_ok=True)
        shutil.copytree(PLUGIN, plugins / "sinks" / "queue", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "plugins" / "brokers" / "simulator.xml",
                    plugins / "brokers" / "simulator.xml")
        smshost = base_config(tmp_path, extra="\n[purge]\nenabled = false\n")
        cfg = config_dir(smshost=smshost, brokers=brokers, routes=routes, sinks=sinks)
        return Host(load_settings(cfg), config_dir=cfg)
    return make


@contextmanager
def serving(host: Host) -> Iterator[TestClient]:
    with TestClient(host.app_for(), headers=AUTH) as client:
        yield client


def text(client: TestClient, sender: str, body: str) -> int:
    """A phone texts our number through the simulator broker; the stored message id."""
    answer = client.post("/api/simulator/mo", json={"from": sender, "text": body})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def routed(client: TestClient, host: Host) -> None:
    assert client.portal is not None
    assert client.portal.call(host.router.idle, WAIT), "routing did not finish in time"


def call(client: TestClient, fn: Callable[..., Any], *args: Any) -> Any:
    assert client.portal is not None
    return client.portal.call(fn, *args)


def failures(host: Host) -> list[str]:
    host.load_plugins()
    return [f"{r.kind}: {r.error}" for r in host.plugins.failures]


# -- routing into queues ------------------------------------------------------------------

def test_routed_sms_wait_in_arrival_order_with_positions_and_ages(
        queue_host: Callable[..., Host]) -> None:
    host = queue_host()
    assert failures(host) == []
    senders = ["+14085550001", "+14085550002", "+14085550003"]
    with serving(host) as client:
        # Sent back to back: three senders are three routing lanes, routed side by side.
        ids = [text(client, sender, f"question {i}") for i, sender in enumerate(senders)]
        vip = text(client, "+14155550123", "it is Dave")
        routed(client, host)
        before = datetime.now(UTC)
        support = client.get("/api/queues/support").json()
        after = datetime.now(UTC)
        carol = client.get("/api/queues/carol").json()
        overview = client.get("/api/queues").json()
        event = client.get(f"/api/messages/{ids[0]}").json()["events"][-1]

    waiting = support["interactions"]
    assert support["name"] == "support" and support["waiting"] == 3
    assert (support["kind"], support["members"]) == ("workgroup", ["alice", "bob"])
    assert [i["position"] for i in waiting] == [1, 2, 3]
    assert [i["message_id"] for i in waiting] == ids
    assert [(i["from"], i["to"], i["body"]) for i in waiting] == [
        (sender, OUR_NUMBER, f"question {n}") for n, sender in enumerate(senders)]
    assert all(i["state"] == "waiting" and i["queue"] == "support" for i in waiting)
    assert all(i["broker"] == "simulator" and i["account"] == "default" for i in waiting)
    ages = [i["age"] for i in waiting]
    assert ages == sorted(ages, reverse=True) and ages[-1] >= 0  # the first waited longest
    for interaction in waiting:  # age: seconds since the SMS arrived, as of the request
        queued = datetime.fromisoformat(interaction["queued_at"].replace("Z", "+00:00"))
        low, high = (before - queued).total_seconds(), (after - queued).total_seconds()
        assert low - 0.001 <= interaction["age"] <= high + 0.001

    (dave,) = carol["interactions"]
    assert (carol["kind"], carol["members"], carol["waiting"]) == ("user", ["carol"], 1)
    assert (dave["position"], dave["message_id"], dave["from"]) == (1, vip, "+14155550123")

    by_name = {q["name"]: q for q in overview["queues"]}
    assert list(by_name) == ["support", "carol"]  # as declared in sinks.toml
    assert by_name["support"]["waiting"] == 3 and by_name["carol"]["waiting"] == 1
    assert by_name["support"]["oldest_queued_at"] == waiting[0]["queued_at"]
    assert by_name["support"]["oldest_wait"] >= ages[0]
    assert by_name["support"]["members"] == ["alice", "bob"]

    assert event["status"] == "routed"
    assert event["detail"]["route"] == "default"
    assert event["detail"]["queue"] == "support"
    assert event["detail"]["interaction"] == waiting[0]["id"]


def test_an_empty_queue_and_the_limit(queue_host: Callable[..., Host]) -> None:
    host = queue_host()
    with serving(host) as client:
        empty = client.get("/api/queues").json()["queues"]
        for n in range(3):
            text(client, f"+1408555000{n}", f"hello {n}")
        routed(client, host)
        first_two = client.get("/api/queues/support", params={"limit": 2}).json()
        bad = [client.get("/api/queues/support", params=p) for p in
               ({"limit": "0"}, {"limit": "x"}, {"limit": "501"}, {"color": "red"},
                {"limit": "\u00b2"})]
    assert [(q["waiting"], q["oldest_wait"], q["oldest_queued_at"]) for q in empty] == [
        (0, None, None), (0, None, None)]
    assert first_two["waiting"] == 3
    assert [i["position"] for i in first_two["interactions"]] == [1, 2]
    assert [r.status_code for r in bad] == [400] * 5
    assert {r.json()["error"] for r in bad} == {"bad_parameter"}


def test_routing_a_message_again_finds_its_interaction(queue_host: Callable[..., Host]) -> None:
    """A crash between the interaction's commit and the routing record routes the message
    again at the next start: it must not wait twice."""
    host = queue_host()
    with serving(host) as client:
        message_id = text(client, "+14085550001", "once")
        routed(client, host)
        message = call(client, host.messages.get, message_id)
        route = host.router.routes[-1]
        again = call(client, host.sinks["queue"].deliver, message, route)
        support = client.get("/api/queues/support").json()
    (interaction,) = support["interactions"]
    assert again.outcome == "delivered"
    assert again.data == {"queue": "support", "interaction": interaction["id"]}


def test_queue_order_is_arrival_order_not_routing_order(
        queue_host: Callable[..., Host]) -> None:
    """Lanes of different senders are routed side by side, so a later SMS can be
    delivered first; it still waits behind the one that arrived before it."""
    host = queue_host(routes=ROUTES + "\n[routing]\nenabled = false\n")
    with serving(host) as client:
        ids = [text(client, f"+1408555000{n}", f"sms {n}") for n in range(3)]
        sink, route = host.sinks["queue"], host.router.routes[-1]
        for message_id in reversed(ids):
            message = call(client, host.messages.get, message_id)
            assert call(client, sink.deliver, message, route).outcome == "delivered"
        waiting = client.get("/api/queues/support").json()["interactions"]
    assert [(i["position"], i["message_id"]) for i in waiting] == [
        (1, ids[0]), (2, ids[1]), (3, ids[2])]
    assert waiting[0]["id"] > waiting[2]["id"]  # delivered last, first in line


def test_waiting_interactions_survive_a_restart(queue_host: Callable[..., Host]) -> None:
    host = queue_host()
    with serving(host) as client:
        first = text(client, "+14085550001", "before the restart")
        routed(client, host)
    again = Host(host.settings, config_dir=host.config_dir)
    with serving(again) as client:
        second = text(client, "+14085550002", "after the restart")
        routed(client, again)
        waiting = client.get("/api/queues/support").json()["interactions"]
    assert [(i["position"], i["message_id"]) for i in waiting] == [(1, first), (2, second)]


# -- the API's edges ----------------------------------------------------------------------

def test_unknown_queue_is_404(queue_host: Callable[..., Host]) -> None:
    with serving(queue_host()) as client:
        answer = client.get("/api/queues/nope")
        slash = client.get("/api/queues/support/extra")
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "message": "no queue named 'nope'"}
    assert slash.status_code == 404


@pytest.mark.parametrize("path", ["/api/queues", "/api/queues/support"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_queue_api_needs_the_token(queue_host: Callable[..., Host], path: str,
                                   headers: dict[str, str]) -> None:
    with TestClient(queue_host().app_for()) as client:
        answer = client.get(path, headers=headers)
        allowed = client.get(path, headers=AUTH)
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    assert allowed.status_code == 200


# -- configuration problems ---------------------------------------------------------------

def test_unknown_or_missing_queue_target_is_reported(queue_host: Callable[..., Host]) -> None:
    routes = ROUTES.replace('target = "carol"', 'target = "nope"').replace(
        'target = "support"', 'target = ""')
    host = queue_host(routes=routes)
    problems = failures(host)
    cfg = host.config_dir
    assert cfg is not None
    assert problems == [
        f"route: {cfg / 'routes.toml'}:2: inbound[0].target: no queue named 'nope'; "
        "queues: carol, support",
        f"route: {cfg / 'routes.toml'}:9: inbound[1].target: a queue route needs a target: "
        "the queue name; queues: carol, support",
    ]
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 1, result.stdout
    assert "inbound[0].target: no queue named 'nope'" in result.stdout


def test_a_valid_configuration_checks_clean(queue_host: Callable[..., Host]) -> None:
    host = queue_host()
    assert host.config_dir is not None
    result = run_cli("check", "--config", str(host.config_dir))
    assert result.returncode == 0, result.stdout
    assert "ok: sink queue" in result.stdout


@pytest.mark.parametrize(("sinks", "expected"), [
    ('[[queue.queues]]\nname = "support"\nkind = "workgroup"\n',
     ":1: queue.queues[0].members: workgroup queue 'support' needs at least one member"),
    ('[[queue.queues]]\nname = "dan"\nkind = "user"\nmembers = ["dan", "eve"]\n',
     ":4: queue.queues[0].members: user queue 'dan' belongs to one user; got 2"),
    ('[[queue.queues]]\nname = "a"\nmembers = ["x", "x"]\n',
     ":3: queue.queues[0].members[1]: member 'x' is listed twice"),
    ('[[queue.queues]]\nname = "a"\nmembers = ["x"]\n[[queue.queues]]\nname = "a"\n'
     'members = ["y"]\n', ":5: queue.queues[1].name: queue name 'a' is used twice"),
    ('[[queue.queues]]\nname = "a/b"\nmembers = ["x"]\n',
     ":2: queue.queues[0].name: must be a non-empty name without '/'"),
    ('[[queue.queues]]\nname = "a"\nkind = "team"\nmembers = ["x"]\n',
     ":3: queue.queues[0].kind: must be one of 'user', 'workgroup'; got 'team'"),
    ('[[queue.queues]]\nname = "a"\nmember = ["x"]\n',
     ":3: queue.queues[0].member: unknown key 'member'; did you mean 'members'?"),
])
def test_settings_problems_name_file_line_and_key(queue_host: Callable[..., Host],
                                                  sinks: str, expected: str) -> None:
    host = queue_host(sinks=sinks, routes="[routing]\nenabled = false\n")
    problems = failures(host)
    assert all(p.startswith(f"sink settings: {host.config_dir / 'sinks.toml'}:")
               for p in problems), problems
    assert any(expected in p for p in problems), problems
    assert "queue" not in host.sinks


def test_queue_accounts_must_be_configured(queue_host: Callable[..., Host]) -> None:
    good = QUEUES + 'account = "default"\n'
    assert failures(queue_host(sinks=good)) == []
    bad = QUEUES + 'broker = "simulator"\naccount = "sales"\n'
    host = queue_host(sinks=bad)
    problem, *routes = failures(host)
    assert problem == (f"sink settings: sink queue: ValueError: {host.config_dir / 'sinks.toml'}"
                       ":11: queue.queues[1].account: no configured broker account 'sales' "
                       "in broker 'simulator'")
    assert len(routes) == 2 and all("no queue sink is available" in r for r in routes)


def test_queue_api_says_when_the_sink_did_not_load(queue_host: Callable[..., Host]) -> None:
    host = queue_host(sinks='[[queue.queues]]\nname = "support"\n',
                      routes="[routing]\nenabled = false\n")
    with serving(host) as client:
        answers = [client.get("/api/queues"), client.get("/api/queues/support")]
    assert [a.status_code for a in answers] == [503, 503]
    assert answers[0].json() == {"error": "unavailable", "message": "the queue sink did not "
                                 "load; run `smshost check`"}


# -- purge --------------------------------------------------------------------------------

def test_purge_takes_finished_interactions_and_keeps_waiting_ones(
        queue_host: Callable[..., Host]) -> None:
    host = queue_host()
    later = to_timestamp(datetime.now(UTC) + timedelta(days=1))  # everything is older
    with serving(host) as client:
        done, kept = (text(client, f"+1408555000{n}", f"sms {n}") for n in range(2))
        routed(client, host)
        waiting = client.get("/api/queues/support").json()["interactions"]
        sink = host.sinks["queue"]
        assert call(client, lambda: sink.disconnect(waiting[0]["id"], reason="test"))
        assert not call(client, lambda: sink.disconnect(waiting[0]["id"], reason="test"))
        counted = call(client, host.hooks.purge, host, later, 100, True).results
        purged = call(client, host.hooks.purge, host, later, 100, False).results
        left = client.get("/api/queues/support").json()
        rows = call(client, host.store.read, lambda db: (
            [r["id"] for r in db.query("select id from queue_interactions")],
            db.execute("select count(*) from queue_events").fetchone()[0]))
    ours = [r for r in counted + purged if "queue_interactions" in r]
    assert [(r["queue_interactions"], r["queue_events"], r["queue_messages"])
            for r in ours] == [(1, 2, 1), (1, 2, 1)]
    # The waiting one stays, and so does its SMS (the finished one's went).
    assert [(i["id"], i["message_id"], i["body"]) for i in left["interactions"]] == [
        (waiting[1]["id"], waiting[1]["message_id"], "sms 1")]
    assert rows == ([waiting[1]["id"]], 1)
    assert (done, kept) == (waiting[0]["message_id"], waiting[1]["message_id"])


def test_the_queue_sink_is_shipped(tmp_path: Path, config_dir: Callable[..., Path]) -> None:
    smshost = base_config(tmp_path).replace("shipped = false", "shipped = true")
    cfg = config_dir(smshost=smshost, sinks=QUEUES, brokers=SIMULATOR, routes=ROUTES)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    (record,) = [r for r in host.plugins.records if r.kind == "sink" and r.name == "queue"]
    assert record.ok and record.source == str(PLUGIN)
    assert type(host.sinks["queue"]).__name__ == "QueueSink"
    assert not [r for r in host.plugins.failures if "queue" in (r.error or "")]
