"""Sends stored claimed (host.outbound, Sender.reserve/launch) and settled together
(host.brokers.settlements): a send due now whose account has a token and the worker a
free slot is in flight when the API answers, without a claim by the worker; one
without a token waits queued and is claimed later; max_in_flight holds under
concurrent accepts; several settlements written in one write keep each send's own
outcome."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from host.brokers import claims as claims_module
from host.brokers.settlements import Settlement, Settler, settle_many
from host.core import Host
from host.ledger import Exchange, NewMessage, insert
from host.migrations import core
from host.outage import Outage
from host.store import Store
from tests.outbound.conftest import (
    OUR_NUMBER,
    PHONE,
    FakeBroker,
    Reply,
    Seen,
    Smshost,
    generic_ok,
    generic_toml,
    outbox_toml,
    statuses,
    wait_until,
)
from tests.outbound.test_receipts_events import post_receipt
from tests.outbound.test_sender import RATE_ACCOUNTS, FakeClock

OTHER_PHONE = "+14155550199"


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The message ids the worker's loop claimed (host.brokers.claims.claim)."""
    seen: list[int] = []
    real = claims_module.claim

    def counting(ids: list[int], *args: Any) -> Any:
        seen.extend(ids)
        return real(ids, *args)
    monkeypatch.setattr("host.brokers.sender.claim", counting)
    return seen


class Held:
    """A generic broker that holds every answer until ``release``."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.fake = FakeBroker(self.respond)

    def respond(self, seen: Seen, n: int) -> Reply:
        reply = generic_ok(seen, n)
        reply.hold = self.gate
        return reply


@pytest.fixture
def held() -> Iterator[Held]:
    found = Held()
    with found.fake:
        try:
            yield found
        finally:
            found.gate.set()


def test_a_send_with_a_token_is_in_flight_when_answered_without_a_claim(
        smshost: Callable[..., Smshost], held: Held, claims: list[int]) -> None:
    node = smshost(brokers=generic_toml(held.fake.url))
    assert node.host is not None
    mid = node.queued(to=PHONE, text="straight out")["id"]
    # committed claimed by the write that stored it, before the 201
    assert node.rows("select in_flight, attempts, claimed_by from outbox") == [
        {"in_flight": 1, "attempts": 1, "claimed_by": node.host.cluster.node_id}]
    assert node.message(mid)["status"] == "sending"
    held.fake.wait_requests(1)
    held.gate.set()
    sent = node.wait_status(mid, "sent")
    assert statuses(sent) == ["queued", "sent"]
    assert claims == []  # the worker never claimed it
    assert node.rows("select * from outbox") == []


def test_a_send_without_a_token_waits_queued_and_is_claimed_later(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, claims: list[int]) -> None:
    clock = FakeClock()

    def prepare(host: Host) -> None:
        host.sender.clock = clock

    node = smshost(brokers=generic_toml(fake_broker.url, extra="mt.rate = 0.001",
                                        accounts=RATE_ACCOUNTS),
                   prepare=prepare, shutdown_timeout=0.5)
    first = node.queued(to=PHONE, text="first", account="main")["id"]
    waiting = node.queued(to=PHONE, text="no token", account="main")["id"]
    assert node.rows("select in_flight, attempts, claimed_by from outbox where "
                     "message_id = ?", [waiting]) == [
        {"in_flight": 0, "attempts": 0, "claimed_by": None}]
    assert node.message(waiting)["status"] == "queued"
    node.wait_status(first, "sent")
    clock.now += 1000.0  # the account's next token
    node.wait_status(waiting, "sent")
    assert first not in claims and waiting in claims
    assert fake_broker.refs() == {str(first): 1, str(waiting): 1}


def test_concurrent_accepts_never_exceed_max_in_flight(
        smshost: Callable[..., Smshost], held: Held) -> None:
    node = smshost(brokers=generic_toml(held.fake.url), outbox=outbox_toml(max_in_flight=2))
    with ThreadPoolExecutor(6) as pool:
        ids = [m["id"] for m in pool.map(
            lambda n: node.queued(to=PHONE, text=f"burst {n}"), range(6))]
    held.fake.wait_requests(2)
    rows = node.rows("select in_flight from outbox")
    assert len(rows) == 6 and sum(r["in_flight"] for r in rows) == 2
    held.gate.set()
    for mid in ids:
        node.wait_status(mid, "sent")
    assert held.fake.refs() == {str(mid): 1 for mid in ids}


def test_a_send_merged_into_a_waiting_one_gives_its_slot_back(
        smshost: Callable[..., Smshost], held: Held) -> None:
    """With one slot taken, the next sends wait and a later one is merged into the
    waiting one (O5); the slot reserved for it is not lost."""
    node = smshost(brokers=generic_toml(held.fake.url, extra="mt.consolidate = true"),
                   outbox=outbox_toml(max_in_flight=1))
    first = node.queued(to=PHONE, text="one")["id"]
    second = node.queued(to=PHONE, text="two")["id"]
    third = node.queued(to=PHONE, text="three")
    assert third["id"] == second  # merged into the waiting one
    held.gate.set()
    node.wait_status(first, "sent")
    assert node.wait_status(second, "sent")["body"] == "two\nthree"
    after = node.queued(to=PHONE, text="after")["id"]
    node.wait_status(after, "sent")
    assert held.fake.refs() == {str(first): 1, str(second): 1, str(after): 1}


def test_a_send_refused_in_its_write_gives_its_slot_and_token_back(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """The opt-out is read in the write that stores the send: refused there, the slot
    and the token reserved for it are given back (one slot, one token a long while)."""
    clock = FakeClock()

    def prepare(host: Host) -> None:
        host.sender.clock = clock

    node = smshost(brokers=generic_toml(fake_broker.url, extra="mt.rate = 0.001"),
                   outbox=outbox_toml(max_in_flight=1), prepare=prepare,
                   shutdown_timeout=0.5)
    node.write("insert into optouts (local, remote, opted_out_at, broker) values "
               "(?, ?, '2026-01-01T00:00:00.000000Z', 'gen')", [OUR_NUMBER, PHONE])
    for _ in range(2):
        answer = node.send(to=PHONE, text="refused")
        assert answer.status_code == 409, answer.text
    assert node.rows("select * from outbox") == []
    mid = node.queued(to=OTHER_PHONE, text="still goes")["id"]
    assert node.rows("select in_flight from outbox") == [{"in_flight": 1}]
    node.wait_status(mid, "sent")
    assert fake_broker.refs() == {str(mid): 1}


# -- settlements written together -------------------------------------------------------


def _queue(db: Any, text: str, *, part: int | None = None, after: int | None = None,
           status: str = "sending") -> int:
    attrs = {"part": part, "part_of": 2} if part else None
    message, _ = insert(db, NewMessage(direction="out", body=text, status="queued",
                                       broker="gen", account="main", local="1", remote=PHONE,
                                       attrs=attrs))
    db.conn.execute("update messages set status = ? where id = ?", [status, message.id])
    db.conn.execute("insert into outbox (message_id, next_attempt_at, enqueued_at, broker, "
                    "account, waits_for, in_flight, attempts) values (?, 0, 0, 'gen', "
                    "'main', ?, ?, 1)", [message.id, after, 0 if after else 1])
    return message.id


def opened(tmp_path: Path, url: str | None) -> Store:
    """A store on SQLite (``url`` None) or PostgreSQL, not open yet."""
    if url is None:
        return Store(tmp_path / "batch.db")
    from host.pg.store import PgStore
    return PgStore(url)


def test_settlements_of_several_sends_in_one_write_keep_each_outcome(
        tmp_path: Path, store_url: str | None) -> None:
    """Accepted, retried, failed (with the part after it), one a receipt reached first,
    one whose message is gone, and one with an orphan receipt: one write."""
    async def main() -> None:
        store = opened(tmp_path, store_url)
        await store.open([core])
        try:
            def setup(db: Any) -> dict[str, int]:
                ids = {"ok": _queue(db, "ok"), "retry": _queue(db, "retry"),
                       "fail": _queue(db, "fail", part=1),
                       "receipted": _queue(db, "receipted", status="delivered"),
                       "orphaned": _queue(db, "orphaned")}
                ids["part2"] = _queue(db, "part 2", part=2, after=ids["fail"])
                db.conn.execute(
                    "insert into orphan_receipts (broker, broker_message_id, ref, status, "
                    "detail, received_at, updated_at) values ('gen', 'B-o', null, "
                    "'delivered', '{}', 'x', 'x')")
                return ids
            ids = await store.write(setup)
            exchange = Exchange("mt", {"method": "POST"}, {"status": 200})
            items = [
                Settlement(ids["ok"], "gen", "sent", {"attempt": 1}, "B-ok",
                           exchange=exchange),
                Settlement(ids["retry"], "gen", "queued", {"attempt": 1, "retry_in": 5},
                           retry_at=123.0, error="HTTP 500"),
                Settlement(ids["fail"], "gen", "failed", {"attempt": 1}),
                Settlement(ids["receipted"], "gen", "sent", {"attempt": 1}, "B-r"),
                Settlement(99999, "gen", "sent", {"attempt": 1}, "B-gone"),
                Settlement(ids["orphaned"], "gen", "sent", {"attempt": 1}, "B-o"),
            ]
            results = await store.write(lambda db: settle_many(db, items))
            ok, retry, fail, receipted, gone, orphaned = results
            assert isinstance(gone, LookupError)
            assert not isinstance(ok, LookupError) and ok.change.message.status == "sent"
            assert ok.change.message.broker_message_id == "B-ok" and ok.change.old == "sending"
            assert not isinstance(retry, LookupError)
            assert retry.change.message.status == "queued"
            assert not isinstance(fail, LookupError)
            assert [c.message.id for c in fail.later] == [ids["part2"]]
            assert fail.later[0].message.status == "failed"
            assert not isinstance(receipted, LookupError)
            assert receipted.change.message.status == "delivered"  # the receipt stands
            assert receipted.change.event.status == "sent"
            assert not isinstance(orphaned, LookupError)
            assert [a.message.status for a in orphaned.adopted if a.message] == ["delivered"]
            rows = store.read_now(lambda db: [tuple(r) for r in db.execute(
                "select message_id, in_flight, next_attempt_at, last_error from outbox")])
            assert rows == [(ids["retry"], 0, 123.0, "HTTP 500")]
            kept = store.read_now(lambda db: db.execute(
                "select message_id from message_exchanges").fetchall())
            assert [r[0] for r in kept] == [ids["ok"]]
            orphans = store.read_now(lambda db: db.execute(
                "select count(*) from orphan_receipts").fetchone()[0])
            assert orphans == 0
        finally:
            await store.close()
    asyncio.run(main())


def test_settlements_that_end_together_share_a_commit(
        tmp_path: Path, store_url: str | None) -> None:
    async def main() -> None:
        store = opened(tmp_path, store_url)
        await store.open([core])
        try:
            ids = await store.write(lambda db: [_queue(db, f"m{n}") for n in range(6)])
            settler = Settler(store, lambda: True, Outage("test", logging.getLogger("test")), (0.01,))
            before = store.stats.commits
            done = await asyncio.gather(*(settler.settle(Settlement(
                i, "gen", "sent", {"attempt": 1}, f"B-{i}")) for i in ids),
                settler.settle(Settlement(424242, "gen", "sent", {}, "B-x")),
                return_exceptions=True)
            assert store.stats.commits - before <= 2  # the first alone, the rest together
            assert [d.change.message.status for d in done[:-1]  # type: ignore[union-attr]
                    ] == ["sent"] * 6
            assert isinstance(done[-1], LookupError)
        finally:
            await store.close()
    asyncio.run(main())


def test_a_receipt_that_came_first_stands_through_an_accept(
        smshost: Callable[..., Smshost]) -> None:
    box: list[Smshost] = []

    def respond(seen: Seen, n: int) -> Reply:
        def before() -> None:
            post_receipt(box[0], ref=seen.ref or "", status="delivered")
        return Reply(200, {"id": f"B-{seen.ref}"}, before=before)

    with FakeBroker(respond) as fake:
        node = smshost(brokers=generic_toml(fake.url))
        box.append(node)
        mid = node.queued(to=PHONE, text="fast receipt")["id"]
        wait_until(lambda: node.rows("select * from outbox") == [], what="the settlement")
        assert node.message(mid)["status"] == "delivered"


def test_two_sends_of_one_write_given_the_same_broker_id_keep_it_aside(
        tmp_path: Path, store_url: str | None) -> None:
    """The broker reused an id for two sends that settle in the same write: the first
    holds it, the second keeps it in attrs (as one send alone would), and the write
    goes through (the unique index messages_broker_id is never met)."""
    async def main() -> None:
        store = opened(tmp_path, store_url)
        await store.open([core])
        try:
            ids = await store.write(lambda db: [_queue(db, f"m{n}") for n in range(3)])
            items = [Settlement(i, "gen", "sent", {"attempt": 1}, "B-same") for i in ids]
            results = await store.write(lambda db: settle_many(db, items))
            messages = [r.change.message for r in results  # type: ignore[union-attr]
                        ]
            assert [m.status for m in messages] == ["sent"] * 3
            assert [m.broker_message_id for m in messages] == ["B-same", None, None]
            assert [m.attrs.get("broker_message_id") for m in messages[1:]
                    ] == ["B-same", "B-same"]
        finally:
            await store.close()
    asyncio.run(main())


def test_a_group_settlement_that_meets_a_bug_settles_each_send_alone(
        tmp_path: Path, store_url: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group write raising something the database did not refuse it for (a constraint,
    a bug) is not retried as a refusal (it would meet it again for a minute, then leave
    every send in flight): each send is written alone."""
    import sqlite3

    from host.brokers import settlements
    real = settlements.update_many

    def buggy(db: Any, news: Any, at: str) -> Any:
        if len(news) > 1:
            raise sqlite3.IntegrityError("UNIQUE constraint failed: messages.broker_message_id")
        return real(db, news, at)
    monkeypatch.setattr(settlements, "update_many", buggy)

    async def main() -> None:
        store = opened(tmp_path, store_url)
        await store.open([core])
        try:
            ids = await store.write(lambda db: [_queue(db, f"m{n}") for n in range(4)])
            settler = Settler(store, lambda: True,
                              Outage("test", logging.getLogger("test")), (0.01,))
            done = await asyncio.gather(*(settler.settle(Settlement(
                i, "gen", "sent", {"attempt": 1}, f"B-{i}")) for i in ids))
            assert [d.change.message.status for d in done  # type: ignore[union-attr]
                    ] == ["sent"] * 4
            left = store.read_now(lambda db: db.execute(
                "select count(*) from outbox").fetchone()[0])
            assert left == 0
        finally:
            await store.close()
    asyncio.run(main())


def test_a_send_whose_caller_is_cancelled_during_its_write_still_goes(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """The caller (a handler, a client gone) is cancelled while the write that stores
    its send claimed by this node is pending: the write commits anyway, and the send
    goes then, not after the next restart; its slot is not lost either."""
    from host.sends import SendRequest
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(max_in_flight=1))
    host = node.host
    assert host is not None and host.store._drainer is not None
    loop = host.store._drainer.get_loop()

    async def cancelled() -> None:
        task = asyncio.create_task(host.outbound.send(SendRequest(to=PHONE, text="gone")))
        await asyncio.sleep(0)  # the task ran up to its write, queued, not committed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run_coroutine_threadsafe(cancelled(), loop).result(timeout=10)
    wait_until(lambda: node.rows("select id from messages"), what="the committed send")
    mid = node.rows("select id from messages")[0]["id"]
    node.wait_status(mid, "sent")
    after = node.queued(to=PHONE, text="after")["id"]
    node.wait_status(after, "sent")
    assert fake_broker.refs() == {str(mid): 1, str(after): 1}


@pytest.mark.parametrize(("max_in_flight", "other"), [(1, "second"), (10, "main")],
                         ids=["slot", "token"])
def test_a_send_reserved_while_the_loop_claims_never_exceeds_the_limits(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker,
        monkeypatch: pytest.MonkeyPatch, max_in_flight: int, other: str) -> None:
    """While the worker's loop claims (its write pending), an API send asking for a slot
    and a token must count the ones the claim takes: with one slot, another account's
    send finds it taken; with many, the same account's send finds its only token
    taken (the claim chose it)."""
    clock = FakeClock()
    answers: list[bool] = []
    real = claims_module.claim
    boxed: list[Host] = []

    def watching(ids: list[int], *args: Any) -> Any:
        if ids:  # the loop's claim write of ``ids``: a send reserved meanwhile
            sender, key = boxed[0].sender, ("gen", other)
            answers.append(sender.reserve(key))
            if answers[-1]:
                sender.release(key)
        return real(ids, *args)
    monkeypatch.setattr("host.brokers.sender.claim", watching)

    def prepare(host: Host) -> None:
        host.sender.clock = clock
        boxed.append(host)

    node = smshost(brokers=generic_toml(fake_broker.url, extra="mt.rate = 0.001",
                                        accounts=RATE_ACCOUNTS),
                   outbox=outbox_toml(max_in_flight=max_in_flight), prepare=prepare,
                   shutdown_timeout=0.5)
    first = node.queued(to=PHONE, text="first", account="main")["id"]
    node.wait_status(first, "sent")
    waiting = node.queued(to=PHONE, text="no token yet", account="main")["id"]
    assert node.message(waiting)["status"] == "queued"
    clock.now += 1000.0  # the account's next token: the loop claims it
    node.wait_status(waiting, "sent")
    assert answers and not any(answers), answers


def test_an_opted_out_send_does_not_roll_back_its_group(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """A send refused by an opt-out read in its write answers the same refusal, but its
    group commit is not rolled back: the other writes of the group run once."""
    from host.optout import OptedOut
    from host.sends import SendRequest
    node = smshost(brokers=generic_toml(fake_broker.url))
    node.write("insert into optouts (local, remote, opted_out_at, broker) values "
               "(?, ?, '2026-01-01T00:00:00.000000Z', 'gen')", [OUR_NUMBER, PHONE])
    host = node.host
    assert host is not None and host.store._drainer is not None
    runs: list[int] = []

    async def together() -> None:
        send = asyncio.create_task(host.outbound.send(SendRequest(to=PHONE, text="no")))
        # queued now, before the send's write (its task runs next, before the writer):
        # one group, this write first
        other = host.store.write_soon(lambda db: runs.append(1))
        with pytest.raises(OptedOut):
            await send
        await other

    loop = host.store._drainer.get_loop()
    asyncio.run_coroutine_threadsafe(together(), loop).result(timeout=10)
    assert runs == [1]
    assert node.rows("select * from messages") == []
    mid = node.queued(to=OTHER_PHONE, text="still goes")["id"]
    node.wait_status(mid, "sent")
