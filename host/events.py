"""Status changes as a stream (SPEC O8): subscribers get every committed change.

The default plugin ``host.defaults.events`` publishes each ``message_status_changed``
here; ``GET /api/events`` streams them as Server-Sent Events. A subscriber that does
not keep up loses the oldest events (its queue is bounded) and is told how many.
Each event carries the id of its stored row (``message_events``), so a client that
reconnects gets what it missed from the database (:func:`stored_after`).

On PostgreSQL (several nodes) the bus is fed from the database instead: the node's
follower (host.follow) publishes the rows of ``message_events`` committed by any node,
in id order, once each (:func:`committed_after`); the hook only wakes it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlite_utils import Database

QUEUE_SIZE = 1000


class Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        for sub in self._subscribers:
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


_EVENTS = (
    "select e.id, e.message_id, m.direction, m.broker, m.local, m.remote, "
    "(select p.status from message_events p where p.message_id = e.message_id "
    "and p.id < e.id order by p.id desc limit 1) as old, e.status as new, e.at, "
    "e.source, e.detail from message_events e join messages m on m.id = e.message_id ")


def _shaped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["detail"] = json.loads(row["detail"] or "{}")
    return rows


def committed_after(db: Database, last_id: int, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` stored status events after ``last_id``, oldest first, shaped
    as the published ones: what the cluster's follower publishes (host.follow)."""
    return _shaped(list(db.query(_EVENTS + "where e.id > ? order by e.id limit ?",
                                 [last_id, limit])))


def stored_after(db: Database, last_id: int, limit: int
                 ) -> tuple[list[dict[str, Any]], int, int]:
    """The newest ``limit`` stored status events after ``last_id``, oldest first, shaped
    as the published ones (``old`` is the status of the message's event before); how
    many event ids between ``last_id`` and the first of them were left out; and the
    newest stored event id (the stream sends live events after it only).

    Reads at most ``limit + 1`` rows from the top of the primary key, each with two
    indexed lookups (its message, its previous event): cheap at any table size."""
    top = db.execute("select coalesce(max(id), 0) from message_events").fetchone()[0]
    rows = list(db.query(_EVENTS + "where e.id > ? and e.id <= ? order by e.id desc limit ?",
                         [last_id, top, limit + 1]))
    left_out = 0
    if len(rows) > limit:
        rows = rows[:limit]
        left_out = (rows[-1]["id"] if rows else top + 1) - last_id - 1
    return _shaped(rows)[::-1], left_out, int(top)
