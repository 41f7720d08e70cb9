"""The core's tables of the API era (m010 on): people, tokens and access, the
configuration history, message search, and the callback queue."""

from __future__ import annotations

from sqlite_utils import Database

from host.migrations.base import core


@core()
def m010_people(db: Database) -> None:
    # Users and workgroups, managed by the admin (host.people; SPEC U1, O9). Lists are
    # JSON text; a user's workgroups are its rows in workgroup_members.
    db.execute("""
        create table users (
            id integer primary key,
            login text not null collate nocase unique,
            display_name text not null default '',
            password_hash text,
            roles text not null default '[]',
            classifications text not null default '[]',
            sender_number text,
            broker text,
            account text,
            source text not null default 'admin',
            created_at text not null,
            updated_at text not null
        )""")
    db.execute("""
        create table workgroups (
            id integer primary key,
            name text not null collate nocase unique,
            display_name text not null default '',
            sender_number text,
            broker text,
            account text,
            source text not null default 'admin',
            created_at text not null,
            updated_at text not null
        )""")
    db.execute("""
        create table workgroup_members (
            workgroup_id integer not null references workgroups (id) on delete cascade,
            user_id integer not null references users (id) on delete cascade,
            primary key (workgroup_id, user_id)
        )""")
    db.execute("create index workgroup_members_user on workgroup_members (user_id)")
    # What was done once per database: the first admin, the import of sinks.toml's queues.
    db.execute("create table people_state (key text primary key, value text not null, "
               "at text not null)")


@core()
def m011_tokens(db: Database) -> None:
    # API tokens (host.tokens; SPEC U2): a user's (removed with it) or an integration's.
    # Only the SHA-256 of a token is kept; id is its non-secret part. Revoked rows stay.
    db.execute("""
        create table api_tokens (
            id text primary key,
            digest text not null,
            user_id integer references users (id) on delete cascade,
            integration text,
            scopes text not null default '[]',
            created_at text not null,
            last_used_at text,
            revoked_at text
        )""")


@core()
def m012_access(db: Database) -> None:
    # Authorization and sessions (SPEC U2, U3): an integration token's classifications
    # (a user's token uses its user's); a user's session epoch, raised when its password
    # changes (its browser sessions end); the sessions ended by a logout before their
    # time, kept until they would have expired anyway (host.sessions).
    db.execute("alter table api_tokens add column classifications text not null "
               "default '[]'")
    db.execute("alter table users add column session_epoch integer not null default 0")
    db.execute("create table ended_sessions (id text primary key, until real not null)")
    db.execute("create index ended_sessions_until on ended_sessions (until)")


@core()
def m013_history(db: Database) -> None:
    # The configuration history (host.history; SPEC P3): one row per recorded version of
    # config/*.toml (files: their whole texts, as JSON, to revert to; diff: against the
    # version before, secrets masked) and per note (files null). Not purged.
    db.execute("""
        create table config_history (
            id integer primary key autoincrement,
            at text not null,
            source text not null,
            actor text,
            note text,
            digest text,
            files text,
            changed text not null default '[]',
            sections text not null default '[]',
            diff text not null default '',
            reverts integer,
            about integer
        )""")
    db.execute("create index config_history_at on config_history (at)")
    db.execute("create index config_history_version on config_history (id) "
               "where digest is not null")


@core()
def m014_message_search(db: Database) -> None:
    # The admin's message search and conversations (issue 15 point 4, issue 16 point 1),
    # each paid on every stored message (docs/benchmarks.md, "Admin pages"):
    # - text: a trigram index of the bodies (substring search of 3 characters or more,
    #   any case), an FTS5 table with its own copy of the text, written by
    #   host.ledger.insert in the message's transaction and kept by triggers when a body
    #   changes or a message is deleted (the purge). Not external content kept by an
    #   insert trigger: with that trigger, the first insert after another connection
    #   changed the schema failed ("no such table: messages", SQLite 3.40; found by
    #   tests/outbound/test_outbound_edges.py), and an external-content index is
    #   corrupted by deleting a row that was never indexed (one stored by another way);
    # - number, either party: one index each, in id order (pages walk ids);
    # - conversations: one row per (local, remote) with its count and latest message,
    #   kept by triggers, so the list pages by recency without grouping the messages;
    # - exchanges: what the broker sent (an MO's webhook) or was sent and answered (an
    #   MT's request and response), bounded and with secrets masked when stored.
    db.execute("create index messages_remote on messages (remote, id)")
    db.execute("create index messages_local on messages (local, id)")
    db.execute("create virtual table messages_text using fts5(body, tokenize='trigram', "
               "columnsize=0)")
    db.execute("insert into messages_text (rowid, body) select id, body from messages")
    db.execute("""create trigger messages_text_delete after delete on messages begin
                      delete from messages_text where rowid = old.id;
                  end""")
    db.execute("""create trigger messages_text_update after update of body on messages begin
                      update messages_text set body = new.body where rowid = new.id;
                  end""")
    db.execute("""
        create table conversations (
            local text not null,  -- '' when the message has none
            remote text not null,
            messages integer not null,
            last_id integer not null,
            primary key (local, remote)
        ) without rowid""")
    db.execute("create index conversations_last on conversations (last_id)")
    db.execute("""insert into conversations
                  select coalesce(local, ''), remote, count(*), max(id) from messages
                  where remote is not null group by coalesce(local, ''), remote""")
    db.execute("""create trigger conversations_insert after insert on messages
                  when new.remote is not null begin
                      insert into conversations values (coalesce(new.local, ''), new.remote,
                                                        1, new.id)
                      on conflict (local, remote) do update
                      set messages = messages + 1, last_id = excluded.last_id;
                  end""")
    db.execute("""create trigger conversations_delete after delete on messages
                  when old.remote is not null begin
                      update conversations set messages = messages - 1
                      where local = coalesce(old.local, '') and remote = old.remote;
                      delete from conversations where local = coalesce(old.local, '')
                      and remote = old.remote and messages <= 0;
                  end""")
    db.execute("""
        create table message_exchanges (
            id integer primary key,
            message_id integer not null references messages (id) on delete cascade,
            at text not null,
            kind text not null,
            request text not null default '{}',
            response text not null default '{}'
        )""")
    db.execute("create index message_exchanges_message on message_exchanges (message_id, id)")


@core()
def m015_status_callbacks(db: Database) -> None:
    # Callbacks to the sender's application (issue 16 points 3-5, host.callbacks): one
    # row per request due for a status change, built when the change is recorded (in
    # its transaction): ``kind`` status (a send's status_callback: signed JSON POST),
    # kannel or jasmin (a compatible send's dlr-url, host.compat). The worker sends it
    # until delivered or dead. Times to attempt are Unix seconds (as the outbox's).
    # (m015 and m016 were two queues; merged here before any release.)
    db.execute("""
        create table callback_deliveries (
            id integer primary key autoincrement,
            message_id integer not null,
            event_id integer not null,
            kind text not null check (kind in ('status', 'kannel', 'jasmin')),
            method text not null check (method in ('GET', 'POST')),
            url text not null,
            headers text not null default '{}',
            body text,
            status text not null,  -- pending, delivered, dead
            attempts integer not null default 0,
            replays integer not null default 0,
            next_attempt_at real,
            last_status integer,
            last_error text,
            created_at text not null,
            updated_at text not null
        )""")
    db.execute("create index callback_deliveries_due on callback_deliveries "
               "(status, next_attempt_at)")
    db.execute("create index callback_deliveries_updated on callback_deliveries (updated_at)")
    db.execute("create index callback_deliveries_message on callback_deliveries "
               "(message_id, id)")
