"""The PostgreSQL dialect: which inserts hand their new id back (``cursor.lastrowid``)."""

from __future__ import annotations

import pytest

from host.pg.database import PgDatabase, connect
from host.pg.dialect import returns_id


@pytest.mark.parametrize(("sql", "table"), [
    ("insert into messages (body) values (?)", "messages"),
    ("insert or ignore into webhook_deliveries (message_id) values (?)", "webhook_deliveries"),
    ("  INSERT OR REPLACE INTO \"outbox\" (id) values (?)", "outbox"),
    ("insert into messages (body) values (?) returning id", None),
    ("update messages set body = ?", None),
])
def test_returns_id_names_the_table_of_every_insert_form(sql: str, table: str | None) -> None:
    assert returns_id(sql) == table


def test_insert_or_ignore_gives_its_new_id_and_none_on_a_conflict(pg_url: str) -> None:
    """The webhook sink's enqueue: ``insert or ignore`` then ``cursor.lastrowid``, on a
    table created after the connection first looked up the tables with an id."""
    db = PgDatabase(connect(pg_url))
    try:
        db.execute("create table first (id integer primary key autoincrement, x text)")
        assert db.execute("insert into first (x) values (?)", ["a"]).lastrowid == 1
        db.with_id = None  # as after migrations (host.pg.schema.apply)
        db.execute("create table later (id integer primary key autoincrement, "
                   "k text unique)")
        db.with_id = None
        cur = db.execute("insert or ignore into later (k) values (?)", ["a"])
        assert (cur.rowcount, cur.lastrowid) == (1, 1)
        cur = db.execute("insert or ignore into later (k) values (?)", ["a"])
        assert (cur.rowcount, cur.lastrowid) == (0, None)
        # PostgreSQL's sequence moved on the conflict: the next id is 3, not 2
        assert db.execute("insert or ignore into later (k) values (?)", ["b"]).lastrowid == 3
    finally:
        db.raw.close()
