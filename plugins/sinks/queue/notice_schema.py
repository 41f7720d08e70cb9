"""The tables of queue notices (migration set ``smshost-queue-notices``): the notices
sent (who got which when, the rate limit's memory), the worker's cursor on
``queue_events``, and each queue's average handle time (:mod:`.handle_time`)."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("smshost-queue-notices")


@migrations()
def m001_notices(db: Database) -> None:
    # no foreign key: the set may run before the desk's tables exist; the rows go with
    # their interaction when it is purged (the queue sink's purge hook)
    db.execute("""
        create table queue_notices (
            id integer primary key,
            interaction_id integer not null,
            kind text not null,
            subject text,
            queue text not null,
            at text not null,
            ahead integer,
            text text not null,
            status text not null,
            message_id integer,
            detail text not null default ''
        )""")
    # one entry notice per interaction and queue, one assignment notice per agent
    db.execute("create unique index queue_notices_once on queue_notices "
               "(interaction_id, subject) where subject is not null")
    db.execute("create index queue_notices_interaction on queue_notices "
               "(interaction_id, queue, id)")
    db.execute("""
        create table queue_notice_cursor (
            name text primary key,
            last_id integer not null
        )""")
    # from now on: the interactions already in the line get no entry notice
    exists = "queue_events" in db.table_names()
    top = db.execute("select coalesce(max(id), 0) from queue_events").fetchone()[0] \
        if exists else 0
    db.execute("insert into queue_notice_cursor (name, last_id) values ('events', ?)", [top])
    db.execute("""
        create table queue_handle_time (
            queue text primary key collate nocase,
            seconds real not null,
            closes integer not null,
            updated_at text not null
        )""")
