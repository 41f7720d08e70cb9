"""The rows of interactions: stored (an SMS queued, or joining the open interaction
of its texter), read one by one, and shown as JSON.

States (docs/sinks-queue-chat.md): ``waiting`` in its queue, ``offered`` to one agent
(``assigned_to``, until ``offer_deadline``), ``connected`` to the agent that accepted or
picked it up, ``disconnected`` (final).
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from host.api import ApiError, Message

from .tx import Tx

STATES = ("waiting", "offered", "connected", "disconnected")
OPEN_STATES = ("waiting", "offered", "connected")
FINAL_STATES = ("disconnected",)
PREVIEW = 160


def get(db: Database, interaction: int) -> dict[str, Any]:
    """The row of ``interaction``; 404 when there is none."""
    rows = list(db.query("select * from queue_interactions where id = ?", [interaction]))
    if not rows:
        raise ApiError(404, "not_found", f"no interaction {interaction}")
    return rows[0]


def open_of(db: Database, local: str, remote: str) -> dict[str, Any] | None:
    """The open interaction of a texter (``remote``) with our number ``local``."""
    rows = list(db.query(
        "select * from queue_interactions where local = ? and remote = ? and state in "
        "('waiting', 'offered', 'connected') order by id desc limit 1", [local, remote]))
    return rows[0] if rows else None


def enqueue(tx: Tx, message: Message, queue: str, kind: str, route: str
            ) -> tuple[int, str]:
    """The interaction ``message`` starts or joins: (its id, "queued" | "joined" |
    "already" for a message routed again)."""
    db = tx.db
    row = db.execute("select interaction_id from queue_messages where message_id = ?",
                     [message.id]).fetchone()
    if row is not None:
        return int(row[0]), "already"
    found = open_of(db, message.local or "", message.remote or "")
    if found is not None:
        link(tx, found["id"], message.id, "in", message.created_at)
        if found["assigned_to"]:
            tx.feed("message", found["assigned_to"], found["queue"], message_event(
                found["id"], message.id, "in", message.body, message.status,
                message.created_at))
        db.conn.execute("update queue_interactions set updated_at = ? where id = ?",
                        [tx.now, found["id"]])
        return int(found["id"]), "joined"
    now = tx.now
    # Arrival order: an interaction waits from when its SMS arrived, so messages routed
    # side by side (different senders) keep the order they came in.
    cursor = db.conn.execute(
        "insert into queue_interactions (queue, kind, state, priority, message_id, broker, "
        "account, local, remote, route, created_at, queued_at, updated_at) values (?, ?, "
        "'waiting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [queue, kind, tx.priorities.get(route, 0), message.id, message.broker,
         message.account, message.local or "", message.remote or "", route, now,
         message.created_at, now])
    interaction = int(cursor.lastrowid or 0)
    link(tx, interaction, message.id, "in", message.created_at)
    tx.event(interaction, "waiting", queue, "router", {"message": message.id})
    return interaction, "queued"


def link(tx: Tx, interaction: int, message: int, direction: str, at: str) -> None:
    tx.db.conn.execute("insert or ignore into queue_messages (message_id, interaction_id, "
                       "direction, at) values (?, ?, ?, ?)",
                       [message, interaction, direction, at])
    if direction == "out":
        tx.watch.add(message)


def message_event(interaction: int, message: int, direction: str, text: str | None,
                  status: str, at: str) -> dict[str, Any]:
    return {"interaction": interaction, "message": {
        "id": message, "direction": direction, "text": text, "status": status, "at": at}}


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """An interaction as lists show it."""
    offered = row["state"] == "offered"
    return {"id": row["id"], "queue": row["queue"], "kind": row["kind"],
            "state": row["state"], "local": row["local"], "remote": row["remote"],
            "agent": row["assigned_to"], "priority": row["priority"],
            "offer": {"agent": row["assigned_to"], "deadline": row["offer_deadline"]}
            if offered else None,
            "queued_at": row["queued_at"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "connected_at": row["connected_at"],
            "ended_at": row["ended_at"], "end_reason": row["end_reason"],
            "route": row["route"], "broker": row["broker"], "account": row["account"]}


def detail(db: Database, row: dict[str, Any]) -> dict[str, Any]:
    """An interaction with its messages, events, notes and the last offer's why."""
    interaction = row["id"]
    messages = [{"id": m["id"], "direction": m["direction"], "text": m["body"],
                 "status": m["status"], "at": m["at"]} for m in db.query(
        "select q.message_id as id, q.direction, q.at, m.body, m.status from queue_messages "
        "q left join messages m on m.id = q.message_id where q.interaction_id = ? "
        "order by q.at, q.message_id", [interaction])]
    events = [{"at": e["at"], "state": e["state"], "queue": e["queue"], "actor": e["actor"],
               "detail": json.loads(e["detail"])} for e in db.query(
        "select * from queue_events where interaction_id = ? order by id", [interaction])]
    notes = [{"at": n["at"], "author": n["author"], "text": n["text"]} for n in db.query(
        "select * from queue_notes where interaction_id = ? order by id", [interaction])]
    offers = [{"agent": o["agent"], "offered_at": o["offered_at"], "deadline": o["deadline"],
               "outcome": o["outcome"], "ended_at": o["ended_at"],
               "why": json.loads(o["why"])} for o in db.query(
        "select * from queue_offers where interaction_id = ? order by id", [interaction])]
    return {**summary(row), "messages": messages, "events": events, "notes": notes,
            "offers": offers, "why": offers[-1]["why"] if offers else None}


def preview(db: Database, interaction: int) -> str:
    """The text of the texter's last SMS in ``interaction`` (shortened)."""
    row = db.execute("select m.body from queue_messages q join messages m on m.id = "
                     "q.message_id where q.interaction_id = ? and q.direction = 'in' "
                     "order by q.at desc, q.message_id desc limit 1",
                     [interaction]).fetchone()
    text = str(row[0] or "") if row is not None else ""
    return text if len(text) <= PREVIEW else text[:PREVIEW - 1] + "…"


def end(tx: Tx, row: dict[str, Any], reason: str, actor: str) -> None:
    """``row`` disconnected (final)."""
    tx.db.conn.execute("update queue_interactions set state = 'disconnected', ended_at = ?, "
                       "end_reason = ?, offer_deadline = null, updated_at = ? where id = ?",
                       [tx.now, reason, tx.now, row["id"]])
    tx.event(row["id"], "disconnected", row["queue"], actor, {"reason": reason},
             agent=row["assigned_to"])
