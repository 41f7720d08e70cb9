"""The chat sink's tables: the ``smshost-chat`` migrations."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("smshost-chat")


@migrations()
def m001_conversations(db: Database) -> None:
    db.execute("""
        create table chat_conversations (
            id integer primary key,
            local text not null,
            remote text not null,
            broker text,
            account text,
            channel text not null default '',
            state text not null,
            started_at text not null,
            last_activity text not null,
            party_active_at text not null,
            updated_at text not null,
            closed_at text,
            close_reason text,
            assigned_to text,
            messages_in integer not null default 0,
            messages_out integer not null default 0,
            attrs text not null default '{}'
        )""")
    # At most one active conversation per pair: the one an SMS of the pair joins.
    db.execute("create unique index chat_conversations_active on chat_conversations "
               "(local, remote) where state != 'closed'")
    db.execute("create index chat_conversations_remote on chat_conversations (remote, id)")
    db.execute("create index chat_conversations_state on chat_conversations "
               "(state, party_active_at)")
    db.execute("create index chat_conversations_closed on chat_conversations (closed_at) "
               "where closed_at is not null")
    # The messages of each conversation, both ways; a message is in one conversation.
    db.execute("""
        create table chat_messages (
            message_id integer primary key references messages (id) on delete cascade,
            conversation_id integer not null
                references chat_conversations (id) on delete cascade,
            direction text not null,
            at text not null
        )""")
    db.execute("create index chat_messages_conversation on chat_messages "
               "(conversation_id, at, message_id)")


@migrations()
def m002_list_indexes(db: Database) -> None:
    # The conversations API filters by state and by our number: read through these in
    # id order, a filter matching few or none costs a seek, not a scan or a sort.
    db.execute("create index chat_conversations_listed on chat_conversations (state, id)")
    db.execute("create index chat_conversations_local on chat_conversations "
               "(local, state, id)")


@migrations()
def m003_idle_timers(db: Database) -> None:
    # The idle timers (SPEC S2): the route whose override applies, when the conversation
    # became idle; each timer's query reads an index in deadline order.
    db.execute("alter table chat_conversations add column route text not null default ''")
    db.execute("alter table chat_conversations add column idle_at text")
    db.execute("create index chat_conversations_idle on chat_conversations "
               "(state, idle_at) where idle_at is not null")
