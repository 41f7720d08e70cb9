"""The durable queue of status callbacks (table ``callback_deliveries``, m015): one row
per status change of a message that named a ``status_callback``, pending until it is
delivered (2xx) or dead (a refusal, or the last attempt failed); a dead one is
replayed through the API. Functions run inside a store read or write."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from host.ledger import Change
from host.models import utcnow

STATUSES = ("pending", "delivered", "dead")
COLUMNS = ("id, message_id, event_id, url, status, attempts, replays, next_attempt_at, "
           "last_status, last_error, created_at, updated_at")


def payload(change: Change) -> str:
    """The JSON body of one status change (``delivery_id`` is added when it is sent)."""
    message, event = change.message, change.event
    detail = event.detail or {}
    return json.dumps({
        "event": "message.status", "message_id": message.id, "status": event.status,
        "old_status": change.old, "at": event.at, "error": detail.get("error"),
        "error_code": detail.get("error_code"), "broker": message.broker,
        "account": message.account, "broker_message_id": message.broker_message_id,
        "from": message.local, "to": message.remote, "source": event.source,
    }, ensure_ascii=False, separators=(",", ":"))


def enqueue(db: Any, change: Change, url: str, now: float) -> int | None:
    """Queue ``change`` for ``url``; its id (None: that event was queued already)."""
    stamp = utcnow()
    cur = db.conn.execute(
        "insert or ignore into callback_deliveries (message_id, event_id, url, payload, "
        "status, next_attempt_at, created_at, updated_at) "
        "values (?, ?, ?, ?, 'pending', ?, ?, ?)",
        [change.message.id, change.event.id, url, payload(change), now, stamp, stamp])
    return int(cur.lastrowid or 0) if cur.rowcount == 1 else None


def due(db: Any, now: float, limit: int, skip: set[int]) -> tuple[list[dict[str, Any]],
                                                                   float | None]:
    """Up to ``limit`` pending rows due at ``now`` (not those in ``skip``: under way),
    and when the next one after them is due."""
    rows = list(db.query(
        "select * from callback_deliveries where status = 'pending' and "
        "next_attempt_at <= ? order by next_attempt_at, id limit ?",
        [now, limit + len(skip)]))
    nxt = db.execute("select min(next_attempt_at) from callback_deliveries where "
                     "status = 'pending' and next_attempt_at > ?", [now]).fetchone()[0]
    return [r for r in rows if r["id"] not in skip][:limit], nxt


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended: ``delivered``, ``retry`` (at ``next_at``) or ``dead``."""

    outcome: str
    http_status: int | None
    error: str | None
    next_at: float | None = None


def record(db: Any, row: dict[str, Any], outcome: Outcome) -> bool:
    """Store an attempt's outcome; False when the row changed meanwhile (replayed)."""
    status = "pending" if outcome.outcome == "retry" else outcome.outcome
    cur = db.conn.execute(
        "update callback_deliveries set status = ?, attempts = attempts + 1, "
        "next_attempt_at = ?, last_status = ?, last_error = ?, updated_at = ? "
        "where id = ? and status = 'pending' and replays = ?",
        [status, outcome.next_at, outcome.http_status, outcome.error, utcnow(), row["id"],
         row["replays"]])
    return bool(cur.rowcount == 1)


def replay(db: Any, delivery_id: int, now: float) -> dict[str, Any] | None:
    """A dead letter pending again, from its first attempt; None when it is not dead."""
    cur = db.conn.execute(
        "update callback_deliveries set status = 'pending', attempts = 0, "
        "replays = replays + 1, next_attempt_at = ?, updated_at = ? "
        "where id = ? and status = 'dead'", [now, utcnow(), delivery_id])
    return row_of(db, delivery_id) if cur.rowcount == 1 else None


def row_of(db: Any, delivery_id: int) -> dict[str, Any] | None:
    rows = list(db.query(f"select {COLUMNS} from callback_deliveries where id = ?",
                         [delivery_id]))
    return rows[0] if rows else None


def listed(db: Any, status: str | None, message_id: int | None, before: int | None,
           limit: int) -> list[dict[str, Any]]:
    """Deliveries newest first, filtered by status and message."""
    where, args = [], []
    for clause, value in (("status = ?", status), ("message_id = ?", message_id),
                          ("id < ?", before)):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = f"select {COLUMNS} from callback_deliveries"
    if where:
        sql += " where " + " and ".join(where)
    return list(db.query(sql + " order by id desc limit ?", [*args, limit]))
