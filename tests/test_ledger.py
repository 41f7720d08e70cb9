"""The ledger (host/ledger.py): the one writer of messages and their history, and the
after-commit sequence, on a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from host import ledger, textindex
from host.ledger import Change, Ledger, NewMessage
from host.metrics import Metrics
from host.migrations import core
from host.models import Message, StatusEvent
from host.store import Store

T = TypeVar("T")


class FakeHooks:
    """Records the hook calls, and what the database held when each came."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[tuple[Any, ...]] = []

    async def message_stored(self, host: Any, message: Message) -> None:
        self.calls.append(("stored", host, message.id, self._stored(message.id)))

    async def message_status_changed(self, host: Any, message: Message, old: str | None,
                                     new: str, event: StatusEvent) -> None:
        self.calls.append(("changed", host, message.id, old, new, event.status,
                           self._stored(message.id)))

    def _stored(self, message_id: int) -> str | None:  # committed: a reader sees it
        row = self.store.read_now(lambda db: db.execute(
            "select status from messages where id = ?", [message_id]).fetchone())
        return None if row is None else str(row[0])


def with_store(tmp_path: Path, body: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = Store(tmp_path / "ledger.db")
        await store.open([core])
        try:
            return await body(store)
        finally:
            await store.close()
    return asyncio.run(main())


def new_mo(body: str = "hello", **more: Any) -> NewMessage:
    return NewMessage(direction="in", body=body, status="received", broker="b",
                      remote="+15550001", **more)


def counted(metrics: Metrics, name: str, direction: str, status: str) -> float:
    value = metrics.registry.get_sample_value(name, {"direction": direction,
                                                     "status": status})
    return value or 0.0


def test_insert_stores_the_row_and_its_first_event_and_a_retry_nothing(
        tmp_path: Path) -> None:
    async def body(store: Store) -> tuple[Any, ...]:
        first = await store.write(lambda db: ledger.insert(db, new_mo(broker_message_id="x1")))
        again = await store.write(lambda db: ledger.insert(db, new_mo(broker_message_id="x1")))
        events = await store.read(lambda db: db.execute(
            "select message_id, status, source from message_events").fetchall())
        return first, again, events
    (message, event), (same, none), events = with_store(tmp_path, body)
    assert event is not None and event.status == "received"
    assert same.id == message.id and none is None
    assert events == [(message.id, "received", "system")]
    assert ledger.created([(message, event), (same, none)]) == [
        Change(message, event, None, True)]


def test_change_status_returns_what_changed(tmp_path: Path) -> None:
    async def body(store: Store) -> tuple[Change, list[Any]]:
        message, _ = await store.write(lambda db: ledger.insert(db, new_mo()))
        change = await store.write(lambda db: ledger.change_status(
            db, message.id, "routed", "router", {"route": "default"}))
        history = await store.read(lambda db: db.execute(
            "select status, source, detail from message_events where message_id = ? "
            "order by id", [message.id]).fetchall())
        return change, history
    change, history = with_store(tmp_path, body)
    assert (change.old, change.message.status, change.created) == ("received", "routed", False)
    assert change.event.status == "routed" and change.event.detail == {"route": "default"}
    assert change.message.updated_at == change.event.at
    assert history == [("received", "system", "{}"),
                       ("routed", "router", '{"route":"default"}')]


def test_change_status_of_no_message_raises(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        await store.write(lambda db: ledger.change_status(db, 42, "failed", "x", {}))
    with pytest.raises(LookupError):
        with_store(tmp_path, body)


def test_update_keeps_a_reused_broker_id_aside(tmp_path: Path) -> None:
    async def body(store: Store) -> tuple[Message | None, Message | None]:
        def write(db: Any) -> tuple[Message | None, Message | None]:
            a, _ = ledger.insert(db, NewMessage(direction="out", body="a", status="sending",
                                                broker="b"))
            b, _ = ledger.insert(db, NewMessage(direction="out", body="b", status="sending",
                                                broker="b"))
            return (ledger.update(db, a.id, "t1", status="sent", broker_message_id="id7"),
                    ledger.update(db, b.id, "t2", status="sent", broker_message_id="id7"))
        return await store.write(write)
    first, second = with_store(tmp_path, body)
    assert first is not None and first.broker_message_id == "id7"
    assert second is not None and second.status == "sent"
    assert second.broker_message_id is None and second.attrs == {"broker_message_id": "id7"}


def test_announce_runs_after_the_commit_in_order(tmp_path: Path) -> None:
    """A new message: counted, message_stored, then message_status_changed; a status
    change: counted and message_status_changed only. The hooks get the host given."""
    host = object()
    metrics = Metrics()

    async def body(store: Store) -> tuple[list[tuple[Any, ...]], int]:
        hooks = FakeHooks(store)
        book = Ledger(store, metrics, hooks, host)
        message, created = await book.add(new_mo(broker_message_id="m1"))
        assert created
        _, again = await book.add(new_mo(broker_message_id="m1"))
        assert not again  # a retry: stored nothing, announced nothing
        await book.set_status(message.id, "routed", source="router")
        return hooks.calls, message.id
    calls, mid = with_store(tmp_path, body)
    assert calls == [("stored", host, mid, "received"),
                     ("changed", host, mid, None, "received", "received", "received"),
                     ("changed", host, mid, "received", "routed", "routed", "routed")]
    assert counted(metrics, "smshost_messages_stored_total", "in", "received") == 1


def test_add_many_is_one_transaction_announced_in_order(tmp_path: Path) -> None:
    async def body(store: Store) -> tuple[list[tuple[Message, bool]], list[tuple[Any, ...]]]:
        hooks = FakeHooks(store)
        book = Ledger(store, Metrics(), hooks, None)
        out = await book.add_many([new_mo(body="one"), new_mo(body="two")])
        return out, hooks.calls
    out, calls = with_store(tmp_path, body)
    ids = [m.id for m, created in out if created]
    assert len(ids) == 2
    assert [(c[0], c[2]) for c in calls] == [("stored", ids[0]), ("changed", ids[0]),
                                             ("stored", ids[1]), ("changed", ids[1])]


def test_the_small_writes(tmp_path: Path) -> None:
    """mark_sending (queued only), flag, rewrite, touch and record_status."""
    async def body(store: Store) -> list[Any]:
        def write(db: Any) -> list[int]:
            ids = [ledger.insert(db, NewMessage(direction="out", body=f"m{n}",
                                                status=status, broker="b"))[0].id
                   for n, status in enumerate(("queued", "failed"))]
            ledger.mark_sending(db, ids, "t-claim")
            ledger.flag(db, ids[0], "possibly_duplicated")
            ledger.rewrite(db, ids[0], "m0\nmore", "gsm7", {"consolidated": 2})
            ledger.touch(db, ids[1], "t-touch")
            event = ledger.record_status(db, ids[1], "routed", "router", {}, route="r1")
            assert event.status == "routed"
            return ids
        ids = await store.write(write)
        return await store.read(lambda db: db.execute(
            f"select status, body, attrs, route from messages where id in "
            f"({ids[0]}, {ids[1]}) order by id").fetchall())
    rows = with_store(tmp_path, body)
    assert rows[0][:2] == ("sending", "m0\nmore")
    assert '"consolidated": 2' in rows[0][2]
    assert rows[1] == ("routed", "m1", "{}", "r1")


def test_purge_deletes_old_messages_with_their_history_but_the_kept(tmp_path: Path) -> None:
    async def body(store: Store) -> tuple[dict[str, int], list[Any]]:
        ids = await store.write(lambda db: [ledger.insert(db, new_mo(body=b))[0].id
                                            for b in ("old", "kept")])
        counts = await ledger.purge(store, "9999", batch_size=10, pause=0, dry_run=False,
                                    keep=f"select {ids[1]}")
        left = await store.read(lambda db: db.execute(
            "select m.body, count(e.id) from messages m join message_events e "
            "on e.message_id = m.id group by m.id").fetchall())
        return counts, left
    counts, left = with_store(tmp_path, body)
    assert counts["messages"] == 1 and counts["message_events"] == 1
    assert left == [("kept", 1)]


def test_the_text_index_is_written_in_batches_and_caught_up_before_a_search(
        tmp_path: Path) -> None:
    """SQLite (host.textindex): the write of every BATCH-th message indexes the text of
    the messages before it; a catch-up indexes the rest, as they now are (a body
    rewritten before it was indexed), and finds them after a restart (nothing held in
    memory); a message deleted before it was indexed is not."""
    count = textindex.BATCH + 3

    def indexed(db: Any) -> list[tuple[int, str]]:
        return db.execute("select rowid, body from messages_text order by rowid").fetchall()

    async def store_them(store: Store) -> list[tuple[int, str]]:
        await store.write(lambda db: [ledger.insert(db, new_mo(f"m{i}"))
                                      for i in range(1, count + 1)])
        await store.write(lambda db: ledger.rewrite(db, count - 1, "changed", "GSM", {}))
        await store.write(lambda db: db.execute("delete from messages where id = ?",
                                                [count]))
        return await store.read(indexed)

    async def catch_up(store: Store) -> tuple[int, int, list[tuple[int, str]]]:
        first = await textindex.catch_up(store)
        return first, await textindex.catch_up(store), await store.read(indexed)

    before = with_store(tmp_path, store_them)
    first, again, after = with_store(tmp_path, catch_up)
    assert before == [(i, f"m{i}") for i in range(1, textindex.BATCH + 1)]
    assert (first, again) == (2, 0)
    assert after == [*before, (count - 2, f"m{count - 2}"), (count - 1, "changed")]


def test_a_catch_up_the_database_refuses_leaves_the_text_pending(tmp_path: Path) -> None:
    """A full disk (SQLite refusing new pages): the catch-up indexes nothing and raises
    nothing (the search goes on with what is indexed); once there is room, it does."""
    async def body(store: Store) -> tuple[int, int, int]:
        await store.write(lambda db: [ledger.insert(db, new_mo(f"m{i} " + "ab" * i))
                                      for i in range(300)])  # more text than a page
        await store.write(lambda db: db.execute(
            "pragma max_page_count = " + str(db.execute("pragma page_count").fetchone()[0])
        ).fetchall())
        full = await textindex.catch_up(store)
        await store.write(lambda db: db.execute("pragma max_page_count = 1000000").fetchall())
        done = await textindex.catch_up(store)
        return full, done, await store.read(lambda db: db.execute(
            "select count(*) from messages_text").fetchone()[0])
    assert with_store(tmp_path, body) == (0, 300, 300)


def test_the_first_event_holds_its_detail_as_stored(
        tmp_path: Path, store_url: str | None) -> None:
    """A detail with text that cannot be stored as given (a NUL) is stored cleaned: the
    event :func:`host.ledger.insert` returns holds the cleaned detail, as every later
    read does (on PostgreSQL too, where the event is inserted with the message)."""
    async def main() -> None:
        if store_url is None:
            store: Store = Store(tmp_path / "ledger.db")
        else:
            from host.pg.store import PgStore
            store = PgStore(store_url)
        await store.open([core])
        try:
            _, event = await store.write(lambda db: ledger.insert(
                db, new_mo(detail={"note": "a\x00b"})))
            assert event is not None
            stored = await store.read(lambda db: db.execute(
                "select detail from message_events where id = ?", [event.id]).fetchone()[0])
            import json
            assert event.detail == json.loads(stored)
            assert "\x00" not in event.detail["note"]
        finally:
            await store.close()
    asyncio.run(main())
