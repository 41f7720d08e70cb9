"""The PostgreSQL store (host.pg): what only it has to prove — several stores on one
database (nodes) see one writer at a time, migrate once between them, and a lost
connection fails the writes it held and is opened again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from host.config.settings import StoreSettings
from host.errors import StoreError
from host.migrations import core
from host.pg.store import PgStore
from host.pg.writer import WRITE_LOCK

pytestmark = pytest.mark.pg


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def opened(url: str, **settings: object) -> PgStore:
    store = PgStore(url, StoreSettings(**settings))  # type: ignore[arg-type]
    await store.open([core])
    return store


def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    async def main() -> list[tuple[str, int]]:
        stores = [PgStore(pg_url) for _ in range(3)]
        await asyncio.gather(*(s.open([core]) for s in stores))
        rows = await stores[0].read(lambda db: db.execute(
            "select name, count(*) from _sqlite_migrations where migration_set = ? "
            "group by name order by name", ["smshost"]).fetchall())
        for store in stores:
            await store.close()
        return [tuple(r) for r in rows]

    rows = run(main())
    assert rows and all(count == 1 for _, count in rows)
    assert [name for name, _ in rows] == sorted(m.name for m in core._migrations)


def test_two_nodes_read_modify_write_without_losing_a_change(pg_url: str) -> None:
    """Each write reads a counter and writes it back plus one, as a claim or an ACD
    offer reads then decides: two stores (nodes) on one database, 200 writes each at
    once, lose none (one write transaction at a time across the cluster)."""
    def bump(db: object) -> None:
        (value,) = db.execute("select value from counter where id = 1").fetchone()  # type: ignore[attr-defined]
        db.execute("update counter set value = ? where id = 1", [value + 1])  # type: ignore[attr-defined]

    async def main() -> int:
        a, b = await opened(pg_url), await opened(pg_url)
        await a.write(lambda db: db.execute("create table counter (id integer primary key, "
                                            "value integer not null)"))
        await a.write(lambda db: db.execute("insert into counter values (1, 0)"))
        await asyncio.gather(*(s.write(bump) for _ in range(200) for s in (a, b)))
        value = await b.read(lambda db: db.execute("select value from counter").fetchone()[0])
        await a.close()
        await b.close()
        return int(value)

    assert run(main()) == 400


def test_a_write_waits_for_another_nodes_write_transaction(pg_url: str) -> None:
    """A transaction holding the cluster's write lock (another node's group) holds every
    store's writes back until it ends; they are committed then, none lost."""
    async def main() -> tuple[bool, int]:
        store = await opened(pg_url)
        await store.write(lambda db: db.execute("create table t (v integer)"))
        with psycopg.connect(pg_url) as other:
            other.execute("select pg_advisory_xact_lock(%s)", [WRITE_LOCK])
            pending = asyncio.ensure_future(store.write(
                lambda db: db.execute("insert into t values (1)")))
            await asyncio.sleep(0.3)  # bounded: the write must still wait
            waited = not pending.done()
            other.commit()
        await asyncio.wait_for(pending, 10)
        count = await store.read(lambda db: db.execute("select count(*) from t").fetchone()[0])
        await store.close()
        return waited, int(count)

    assert run(main()) == (True, 1)


def test_a_lost_connection_fails_its_writes_then_the_store_reconnects(pg_url: str) -> None:
    async def main() -> tuple[str, int]:
        store = await opened(pg_url)
        await store.write(lambda db: db.execute("create table t (v integer)"))
        await store.read(lambda db: db.execute("select 1").fetchone())
        with psycopg.connect(pg_url, autocommit=True) as admin:  # the server drops them
            admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where "
                          "datname = current_database() and pid != pg_backend_pid()")
        error = ""
        try:
            await store.write(lambda db: db.execute("insert into t values (1)"))
        except StoreError as exc:
            error = str(exc)
        for _ in range(3):  # the next writes and reads go through on new connections
            await store.write(lambda db: db.execute("insert into t values (2)"))
        count = await store.read(lambda db: db.execute(
            "select count(*) from t where v = 2").fetchone()[0])
        await store.close()
        return error, int(count)

    error, count = run(main())
    assert count == 3
    assert error == "" or "connection" in error  # the first write may find it lost


def test_a_bad_url_is_a_clear_error(tmp_path: Path, pg_url: str) -> None:
    missing = pg_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StoreError, match="cannot open the database .*no_such_database"):
        run(opened(missing))


def test_the_password_is_not_in_messages(pg_url: str) -> None:
    url = pg_url.replace("://smshost@", "://smshost:s3cr3t-pw@")
    store = PgStore(url.rsplit("/", 1)[0] + "/no_such_database")
    assert "s3cr3t-pw" not in store.where
    with pytest.raises(StoreError) as caught:
        run(store.open([core]))
    assert "s3cr3t-pw" not in str(caught.value)


def test_an_mo_is_inserted_in_one_statement_and_a_retry_returns_the_stored_one(
        pg_url: str) -> None:
    """host.ledger.insert on PostgreSQL: the message, its status event, its text and its
    exchange in one statement (one round trip), followers told of the event; the same
    broker message id again inserts nothing and returns the message stored."""
    from host import jsontext, ledger
    from host.ledger import Exchange, NewMessage

    exchange = Exchange("webhook", {"method": "POST", "url": "http://x/mo",
                                    "headers": {"host": "x"}, "body": "Body=hi+%C3%A9"})
    new = NewMessage(direction="in", body="hi é", status="received", broker="b",
                     remote="+15550001", broker_message_id="SM1", source="broker",
                     exchange=exchange)
    seen: list[str] = []

    def insert(db: Any) -> Any:
        db.notified = {"message_events"}
        execute = db.execute

        def traced(sql: str, params: Any = None) -> Any:
            seen.append(sql)
            return execute(sql, params)
        db.execute = traced  # every statement of the ledger (db.conn is db)
        try:
            return ledger.insert(db, new), set(db.wrote)
        finally:
            del db.execute

    async def main() -> tuple[Any, ...]:
        store = await opened(pg_url)
        try:
            (first, event), wrote = await store.write(insert)
            (again, none), _ = await store.write(insert)
            rows = await store.read(lambda db: [db.execute(sql).fetchall() for sql in (
                "select id, status, source from message_events",
                "select id, body from messages_text",
                "select message_id, kind, request, response from message_exchanges")])
        finally:
            await store.close()
        return first, event, wrote, again, none, rows

    first, event, wrote, again, none, (events, texts, exchanges) = run(main())
    assert len(seen) == 3  # one insert, then the retry's insert and its read of the row
    assert event is not None and events == [(event.id, "received", "broker")]
    assert "message_events" in wrote
    assert none is None and again == first and again.body == "hi é"
    assert texts == [(first.id, "hi é")]
    assert [(m, k, jsontext.loads(q), r) for m, k, q, r in exchanges] == [
        (first.id, "webhook", exchange.request, "{}")]
