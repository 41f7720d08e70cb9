"""The durable queue of callbacks to the sender's application (table
``callback_deliveries``, m015): one row per request a status change asks for, holding
what to send (method, URL, headers, body) and its ``kind``: ``status`` (a send's
``status_callback``: the change as JSON, signed when sent), ``kannel`` or ``jasmin`` (a
compatible send's ``dlr-url``, host.compat.callbacks). A row is pending until it is
delivered (2xx) or dead (a refusal, or the last attempt failed); a dead one is replayed
through the API. Functions run inside a store read or write."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from host.models import utcnow
from host.sqlwhere import where

if TYPE_CHECKING:
    from host.callbacks.attempt import Outcome
    from host.ledger import Change

KINDS = ("status", "kannel", "jasmin")
STATUSES = ("pending", "delivered", "dead")
COLUMNS = ("id, message_id, event_id, kind, method, url, status, attempts, replays, "
           "next_attempt_at, last_status, last_error, created_at, updated_at")
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass(frozen=True, slots=True)
class Request:
    """One callback as it is queued: ``kind``, and what to send."""

    kind: str
    method: str
    url: str
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def wanted(change: Change) -> bool:
    """Whether ``change``'s message asked for any callback (a dict lookup or three)."""
    attrs = change.message.attrs
    return change.message.direction == "out" and (
        "status_callback" in attrs or "dlr" in attrs or "merged" in attrs)


def requests_for(change: Change) -> list[Request]:
    """The callbacks ``change`` asks for: its message's ``status_callback`` and the
    ``dlr-url`` of a compatible send (and of those consolidated into it)."""
    if not wanted(change):
        return []
    message = change.message
    found: list[Request] = []
    url = message.attrs.get("status_callback")
    if isinstance(url, str):
        found.append(Request("status", "POST", url, payload(change), JSON))
    if "dlr" in message.attrs or "merged" in message.attrs:
        from host.compat.callbacks import calls_for

        found += [Request(c.kind, c.method, c.url, c.body, FORM if c.body else {})
                  for c in calls_for(message, change.old, message.status, change.event)]
    return found


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


def enqueue(db: Any, change: Change, now: float = 0.0) -> int:
    """Queue the callbacks ``change`` asks for, due at ``now`` (0: at once); how many."""
    found = requests_for(change)
    if not found:
        return 0
    stamp = utcnow()
    db.conn.executemany(
        "insert into callback_deliveries (message_id, event_id, kind, method, url, headers, "
        "body, status, next_attempt_at, created_at, updated_at) "
        "values (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
        [(change.message.id, change.event.id, r.kind, r.method, r.url,
          json.dumps(r.headers), r.body, now, stamp, stamp) for r in found])
    return len(found)


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
    """Deliveries of every kind newest first, filtered by status and message."""
    condition, args = where((("status = ?", status), ("message_id = ?", message_id),
                             ("id < ?", before)))
    return list(db.query(f"select {COLUMNS} from callback_deliveries{condition} "
                         "order by id desc limit ?", [*args, limit]))
