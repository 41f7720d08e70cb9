"""The core's first tables (m001-m009): messages and their history, the brokers'
parts and receipts, routing, the outbox, and the indexes the purge walks."""

from __future__ import annotations

from sqlite_utils import Database

from host.migrations.base import core


@core()
def m001_messages(db: Database) -> None:
    db.execute("""
        create table messages (
            id integer primary key autoincrement,  -- never reused, even after a purge
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


@core()
def m002_brokers(db: Database) -> None:
    # Parts of concatenated MO waiting for the rest; kept after assembly (with the
    # message id) so a late retry of a part is recognised.
    db.execute("""
        create table mo_parts (
            id integer primary key,
            broker text not null,
            remote text not null,
            local text,
            account text,
            ref text not null,
            total integer not null,
            part integer not null,
            body text not null,
            broker_message_id text,
            attrs text not null default '{}',
            received_at text not null,
            updated_at text not null,
            message_id integer
        )""")
    db.execute("""create unique index mo_parts_id on mo_parts (broker, broker_message_id)
                  where broker_message_id is not null""")
    db.execute("""create unique index mo_parts_slot on mo_parts (broker, remote, ref, total, part)
                  where message_id is null""")
    db.execute("create index mo_parts_waiting on mo_parts (message_id, received_at)")
    db.execute("create index mo_parts_updated on mo_parts (updated_at)")
    # Receipts for a message id we do not know (yet): applied when the send is recorded.
    db.execute("""
        create table orphan_receipts (
            id integer primary key,
            broker text not null,
            broker_message_id text,
            ref text,
            status text not null,
            detail text not null default '{}',
            received_at text not null,
            updated_at text not null
        )""")
    db.execute("create index orphan_receipts_id on orphan_receipts (broker, broker_message_id)")
    db.execute("create index orphan_receipts_updated on orphan_receipts (updated_at)")


@core()
def m003_fewer_indexes(db: Database) -> None:
    # Every stored message paid for these on the hot path. The API pages by id and the
    # daily purge scans in rowid order (old rows come first), so neither needs them.
    db.execute("drop index if exists messages_created")
    db.execute("drop index if exists messages_updated")


@core()
def m004_routing(db: Database) -> None:
    db.execute("alter table messages add column route text")
    # Senders who texted STOP to one of our numbers (SPEC R6).
    db.execute("""
        create table optouts (
            local text not null,
            remote text not null,
            opted_out_at text not null,
            broker text,
            primary key (local, remote)
        )""")
    # Per-conversation state of handler scripts (SPEC H3).
    db.execute("""
        create table conversation_state (
            scope text not null,
            local text not null,
            remote text not null,
            data text not null default '{}',
            updated_at text not null,
            primary key (scope, local, remote)
        )""")
    # Every load, reload, failure and removal of a handler script (SPEC H2).
    db.execute("""
        create table handler_loads (
            id integer primary key,
            name text not null,
            digest text,
            status text not null,
            error text,
            at text not null
        )""")


@core()
def m005_outbox(db: Database) -> None:
    # Messages waiting to be sent, and their attempts (SPEC O6). A row leaves when the
    # message is accepted by the broker or fails for good. Times are Unix seconds.
    db.execute("""
        create table outbox (
            message_id integer primary key references messages (id) on delete cascade,
            next_attempt_at real not null,
            attempts integer not null default 0,
            in_flight integer not null default 0,
            recovered integer not null default 0,
            last_error text,
            enqueued_at real not null
        )""")
    db.execute("create index outbox_due on outbox (in_flight, next_attempt_at)")
    # Idempotency-Key of the send API: a retried request gets the same messages (O1).
    db.execute("""
        create table idempotency (
            key text primary key,
            message_ids text not null,
            request text not null,
            created_at text not null
        )""")


@core()
def m006_outbox_accounts(db: Database) -> None:
    # Each outbox row names its message's broker and account, so that the worker reads
    # the due messages account by account (its token buckets, SPEC O6) from an index,
    # however long the backlog of an account waiting for its tokens.
    db.execute("alter table outbox add column broker text not null default ''")
    db.execute("alter table outbox add column account text not null default ''")
    db.execute("update outbox set broker = coalesce((select broker from messages "
               "where id = message_id), ''), account = coalesce((select account from "
               "messages where id = message_id), '')")
    db.execute("create index outbox_account_due on outbox "
               "(broker, account, in_flight, next_attempt_at, message_id)")


@core()
def m007_list_indexes(db: Database) -> None:
    # What the message API filters on and the purge walks (docs/benchmarks.md, "At a
    # million messages"), with as few indexes as that takes, for each costs on every
    # stored message (measured there: a few µs of an MO's ~130, of an MT's ~430):
    # - direction, status, broker: a page is one seek per (direction, status) pair in
    #   messages_direction_status, or per (broker, direction, status) here, merged in
    #   id order, so no page reads more rows than it lists, whatever the filters.
    # - created_at: `since` becomes an id bound (the id of the first message at or after
    #   it in time), and the purge walks the old messages in this order (the rows a
    #   purge keeps are never read again).
    db.execute("create index messages_broker on messages (broker, direction, status, id)")
    db.execute("create index messages_created on messages (created_at)")
    # Ids follow time unless the clock is set back: a message stored then is older (in
    # time) than one stored before it. Each such step is kept (the latest time before
    # it, the first id after it), so `since` knows when the first id in time is not the
    # smallest. Kept by a trigger: one seek per stored message, a row per step.
    db.execute("create table clock_steps (before_max text primary key, "
               "first_id integer not null)")
    db.execute("""insert or ignore into clock_steps (before_max, first_id)
                  select before_max, id from (
                      select id, created_at, max(created_at) over (
                          order by id rows between unbounded preceding and 1 preceding
                      ) as before_max from messages)
                  where created_at < before_max order by id""")
    db.execute("""create trigger messages_clock_step after insert on messages
                  when new.created_at < (select max(created_at) from messages)
                  begin
                      insert or ignore into clock_steps
                      values ((select max(created_at) from messages), new.id);
                  end""")
    # The purge walks the idempotency keys by age too.
    db.execute("create index idempotency_created on idempotency (created_at)")


@core()
def m008_outbox_parts(db: Database) -> None:
    # The parts of a split message leave in order (SPEC O4): a part's row names, in
    # waits_for, the part before it, and is not due until that one was accepted by the
    # broker (then waits_for is cleared). The due index leaves waiting parts out.
    db.execute("alter table outbox add column waits_for integer")
    db.execute("drop index if exists outbox_account_due")
    db.execute("create index outbox_account_due on outbox "
               "(broker, account, in_flight, waits_for, next_attempt_at, message_id)")
    db.execute("create index outbox_waits_for on outbox (waits_for) "
               "where waits_for is not null")


@core()
def m009_purged_by_age(db: Database) -> None:
    # The purge walks handlers' conversation state and load history by age (they grew
    # forever), and keeps each handler's latest load (found by name).
    db.execute("create index conversation_state_updated on conversation_state (updated_at)")
    db.execute("create index handler_loads_at on handler_loads (at)")
    db.execute("create index handler_loads_name on handler_loads (name, id)")
