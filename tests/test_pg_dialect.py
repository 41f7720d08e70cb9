"""host.pg.dialect: SQLite's SQL as smshost writes it, in PostgreSQL's dialect (pure
functions: no server needed)."""

from __future__ import annotations

from host.pg.dialect import returns_id, translate


def test_sinks_insert_or_ignore_returns_its_new_id() -> None:
    # the queue's notices claim a row with "insert or ignore" and read its id back
    # (cursor.lastrowid): the insert must ask for it, after "on conflict do nothing"
    sql = "insert or ignore into queue_notices (interaction_id, kind) values (?, ?)"
    assert returns_id(sql) == "queue_notices"
    assert translate(sql) == ("insert into queue_notices (interaction_id, kind) values "
                              "(%s, %s) on conflict do nothing")
    assert returns_id("insert into t (a) values (?) returning id") is None
    assert returns_id("update t set a = 1") is None
