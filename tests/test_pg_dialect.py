"""The rules of host.pg.dialect added for the core's statements, each with a case: the
translated text, and (on the session's PostgreSQL) that it runs and means what SQLite
means by it."""

from __future__ import annotations

import sqlite3

import pytest

from host.pg.database import PgDatabase, connect
from host.pg.dialect import returns_id, translate

ADMINS = ("select login from users where exists (select 1 from json_each(users.roles) "
          "where value = 'admin') order by login")
IDS = ("select t.id from tickets t where exists (select 1 from json_each(t.message_ids) j "
       "join outbox o on o.message_id = cast(j.value as integer)) order by t.id")


def test_json_each_over_an_array_is_its_elements_as_text() -> None:
    assert translate(ADMINS) == (
        "select login from users where exists (select 1 from "
        "jsonb_array_elements_text(users.roles::jsonb) where value = 'admin') order by login")
    assert "jsonb_array_elements_text(t.message_ids::jsonb) j join" in translate(IDS)


def test_json_each_in_a_literal_stays() -> None:
    assert translate("select 'json_each(x)' from t") == "select 'json_each(x)' from t"


def test_index_hints_go() -> None:
    assert translate("select min(id) from messages indexed by messages_created where "
                     "created_at >= ?") == "select min(id) from messages where created_at >= %s"
    assert translate("select c.id from conversations c indexed by conversations_last, "
                     "messages m not indexed where m.id = c.last_id") == (
        "select c.id from conversations c, messages m where m.id = c.last_id")


def test_is_and_is_not_with_a_value_are_null_safe_comparisons() -> None:
    assert translate("select 1 from t where a is ? and b is not :b and c is not null "
                     "and d is null") == (
        "select 1 from t where a is not distinct from %s and b is distinct from %(b)s "
        "and c is not null and d is null")


def test_a_subquery_in_from_gets_an_alias_when_it_has_none() -> None:
    assert translate("select count(*) from (select 1 from m where a = ? limit ?)") == (
        "select count(*) from (select 1 from m where a = %s limit %s) as _sub0")
    assert translate("select * from (select 1 union select 2) order by 1") == (
        "select * from (select 1 union select 2) as _sub0 order by 1")
    assert translate("select x from (select 1 as x) s where x in (select 1 from (values "
                     "(1)))") == ("select x from (select 1 as x) s where x in (select 1 "
                                  "from (values (1)) as _sub1)")


def test_an_empty_list_is_an_empty_array() -> None:
    assert translate("select 1 from t where a in () or b not in ( ) and c in (?)") == (
        "select 1 from t where a = any('{}') or b <> all('{}') and c in (%s)")


def test_an_empty_list_means_the_same_on_both(pg_url: str) -> None:
    sql = ("select name, n in (), n not in (), name not in () from t "
           "where n not in () and name not in () order by name")
    lite = sqlite3.connect(":memory:")
    db = PgDatabase(connect(pg_url))
    try:
        rows = []
        for conn in (lite, db):
            conn.execute("create table t (name text, n integer)")
            conn.execute("insert into t values ('a', 1), ('b', null)")
            rows.append([(r[0], *(bool(v) for v in r[1:])) for r in conn.execute(sql)])
        assert rows[0] == rows[1] == [("a", False, True, True), ("b", False, True, True)]
    finally:
        db.close()


@pytest.mark.parametrize("value, expected", [(None, [("a",)]), ("x", [("b",)])])
def test_is_means_the_same_on_both(pg_url: str, value: str | None,
                                   expected: list[tuple[object, ...]]) -> None:
    sql = "select name from t where local is ? and name is not ? order by name"
    lite = sqlite3.connect(":memory:")
    db = PgDatabase(connect(pg_url))
    try:
        for conn in (lite, db):
            conn.execute("create table t (name text, local text)")
            conn.execute("insert into t values ('a', null), ('b', 'x'), ('c', 'y')")
            assert [tuple(r) for r in conn.execute(sql, [value, "c"]).fetchall()] == expected
    finally:
        db.close()


def _fill(db: sqlite3.Connection | PgDatabase) -> None:
    db.execute("create table users (login text, roles text)")
    db.execute("create table tickets (id integer, message_ids text)")
    db.execute("create table outbox (message_id integer)")
    db.execute("insert into users values ('ann', '[\"admin\",\"agent\"]'), ('bob', "
               "'[\"agent\"]'), ('cid', '[]'), ('dan', null), ('eve', '[\"admin\"]')")
    db.execute("insert into tickets values (1, '[5, 6]'), (2, '[7]'), (3, '[]')")
    db.execute("insert into outbox values (6)")


@pytest.mark.parametrize("sql, expected", [(ADMINS, [("ann",), ("eve",)]),
                                           (IDS, [(1,)])])
def test_json_each_means_the_same_on_both(pg_url: str, sql: str,
                                          expected: list[tuple[object, ...]]) -> None:
    lite = sqlite3.connect(":memory:")
    _fill(lite)
    assert lite.execute(sql).fetchall() == expected
    db = PgDatabase(connect(pg_url))
    try:
        _fill(db)
        assert [tuple(r) for r in db.execute(sql).fetchall()] == expected
        assert db.table_names() == ["outbox", "tickets", "users"]
    finally:
        db.close()


def test_pgout_is_a_parameter_is_null_safe_equality() -> None:
    """``x is ?`` (SQLite: equal, or both null) has no PostgreSQL form with a parameter;
    ``is not distinct from`` means the same (the consolidation's ``m.local is ?``)."""
    assert translate("select 1 from m where local is ? and remote is not ?") == (
        "select 1 from m where local is not distinct from %s "
        "and remote is distinct from %s")
    assert translate("select 1 from m where local is :local") == (
        "select 1 from m where local is not distinct from %(local)s")


def test_pgout_is_null_and_literals_stay() -> None:
    assert translate("select 1 from m where a is null and b is not null and c = 'is ?'") \
        == "select 1 from m where a is null and b is not null and c = 'is ?'"


def test_sinks_insert_or_ignore_returns_its_new_id() -> None:
    # the queue's notices claim a row with "insert or ignore" and read its id back
    # (cursor.lastrowid): the insert must ask for it, after "on conflict do nothing"
    sql = "insert or ignore into queue_notices (interaction_id, kind) values (?, ?)"
    assert returns_id(sql) == "queue_notices"
    assert translate(sql) == ("insert into queue_notices (interaction_id, kind) values "
                              "(%s, %s) on conflict do nothing")
    assert returns_id("insert into t (a) values (?) returning id") is None
    assert returns_id("update t set a = 1") is None


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
