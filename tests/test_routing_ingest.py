"""Routing at ingest (host.routing.ingest): an MO routed in the write that stores it.

MOs come in over HTTP (the generic broker's webhook, TestClient); the destinations are
the shipped webhook sink (a receiver on 127.0.0.1 in the server's loop) and a test sink
``entering`` whose ``enter`` does what its route's target says. Whether a message took
the one-commit path shows in which of the sink's methods got it (``enter`` or the
router's ``deliver``) and in its routing event, read right after the webhook's answer:
the path is part of the answer's write, so nothing here waits for the router to know.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.conftest import MEMORY_SINK, free_port
from tests.sinks.test_webhook import SECRET, SECRET_ENV, Receiver, sinks_toml

ENTERING_SINK = '''
from host import hookimpl
from host.sinks.base import Delivery, Sink

LOG = []  # (hook, message id, status), in the order the hooks ran


class EnteringSink(Sink):
    """Takes entries at ingest by target: ok (delivered), none (None), fail (a failed
    delivery), raise (writes, then raises), bad-sql (a statement the database refuses),
    hold (None at ingest; deliver() waits for ``gate``)."""

    kind = "entering"

    def __init__(self, host, settings):
        super().__init__(host, settings)
        self.entered_ids, self.woken, self.delivered = [], [], []
        self.gate = None

    def enter(self, db, message, route):
        self.entered_ids.append(message.id)
        target = route.target
        if target in ("none", "hold"):
            return None
        if target == "fail":
            return Delivery.failed("entering: fail")
        if target == "raise":
            db.execute("update messages set body = 'changed' where id = ?", [message.id])
            raise RuntimeError("entering: raise")
        if target == "bad-sql":
            db.execute("insert into no_such_table (x) values (1)")
        if target == "full":  # SQLite rolled the whole transaction back itself
            import sqlite3
            db.conn.execute("rollback")
            raise sqlite3.OperationalError("database or disk is full")
        return Delivery.delivered("entered", how="enter")

    def entered(self, delivery):
        self.woken.append(delivery.data)

    async def deliver(self, message, route):
        self.delivered.append(message.id)
        if route.target == "hold" and self.gate is not None:
            await self.gate.wait()
        if route.target == "fail":
            return Delivery.failed("entering: fail")
        return Delivery.delivered("delivered", how="deliver")


@hookimpl
def register_sinks(register):
    register(EnteringSink)


@hookimpl
def message_stored(host, message):
    LOG.append(("stored", message.id, message.status))


@hookimpl
def message_status_changed(host, message, old, new, event):
    LOG.append(("status", message.id, new))


@hookimpl
def message_routed(host, message, route, outcome, detail):
    LOG.append(("routed", message.id, outcome))
'''

# target by the body's first word; "mem" goes to the memory sink (no enter), "hook" to
# the webhook sink; the default to entering/ok
ROUTES = "".join(textwrap.dedent(f"""
    [[inbound]]
    name = "{name}"
    destination = "{destination}"
    target = "{target}"
    pattern = "{name}( .*)?"
    """) for name, destination, target in (
        ("none", "entering", "none"), ("fail", "entering", "fail"),
        ("raise", "entering", "raise"), ("bad-sql", "entering", "bad-sql"),
        ("hold", "entering", "hold"), ("full", "entering", "full"), ("mem", "memory", "m"),
        ("hook", "webhook", "app"), ("nohook", "webhook", "missing"),
        ("chat", "chat", ""), ("queue", "queue", "support"),
        ("noqueue", "queue", "nobody"))) + textwrap.dedent("""
    [[inbound]]
    name = "default"
    destination = "entering"
    target = "ok"
    default = true
    """)
BROKERS = """
[[brokers]]
name = "gen"
definition = "generic"

[[brokers.accounts]]
id = "main"
local_address = "+15550100"
"""
QUEUES = """
[[queue.queues]]
name = "support"
kind = "workgroup"
members = ["alice"]
"""
AUTH = {"Authorization": "Bearer test-token"}
WAIT = 15.0


@pytest.fixture
def make_host(tmp_path: Path, plugins_dir: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Callable[..., Host]:
    """``make_host(routing="")``: the generic broker, the shipped sinks (webhook to a
    receiver started by :func:`serve`), the ``entering`` and ``memory`` test sinks."""
    from tests.brokers.conftest import broker_config

    monkeypatch.setenv(SECRET_ENV, SECRET)
    (plugins_dir / "sinks" / "entering.py").write_text(ENTERING_SINK, encoding="utf-8")
    (plugins_dir / "sinks" / "memory.py").write_text(MEMORY_SINK, encoding="utf-8")

    def make(routing: str = "", webhook_url: str = "http://127.0.0.1:9/app") -> Host:
        cfg = broker_config(tmp_path, BROKERS)
        (cfg / "routes.toml").write_text(ROUTES + routing)
        (cfg / "sinks.toml").write_text(sinks_toml({"app": webhook_url}) + QUEUES)
        text = (cfg / "smshost.toml").read_text()
        (cfg / "smshost.toml").write_text(text.replace("dirs = []", f'dirs = ["{plugins_dir}"]'))
        return Host(load_settings(cfg), config_dir=cfg)
    return make


@pytest.fixture
def host(make_host: Callable[..., Host]) -> Host:
    return make_host()


@pytest.fixture
def client(host: Host) -> Iterator[TestClient]:
    with TestClient(host.app_for()) as c:
        log(host).clear()
        yield c


def log(host: Host) -> list[tuple[str, int, str]]:
    """The test sink's module's LOG (its hooks' calls)."""
    found: list[tuple[str, int, str]] = sys.modules[type(sink(host)).__module__].LOG
    return found


def sink(host: Host) -> Any:
    return host.sinks["entering"]


def post(client: TestClient, body: str, msg_id: str, remote: str = "+12125550123") -> None:
    answer = client.post("/generic/mo", json={"id": msg_id, "from": remote,
                                              "to": "+15550100", "text": body})
    assert answer.status_code == 200, answer.text


def message(client: TestClient, message_id: int) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/api/messages/{message_id}", headers=AUTH).json()
    return found


def routed_event(found: dict[str, Any]) -> dict[str, Any]:
    (event,) = [e for e in found["events"] if e["status"] == "routed"]
    detail: dict[str, Any] = event["detail"]
    return detail


def idle(client: TestClient, host: Host) -> None:
    assert client.portal.call(host.router.idle)  # type: ignore[union-attr]


# -- the one-commit path -------------------------------------------------------------

def test_an_mo_is_routed_in_the_write_that_stores_it(host: Host, client: TestClient) -> None:
    post(client, "hello", "a1")
    found = message(client, 1)  # read right after the 200: no wait for the router
    assert found["status"] == "routed" and found["route"] == "default"
    assert routed_event(found) == {"route": "default", "destination": "entering",
                                   "target": "ok", "detail": "entered", "how": "enter"}
    assert [e["status"] for e in found["events"]] == ["received", "routed"]
    assert sink(host).entered_ids == [1] and sink(host).delivered == []
    assert sink(host).woken == [{"how": "enter"}]
    # announced in order: stored, its status, routed, the routing (and never twice)
    assert log(host) == [("stored", 1, "received"), ("status", 1, "received"),
                         ("status", 1, "routed"), ("routed", 1, "routed")]
    lanes = client.portal.call(host.store.read,  # type: ignore[union-attr]
                               lambda db: list(db.query("select * from lanes")))
    assert lanes == []  # released in the same write
    idle(client, host)
    assert sink(host).delivered == [] and len(log(host)) == 4


def test_the_webhook_sink_takes_the_delivery_in_the_same_write(
        make_host: Callable[..., Host]) -> None:
    port = free_port()
    receiver = Receiver(port)
    host = make_host(webhook_url=f"http://127.0.0.1:{port}/app")
    with TestClient(host.app_for()) as client:
        portal = client.portal
        assert portal is not None
        portal.call(receiver.__aenter__)
        try:
            post(client, "hook hello", "w1")
            rows = portal.call(host.store.read, lambda db: list(db.query(
                "select message_id, route, target, status from webhook_deliveries")))
            assert rows[0]["message_id"] == 1 and rows[0]["route"] == "hook"
            assert rows[0]["target"] == "app"  # committed with the message
            found = message(client, 1)
            assert found["status"] == "routed" and found["route"] == "hook"
            detail = routed_event(found)
            assert detail["destination"] == "webhook" and detail["delivery_id"] == 1
            deadline = time.monotonic() + WAIT
            while not receiver.on("/app") and time.monotonic() < deadline:
                time.sleep(0.02)
            (hit,) = receiver.on("/app")
            assert hit.json["message"]["id"] == 1 and hit.json["message"]["body"] == "hook hello"
            assert hit.json["delivery_id"] == 1
        finally:
            portal.call(receiver.__aexit__)


# -- the fallbacks: today's path, the MO stored and answered 200 --------------------

@pytest.mark.parametrize(("body", "route", "entered"), [
    ("none x", "none", True),  # enter() returns None
    ("bad-sql x", "bad-sql", True),  # a statement the database refuses: rolled back
    ("mem x", "mem", False),  # a sink without enter()
    ("fail x", "default", True),  # a failed entry: the router's fallback to the default
    ("nohook x", "default", False),  # the webhook sink, an unknown target (None)
])
def test_what_cannot_be_entered_is_routed_by_the_router(
        host: Host, client: TestClient, body: str, route: str, entered: bool) -> None:
    post(client, body, "f1")
    idle(client, host)
    found = message(client, 1)
    assert found["status"] == "routed" and found["route"] == route
    assert found["body"] == body
    assert sink(host).woken == []
    assert (sink(host).entered_ids == [1]) is entered
    if route == "mem":
        assert [g[0] for g in host.sinks["memory"].got] == ["m"]  # type: ignore[attr-defined]
    else:
        assert sink(host).delivered[-1] == 1 and routed_event(found)["how"] == "deliver"
    if route == "default":
        assert routed_event(found)["failures"][0]["route"] == body.split()[0]
    # the router announced it: stored first, routed last, once each
    assert [entry[0] for entry in log(host)] == ["stored", "status", "status", "routed"]


def test_an_entry_that_raises_is_rolled_back_and_logged(
        host: Host, client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    post(client, "raise x", "r1")
    idle(client, host)
    found = message(client, 1)
    assert found["body"] == "raise x"  # the sink's update rolled back with its savepoint
    assert found["status"] == "routed" and routed_event(found)["how"] == "deliver"
    assert sink(host).entered_ids == [1] and sink(host).delivered == [1]
    assert "routing message 1 at ingest to entering failed" in caplog.text


def test_a_lane_held_by_another_node_leaves_the_mo_to_that_node(
        host: Host, client: TestClient) -> None:
    portal = client.portal
    assert portal is not None
    portal.call(host.store.write, lambda db: db.execute(
        "insert into lanes (local, remote, owner, expires_at) values (?, ?, ?, ?)",
        ["+15550100", "+12125550123", "other-node", time.time() + 3600]))
    post(client, "hello", "l1")
    idle(client, host)
    assert message(client, 1)["status"] == "received"  # that node's to route
    assert sink(host).entered_ids == [] and sink(host).delivered == []
    portal.call(host.store.write, lambda db: db.execute("delete from lanes"))  # it died
    portal.call(host.router.keeper.sweep)
    idle(client, host)
    assert message(client, 1)["status"] == "routed" and sink(host).delivered == [1]


def test_an_mo_routed_at_ingest_writes_no_lane(host: Host, client: TestClient) -> None:
    """Routed in its own write, an MO needs no lane: none is taken and released (two
    statements an MO saved); an expired lane of a dead node does not stop it, one of
    this node's with nothing left to route is released."""
    portal = client.portal
    assert portal is not None
    sqlite = host.store.dialect == "sqlite"  # the count of lane writes: a SQLite trigger
    if sqlite:
        portal.call(host.store.write, lambda db: db.executescript(
            "create table lane_writes (n integer);"
            "create trigger lane_insert after insert on lanes begin "
            "insert into lane_writes values (1); end;"))
    portal.call(host.store.write, lambda db: db.execute(
        "insert into lanes (local, remote, owner, expires_at) values (?, ?, ?, ?)",
        ["+15550100", "+12125550999", "dead-node", time.time() - 1]))
    portal.call(host.store.write, lambda db: db.execute(
        "insert into lanes (local, remote, owner, expires_at) values (?, ?, ?, ?)",
        ["+15550100", "+12125550888", host.router.leases.owner, time.time() + 3600]))
    post(client, "hello", "n1")
    post(client, "hello", "n2", remote="+12125550999")
    post(client, "hello", "n3", remote="+12125550888")
    assert [message(client, i)["status"] for i in (1, 2, 3)] == ["routed"] * 3
    writes, lanes = portal.call(host.store.read, lambda db: (
        db.execute("select count(*) from lane_writes").fetchone()[0] if sqlite else 2,
        [tuple(r) for r in db.execute("select remote, owner from lanes order by remote")]))
    assert writes == 2  # the two inserted above, none by the three MOs
    assert lanes == [("+12125550999", "dead-node")]  # ours released; the dead one left


def test_an_mo_that_falls_back_takes_its_lane_for_the_router(
        host: Host, client: TestClient) -> None:
    portal = client.portal
    assert portal is not None
    gate = sink(host).gate = asyncio.Event()
    post(client, "hold first", "f1")  # the router holds it in deliver()
    post(client, "hello", "f2")  # waits behind it: not at ingest, its lane taken
    lanes = portal.call(host.store.read, lambda db: [
        tuple(r) for r in db.execute("select remote, owner from lanes")])
    assert lanes == [("+12125550123", host.router.leases.owner)]
    portal.call(gate.set)
    idle(client, host)
    assert [message(client, i)["status"] for i in (1, 2)] == ["routed", "routed"]


def test_a_conversation_with_a_backlog_keeps_its_order(host: Host, client: TestClient) -> None:
    portal = client.portal
    assert portal is not None
    gate = sink(host).gate = asyncio.Event()
    post(client, "hold first", "o1")  # the router holds it in deliver()
    post(client, "hello", "o2")  # an earlier message waits: not at ingest
    post(client, "hello", "o3", remote="+12125550999")  # another conversation: at ingest
    assert message(client, 3)["status"] == "routed"
    assert message(client, 2)["status"] == "received"
    portal.call(gate.set)
    idle(client, host)
    assert sink(host).entered_ids == [1, 3]
    assert sink(host).delivered == [1, 2]  # in the conversation's order
    assert [message(client, i)["status"] for i in (1, 2)] == ["routed", "routed"]
    post(client, "hello", "o4")  # the backlog gone: at ingest again
    assert message(client, 4)["status"] == "routed" and sink(host).entered_ids == [1, 3, 4]


def test_an_opt_out_keyword_takes_the_routers_path(host: Host, client: TestClient) -> None:
    post(client, "STOP", "k1")
    idle(client, host)
    found = message(client, 1)
    assert found["route"] == "optout" and routed_event(found)["target"] == "stop"
    assert sink(host).entered_ids == [] and sink(host).delivered == []


def test_the_setting_off_routes_every_mo_by_the_router(make_host: Callable[..., Host]) -> None:
    host = make_host(routing="\n[routing]\nat_ingest = false\n")
    with TestClient(host.app_for()) as client:
        post(client, "hello", "s1")
        idle(client, host)
        found = message(client, 1)
    assert found["status"] == "routed" and routed_event(found)["how"] == "deliver"
    assert sink(host).entered_ids == [] and sink(host).delivered == [1]


def test_a_broker_retry_is_stored_and_routed_once(host: Host, client: TestClient) -> None:
    post(client, "hello", "d1")
    post(client, "hello", "d1")  # the broker did not hear the first answer
    idle(client, host)
    listed = client.get("/api/messages", headers=AUTH).json()
    assert len(listed["messages"]) == 1
    assert sink(host).entered_ids == [1] and sink(host).woken == [{"how": "enter"}]
    assert sink(host).delivered == []
    assert [entry[0] for entry in log(host)] == ["stored", "status", "status", "routed"]


# -- the chat and queue sinks ---------------------------------------------------------

def test_the_chat_sink_joins_the_conversation_in_the_same_write(
        host: Host, client: TestClient) -> None:
    post(client, "chat hello", "c1")
    found = message(client, 1)  # right after the 200
    assert found["status"] == "routed" and found["route"] == "chat"
    conversation = routed_event(found)["conversation"]
    listed = client.get("/api/conversations", headers=AUTH).json()["conversations"]
    assert [(c["id"], c["state"], c["messages_in"]) for c in listed] == [
        (conversation, "open", 1)]
    post(client, "chat again", "c2")  # joins it, at ingest too
    assert routed_event(message(client, 2))["conversation"] == conversation
    assert routed_event(message(client, 2))["detail"] == f"joined conversation {conversation}"


def test_the_queue_sink_queues_the_interaction_in_the_same_write(
        host: Host, client: TestClient) -> None:
    post(client, "queue help", "q1")
    found = message(client, 1)  # right after the 200
    assert found["status"] == "routed" and found["route"] == "queue"
    detail = routed_event(found)
    assert detail["queue"] == "support" and detail["detail"] == "waiting in queue support"
    rows = client.portal.call(host.store.read, lambda db: list(db.query(  # type: ignore[union-attr]
        "select id, queue, state from queue_interactions")))
    assert rows == [{"id": detail["interaction"], "queue": "support", "state": "waiting"}]
    post(client, "noqueue help", "q2")  # no such queue: the router's fallback
    idle(client, host)
    found = message(client, 2)
    assert found["route"] == "default" and routed_event(found)["how"] == "deliver"


# -- recovery ------------------------------------------------------------------------

def test_a_crash_after_the_commit_leaves_the_entry_to_the_sinks_recovery(
        make_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    first = make_host(webhook_url=f"http://127.0.0.1:{port}/app")
    with TestClient(first.app_for()) as client, monkeypatch.context() as patch:
        # the worker never hears of it, as when the process dies right after the commit
        patch.setattr(type(first.sinks["webhook"]), "entered", lambda self, d: None)
        post(client, "hook after", "x1")
        assert message(client, 1)["status"] == "routed"
    second = make_host(webhook_url=f"http://127.0.0.1:{port}/app")

    async def restart() -> list[Any]:
        async with Receiver(port) as receiver, second.running():
            deadline = time.monotonic() + WAIT
            while not receiver.on("/app") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert await second.router.idle()
            found = await second.messages.get(1)
            assert found is not None and found.status == "routed"
            return receiver.on("/app")

    (hit,) = asyncio.run(restart())  # sent once, at the start; not routed again
    assert hit.json["message"]["id"] == 1 and hit.json["route"]["name"] == "hook"


# -- after the commit ----------------------------------------------------------------

def test_the_sink_hears_of_its_entry_even_when_the_announce_fails(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry is committed: the sink's worker is told first (the webhook sink has no
    periodic scan), whatever the announce after it does (a hook's bug, a cancel)."""
    async def failing(changes: Any) -> None:
        raise RuntimeError("announce failed")

    with TestClient(host.app_for(), raise_server_exceptions=False) as client:
        monkeypatch.setattr(host.ledger, "announce", failing)
        client.post("/generic/mo", json={"id": "e1", "from": "+12125550123",
                                         "to": "+15550100", "text": "hello"})
        monkeypatch.undo()
        assert message(client, 1)["status"] == "routed"
        assert sink(host).woken == [{"how": "enter"}]


def test_the_announces_of_one_conversation_keep_its_order(host: Host) -> None:
    """Two MOs of one conversation routed at ingest: the second's announces (hooks,
    callbacks, its webhook push) wait for the first's, even when the first's is slow."""
    from host.ledger import NewMessage
    announced: list[tuple[int, str]] = []

    with TestClient(host.app_for()) as client:
        real = host.ledger.announce
        gate = asyncio.Event()

        async def slow_first(changes: Any) -> None:
            changes = list(changes)
            announced.extend((c.message.id, c.message.status) for c in changes)
            if changes and changes[0].message.id == 1 and changes[0].created:
                await gate.wait()
            await real(changes)

        async def two() -> None:
            host.ledger.announce = slow_first  # type: ignore[method-assign]
            new = [NewMessage(direction="in", body=f"hello {n}", status="received",
                              broker="gen", account="main", local="+15550100",
                              remote="+12125550123", broker_message_id=f"o{n}")
                   for n in (1, 2)]
            tasks = [asyncio.create_task(host.ledger.add(m, at_ingest=True)) for m in new]
            for _ in range(1000):  # both committed: the second is in its announce
                if len(sink(host).woken) == 2:
                    break
                await asyncio.sleep(0.01)
            for _ in range(100):  # its turn to go on, if it did not wait
                await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(*tasks)
            del host.ledger.announce

        client.portal.call(two)  # type: ignore[union-attr]
    assert [m for m, _ in announced] == [1, 1, 2, 2], announced


def test_a_transaction_the_database_rolled_back_in_the_entry_answers_503(
        host: Host, client: TestClient) -> None:
    """SQLite rolled the whole transaction back itself (a full disk, an I/O error in the
    sink's statements): there is no savepoint to go back to, and the MO's write is
    refused as a whole (503, the broker retries), not a 500."""
    answer = client.post("/generic/mo", json={"id": "full1", "from": "+12125550123",
                                              "to": "+15550100", "text": "full x"})
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert client.get("/api/messages", headers=AUTH).json()["messages"] == []
