"""The feed: every event of the desk's live streams, stored (``queue_feed``), so a
stream is one read of the rows after the last id it sent, live or resumed with
``Last-Event-ID`` alike; a :class:`Notifier` wakes the streams after each commit.

A row has a ``kind`` (offer, offer_withdrawn, interaction, message, status, queue), the
``agent`` it is for (None: a queue's), the ``queue`` it is about and its ``data``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from sqlite_utils import Database

SUPERVISOR_KINDS = ("queue", "status")


def add(db: Database, at: str, kind: str, agent: str | None, queue: str | None,
        data: dict[str, Any]) -> None:
    db.conn.execute("insert into queue_feed (at, kind, agent, queue, data) values "
                    "(?, ?, ?, ?, ?)", [at, kind, agent, queue, json.dumps(data)])


def top(db: Database) -> int:
    return int(db.execute("select coalesce(max(id), 0) from queue_feed").fetchone()[0])


def for_agent(db: Database, last: int, agent: str, queues: Sequence[str],
              limit: int) -> list[dict[str, Any]]:
    """The rows after ``last`` for ``agent``: its own, and the lengths of ``queues``."""
    marks = ", ".join("?" * len(queues)) or "null"  # "in ()" is SQLite's only
    rows = db.execute(
        "select id, kind, data from queue_feed where id > ? and (agent = ? or "
        f"(agent is null and kind = 'queue' and queue in ({marks}))) order by id limit ?",
        [last, agent, *queues, limit]).fetchall()
    return [_event(row) for row in rows]


def for_supervisors(db: Database, last: int, limit: int) -> list[dict[str, Any]]:
    """Queue lengths and agents' statuses after ``last``."""
    rows = db.execute(
        "select id, kind, data from queue_feed where id > ? and kind in ('queue', 'status') "
        "order by id limit ?", [last, limit]).fetchall()
    return [_event(row) for row in rows]


def _event(row: Sequence[Any]) -> dict[str, Any]:
    return {"id": int(row[0]), "event": row[1], "data": json.loads(row[2])}


class Notifier:
    """Wakes every waiter at once: take :meth:`waiter` before reading, wait on it after."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def waiter(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()
