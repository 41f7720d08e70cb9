"""The core's tables, as the named migration set ``smshost``.

Plugins add their own sets through the ``register_migrations`` hook. A migration is
never edited once released: a change is a new migration appended here.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

core = Migrations("smshost")


@core()
def m001_messages(db: Database) -> None:
    db.execute("""
        create table messages (
            id integer primary key,
            direction text not null check (direction in ('in', 'out')),
            broker text,
            account text,
            local text,
            remote text,
            body text not null default '',
            encoding text,
            segments integer,
            status text not null,
            broker_message_id text,
            created_at text not null,
            updated_at text not null,
            attrs text not null default '{}'
        )""")
    # A broker retry of the same message is recognised by this key (P1).
    db.execute("""create unique index messages_broker_id on messages (broker, broker_message_id)
                  where broker_message_id is not null""")
    db.execute("create index messages_direction_status on messages (direction, status, id)")
    db.execute("create index messages_updated on messages (updated_at)")
    db.execute("create index messages_created on messages (created_at)")
    db.execute("""
        create table message_events (
            id integer primary key,
            message_id integer not null references messages (id) on delete cascade,
            status text not null,
            at text not null,
            source text not null,
            detail text not null default '{}'
        )""")
    db.execute("create index message_events_message on message_events (message_id, id)")
