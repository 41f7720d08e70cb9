"""The conversations' rows: joining, linking, closing, idle transitions and reading.

Every function runs inside one ``host.store`` transaction and takes ``now``, the
stored text of the sink's clock, so the idle timers count on one clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlite_utils import Database

from host.api import Message

Key = tuple[str, str]
STATES = ("open", "idle", "closed")
BATCH = 100  # conversations one idle query moves at most (each tick is bounded)

def list_query(state: str | None, local: str | None, remote: str | None,
                before: int | None) -> tuple[str, list[Any]]:
    """The conversations of the filters newest first, read through an index in id
    order: a party's in chat_conversations_remote; our number's one arm per state in
    chat_conversations_local (merged by id); a state's in chat_conversations_listed.
    A page reads the rows it lists, however few match."""
    tail = [("id < ?", before)] if before is not None else []
    if remote is not None:  # one party: few conversations; the rest are filters
        arms = [[("remote", remote), ("+local", local), ("+state", state)]]
    elif local is not None:
        arms = [[("local", local), ("state", s)]
                for s in ((state,) if state is not None else STATES)]
    else:
        arms = [[("state", state)]]
    selects, args = [], []
    for arm in arms:
        terms = [(f"{c} = ?", v) for c, v in arm if v is not None] + tail
        where = " and ".join(t for t, _ in terms)
        selects.append("select * from chat_conversations" + (f" where {where}" if where
                                                              else ""))
        args += [v for _, v in terms]
    return " union all ".join(selects) + " order by id desc limit ?", args



MESSAGES = """
    select m.* from chat_messages c join messages m on m.id = c.message_id
    where c.conversation_id = ? order by c.at, c.message_id"""
_ACTIVE = "select id, state from chat_conversations where local = ? and remote = ? " \
    "and state != 'closed'"
_SHOWN = ("id", "local", "remote", "broker", "account", "channel", "route", "state",
          "started_at", "last_activity", "party_active_at", "idle_at", "closed_at",
          "close_reason", "assigned_to", "messages_in", "messages_out")


def join(db: Database, message: Message, key: Key, channel: str, route: str,
         now: str) -> tuple[int, str | None]:
    """The conversation ``message`` joins (opening one if needed) and its state before
    (None: opened now, "open" too when it joined already); once per message. An idle
    conversation the texter writes to is open again."""
    conn = db.conn
    row = conn.execute("select conversation_id from chat_messages where message_id = ?",
                       [message.id]).fetchone()
    if row is not None:  # routed again after a crash: it joined already
        return int(row[0]), "open"
    row = conn.execute(_ACTIVE, key).fetchone()
    if row is not None:
        conversation, before = int(row[0]), str(row[1])
        conn.execute("update chat_conversations set state = 'open', idle_at = null, "
                     "last_activity = ?, party_active_at = ?, updated_at = ?, "
                     "messages_in = messages_in + 1 where id = ?",
                     [now, now, now, conversation])
    else:
        cursor = conn.execute(
            "insert into chat_conversations (local, remote, broker, account, channel, route, "
            "state, started_at, last_activity, party_active_at, updated_at, messages_in) "
            "values (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, 1)",
            [*key, message.broker, message.account, channel, route, now, now, now, now])
        conversation, before = int(cursor.lastrowid or 0), None
    conn.execute("insert into chat_messages (message_id, conversation_id, direction, at) "
                 "values (?, ?, 'in', ?)", [message.id, conversation, message.created_at])
    return conversation, before


def link_out(db: Database, message: Message, key: Key, now: str) -> None:
    """Link an outbound message to the active conversation of its pair, if any."""
    row = db.conn.execute(_ACTIVE, key).fetchone()
    if row is not None:
        link(db, message.id, int(row[0]), message.created_at, now)


def link(db: Database, message_id: int, conversation: int, at: str, now: str) -> None:
    """Link an outbound message to ``conversation`` (once)."""
    inserted = db.conn.execute(
        "insert into chat_messages (message_id, conversation_id, direction, at) "
        "values (?, ?, 'out', ?) on conflict (message_id) do nothing",
        [message_id, conversation, at]).rowcount
    if inserted:
        db.conn.execute("update chat_conversations set last_activity = ?, updated_at = ?, "
                        "messages_out = messages_out + 1 where id = ?",
                        [now, now, conversation])


def close_row(db: Database, conversation: int, reason: str, now: str,
          idle_since: str | None = None) -> dict[str, Any] | None:
    """Close a conversation (with ``idle_since``: only if it is still idle since then);
    its row before, or None when it is unknown, closed already or no longer idle."""
    row = _row(db, conversation)
    if row is None or row["state"] == "closed":
        return None
    if idle_since is not None and (row["state"] != "idle" or row["idle_at"] != idle_since):
        return None
    db.conn.execute("update chat_conversations set state = 'closed', closed_at = ?, "
                    "close_reason = ?, updated_at = ? where id = ?",
                    [now, reason, now, conversation])
    return row


def make_idle(db: Database, conversation: int, party_active_at: str,
              now: str) -> dict[str, Any] | None:
    """Make an open conversation idle if the texter has not written since
    ``party_active_at``; its row before, or None."""
    row = _row(db, conversation)
    if row is None or row["state"] != "open" or row["party_active_at"] != party_active_at:
        return None
    db.conn.execute("update chat_conversations set state = 'idle', idle_at = ?, "
                    "updated_at = ? where id = ?", [now, now, conversation])
    return row


def due(db: Database, state: str, cutoff: str, routes: Sequence[str],
        overridden: bool) -> list[dict[str, Any]]:
    """At most BATCH conversations in ``state`` (open or idle) whose timer started at
    or before ``cutoff`` (party_active_at, idle_at), oldest first: of the ``routes``
    given, or (``overridden`` False) of every route but them."""
    column = "party_active_at" if state == "open" else "idle_at"
    marks = ", ".join("?" * len(routes))
    if not routes:  # "in ()" is SQLite's only
        if overridden:
            return []
        where = "1 = 1"
    else:
        where = f"route in ({marks})" if overridden else f"route not in ({marks})"
    return list(db.query(
        f"select * from chat_conversations where state = ? and {column} <= ? "
        f"and {where} order by {column} limit ?", [state, cutoff, *routes, BATCH]))


def last_inbound(db: Database, conversation: int) -> int | None:
    """The id of the texter's last SMS in ``conversation`` (what a notice answers)."""
    row = db.conn.execute(
        "select message_id from chat_messages where conversation_id = ? and direction = 'in' "
        "order by at desc, message_id desc limit 1", [conversation]).fetchone()
    return int(row[0]) if row is not None else None


def _row(db: Database, conversation: int) -> dict[str, Any] | None:
    found = list(db.query("select * from chat_conversations where id = ?", [conversation]))
    return found[0] if found else None


def conversation_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in _SHOWN}


def message_json(row: dict[str, Any]) -> dict[str, Any]:
    inbound = row["direction"] == "in"
    return {"id": row["id"], "direction": row["direction"],
            "from": row["remote"] if inbound else row["local"],
            "to": row["local"] if inbound else row["remote"],
            "body": row["body"], "status": row["status"], "created_at": row["created_at"],
            "broker": row["broker"], "account": row["account"]}


