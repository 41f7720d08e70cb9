"""The tables of the queue sink (migration set ``smshost-queue``).

m001: interactions and their events (issue 12). m002: the agent desk (issue 14): agents,
offers with their "why this agent" record, notes, the messages of each interaction,
per-workgroup ACD settings, and the feed the live streams read.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("smshost-queue")


@migrations()
def m001_interactions(db: Database) -> None:
    db.execute("""
        create table queue_interactions (
            id integer primary key,
            queue text not null,
            state text not null,
            message_id integer references messages (id) on delete set null,
            broker text,
            account text,
            local text not null default '',
            remote text not null default '',
            route text,
            created_at text not null,
            queued_at text not null,
            updated_at text not null,
            assigned_to text,
            assigned_at text,
            connected_at text,
            ended_at text,
            end_reason text,
            attrs text not null default '{}'
        )""")
    # One interaction per SMS: a message routed again (after a crash) finds its own.
    db.execute("create unique index queue_interactions_message on queue_interactions "
               "(message_id)")
    db.execute("create index queue_interactions_waiting on queue_interactions "
               "(queue, state, queued_at, id)")
    db.execute("create index queue_interactions_user on queue_interactions "
               "(assigned_to, state) where assigned_to is not null")
    db.execute("create index queue_interactions_party on queue_interactions "
               "(local, remote, state)")
    db.execute("create index queue_interactions_ended on queue_interactions (ended_at) "
               "where ended_at is not null")
    db.execute("""
        create table queue_events (
            id integer primary key,
            interaction_id integer not null
                references queue_interactions (id) on delete cascade,
            at text not null,
            state text not null,
            queue text not null,
            actor text not null,
            detail text not null default '{}'
        )""")
    db.execute("create index queue_events_interaction on queue_events (interaction_id, id)")


@migrations()
def m002_agent_desk(db: Database) -> None:
    for column in ("kind text not null default 'workgroup'",
                   "priority integer not null default 0", "offer_deadline text"):
        db.execute(f"alter table queue_interactions add column {column}")
    db.execute("create index queue_interactions_line on queue_interactions "
               "(queue, state, priority desc, queued_at, id)")
    db.execute("create index queue_interactions_offers on queue_interactions "
               "(offer_deadline) where offer_deadline is not null")
    db.execute("""
        create table queue_agents (
            login text primary key collate nocase,
            status text not null default 'offline',
            reason text not null default '',
            status_since text not null,
            capacity integer,
            wrapup_until text,
            idle_since text,
            last_offer_at text,
            missed integer not null default 0,
            updated_at text not null
        )""")
    db.execute("create index queue_agents_wrapup on queue_agents (wrapup_until) "
               "where wrapup_until is not null")
    db.execute("""
        create table queue_offers (
            id integer primary key,
            interaction_id integer not null
                references queue_interactions (id) on delete cascade,
            agent text not null collate nocase,
            offered_at text not null,
            deadline text not null,
            outcome text not null default 'pending',
            ended_at text,
            why text not null default '{}'
        )""")
    db.execute("create index queue_offers_interaction on queue_offers "
               "(interaction_id, agent, ended_at)")
    db.execute("""
        create table queue_notes (
            id integer primary key,
            interaction_id integer not null
                references queue_interactions (id) on delete cascade,
            at text not null,
            author text not null,
            text text not null
        )""")
    db.execute("create index queue_notes_interaction on queue_notes (interaction_id, id)")
    db.execute("""
        create table queue_messages (
            message_id integer primary key,
            interaction_id integer not null
                references queue_interactions (id) on delete cascade,
            direction text not null,
            at text not null
        )""")
    db.execute("create index queue_messages_interaction on queue_messages "
               "(interaction_id, at)")
    db.execute("""
        create table queue_settings (
            workgroup text primary key collate nocase,
            settings text not null default '{}',
            updated_at text not null
        )""")
    db.execute("""
        create table queue_feed (
            id integer primary key,
            at text not null,
            kind text not null,
            agent text collate nocase,
            queue text,
            data text not null
        )""")
    db.execute("create index queue_feed_agent on queue_feed (agent, id) "
               "where agent is not null")
    db.execute("create index queue_feed_kind on queue_feed (kind, id)")
    db.execute("create index queue_feed_at on queue_feed (at)")
