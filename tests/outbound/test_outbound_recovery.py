"""kill -9 with sends in flight (SPEC O6, P5): a real ``python -m host serve`` process,
a fake broker on 127.0.0.1 that accepts (answers with an id) but holds its answers.

After a restart every message ends sent and nothing is lost; a message the broker had
accepted before the kill (we recorded its id) is never sent again; the ones in flight at
the kill are sent at most once more and flagged ``possibly_duplicated``; a message that
was only queued is sent once, unflagged. The fake broker counts requests by our
reference (the message id) to prove it."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.brokers.kannel_harness import SmshostServer
from tests.conftest import ROOT
from tests.outbound.conftest import (
    LOOPBACK,
    PHONE,
    TOKEN,
    FakeBroker,
    Reply,
    Seen,
    free_port,
    generic_ok,
    generic_toml,
    outbox_toml,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow


class Broker:
    """Answers at once, except texts starting with "inflight" while ``holding``."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.holding.set()
        self.never = threading.Event()  # held answers wait for this (set at stop only)
        self.fake = FakeBroker(self.respond)

    def respond(self, seen: Seen, n: int) -> Reply:
        reply = generic_ok(seen, n)
        if self.holding.is_set() and (seen.text or "").startswith("inflight"):
            reply.hold = self.never
        return reply


@pytest.fixture
def broker() -> Iterator[Broker]:
    found = Broker()
    with found.fake:
        yield found


class Node:
    """smshost serve as a subprocess on a fixed port, restartable, killable."""

    def __init__(self, root: Path, gateway: str) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.cfg = write_config(root, self.port, brokers=generic_toml(gateway),
                                outbox=outbox_toml(max_in_flight=3), shutdown_timeout=1.0)
        self.api = httpx2.Client(base_url=self.base, trust_env=False, timeout=10.0,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        self.server: SmshostServer | None = None
        self.outputs: list[str] = []

    def start(self) -> None:
        self.server = SmshostServer(self.root, self.cfg, ROOT)
        self.server.wait_healthy(f"{self.base}/health")

    def kill(self) -> None:
        assert self.server is not None
        os.kill(self.server.proc.pid, signal.SIGKILL)
        self.server.proc.wait(timeout=10)
        self.outputs.append(self.server.output)
        self.server = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.outputs.append(self.server.output)
            self.server = None
        self.api.close()

    def send(self, text: str) -> int:
        answer = self.api.post("/api/messages", json={"to": PHONE, "text": text})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    def message(self, message_id: int) -> dict[str, Any]:
        return self.api.get(f"/api/messages/{message_id}").json()  # type: ignore[no-any-return]

    def wait_status(self, message_id: int, status: str) -> dict[str, Any]:
        return wait_until(lambda: (m := self.message(message_id))["status"] == status and m,
                          what=f"message {message_id} to become {status}",
                          explain=lambda: f"{self.message(message_id)}\n{self.log()}")

    def log(self) -> str:
        current = self.server.output if self.server is not None else ""
        return "\n".join(self.outputs + [current])[-4000:]

    def db(self, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.root / "data" / "smshost.db", timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()


@pytest.fixture
def node(tmp_path: Path, broker: Broker) -> Iterator[Node]:
    found = Node(tmp_path, broker.fake.url)
    try:
        yield found
    finally:
        found.stop()


def test_kill_9_with_sends_in_flight_loses_nothing_and_resends_at_most_once(
        node: Node, broker: Broker) -> None:
    fake = broker.fake
    node.start()
    accepted = node.send("accepted before the kill")
    node.wait_status(accepted, "sent")
    in_flight = [node.send(f"inflight {n}") for n in (1, 2, 3)]  # max_in_flight = 3
    behind = node.send("queued behind them")
    fake.wait_requests(4)
    wait_until(lambda: node.db("select in_flight from outbox where message_id = ?",
                               [behind]) == [(0,)], what="the fourth to wait in the outbox")
    node.kill()  # three requests are open at the broker

    rows = dict(node.db("select id, status from messages", []))
    assert rows == {accepted: "sent", **{i: "sending" for i in in_flight}, behind: "queued"}
    assert sorted(node.db("select message_id, in_flight, attempts from outbox", [])) == [
        *[(i, 1, 1) for i in in_flight], (behind, 0, 0)]

    broker.holding.clear()  # the broker answers at once from now on
    node.start()
    finals = {i: node.wait_status(i, "sent") for i in [accepted, *in_flight, behind]}

    counts = fake.refs()
    assert counts[str(accepted)] == 1  # accepted before the kill: never sent again
    assert all(counts[str(i)] == 2 for i in in_flight)  # at most once more
    assert counts[str(behind)] == 1
    assert sum(counts.values()) == 1 + 2 * 3 + 1
    flagged = {i: m["attrs"].get("possibly_duplicated") for i, m in finals.items()}
    assert flagged == {accepted: None, **{i: True for i in in_flight}, behind: None}
    for i in in_flight:
        assert [(e["status"], e["source"]) for e in finals[i]["events"]] == [
            ("queued", "api"), ("sent", "sender")]
        assert finals[i]["broker_message_id"] == f"B-{i}"
    assert node.db("select count(*) from outbox", []) == [(0,)]
    assert "3 send(s) were in flight at the last stop" in node.log()


def test_in_flight_at_two_kills_in_a_row_fails_instead_of_a_third_try(
        node: Node, broker: Broker) -> None:
    fake = broker.fake
    node.start()
    message_id = node.send("inflight, twice")
    fake.wait_requests(1)
    node.kill()
    node.start()  # tried again once, flagged; the broker holds it again
    fake.wait_requests(2)
    node.kill()
    broker.holding.clear()
    node.start()
    failed = node.wait_status(message_id, "failed")
    assert fake.refs() == {str(message_id): 2}
    assert failed["attrs"]["possibly_duplicated"] is True
    assert failed["events"][-1]["detail"] == {
        "error": "in flight at two crashes in a row; not tried again",
        "possibly_duplicated": True}
    assert node.db("select count(*) from outbox", []) == [(0,)]


def test_a_kill_after_an_attempt_that_ended_is_not_a_second_crash_in_a_row(
        node: Node, broker: Broker) -> None:
    """Killed with the send in flight; after the restart that attempt ends (the broker
    answers 503: try later); killed again with the next attempt in flight. Those are
    not two crashes in a row: the message is tried again and sent, not failed (the
    recovery count used to survive the attempt that ended in between)."""
    fake = broker.fake

    def respond(seen: Seen, n: int) -> Reply:
        if n in (1, 3):
            return Reply(200, {"id": f"B-{seen.ref}"}, hold=broker.never)
        if n == 2:
            return Reply(503, {"error": "busy"})
        return generic_ok(seen, n)

    fake.respond = respond
    node.start()
    message_id = node.send("in flight at two kills, with an attempt between")
    fake.wait_requests(1)
    node.kill()
    node.start()  # recovered: tried again (503), then once more (held)
    fake.wait_requests(3)
    node.kill()
    node.start()
    sent = node.wait_status(message_id, "sent")
    assert fake.refs() == {str(message_id): 4}
    assert sent["attrs"]["possibly_duplicated"] is True
    assert node.db("select count(*) from outbox", []) == [(0,)]


def test_a_send_stored_claimed_and_killed_unsettled_is_recovered_once_flagged(
        node: Node, broker: Broker) -> None:
    """A send the API stored claimed (host.outbound: a token and a free slot) is in
    flight, claimed by this node, when the 201 comes back; killed before its outcome
    was written, the next start recovers it like any claim: tried once more, flagged."""
    fake = broker.fake
    node.start()
    message_id = node.send("inflight, stored claimed")
    [(in_flight, attempts, claimed_by)] = node.db(
        "select in_flight, attempts, claimed_by from outbox where message_id = ?",
        [message_id])
    assert (in_flight, attempts) == (1, 1)
    assert node.db("select id from nodes", []) == [(claimed_by,)]
    fake.wait_requests(1)
    node.kill()
    broker.holding.clear()
    node.start()
    sent = node.wait_status(message_id, "sent")
    assert fake.refs() == {str(message_id): 2}
    assert sent["attrs"]["possibly_duplicated"] is True
    assert node.db("select count(*) from outbox", []) == [(0,)]
    assert "1 send(s) were in flight at the last stop" in node.log()
