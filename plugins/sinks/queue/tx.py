"""One write transaction of the desk: the database, the time it runs at, the ACD
settings, and what it touched (queues, agents), whose feed rows :meth:`Tx.finish`
writes before the commit.

Every change of an interaction, an offer or an agent runs in one :class:`Tx`, in one
store write (host.store serializes them): a decision sees every earlier one committed
and none half done. A write may run again (a neighbour in its batch failed), so a Tx
keeps nothing outside the database but what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from host.api import from_epoch

from . import directory, feed
from .settings import Acd


@dataclass
class Tx:
    db: Database
    epoch: float  # now, Unix seconds (the sink's clock)
    defaults: Acd
    priorities: Mapping[str, int]
    queues: set[str] = field(default_factory=set)  # whose length may have changed
    agents: set[str] = field(default_factory=set)  # whose status or load changed
    watch: set[int] = field(default_factory=set)  # outbound messages to follow
    _acd: dict[str, Acd] = field(default_factory=dict)

    @property
    def now(self) -> str:
        return from_epoch(self.epoch)

    def later(self, seconds: float) -> str:
        return from_epoch(self.epoch + seconds)

    def before(self, seconds: float) -> str:
        return from_epoch(self.epoch - seconds)

    def acd(self, queue: str) -> Acd:
        """The ACD settings of ``queue``: the defaults with its workgroup's overrides."""
        if queue not in self._acd:
            row = self.db.execute("select settings from queue_settings where workgroup = ?",
                                  [queue]).fetchone()
            self._acd[queue] = self.defaults.with_overrides(
                json.loads(row[0]) if row is not None else {})
        return self._acd[queue]

    def event(self, interaction: int, state: str, queue: str, actor: str,
              detail: dict[str, Any], agent: str | None = None) -> None:
        """An interaction's history row, and its ``interaction`` feed event to ``agent``."""
        self.db.conn.execute(
            "insert into queue_events (interaction_id, at, state, queue, actor, detail) "
            "values (?, ?, ?, ?, ?, ?)",
            [interaction, self.now, state, queue, actor, json.dumps(detail)])
        if agent is not None:
            self.feed("interaction", agent, queue, {
                "id": interaction, "state": state, "queue": queue, "actor": actor,
                "detail": detail})
        self.queues.add(queue)

    def feed(self, kind: str, agent: str | None, queue: str | None,
             data: dict[str, Any]) -> None:
        feed.add(self.db, self.now, kind, agent, queue, data)

    def finish(self) -> None:
        """The ``status`` events of the agents touched and the ``queue`` events of the
        queues touched."""
        for login in sorted(self.agents):
            self.feed("status", login, None, agent_state(self, login))
        for queue in sorted(self.queues):
            self.feed("queue", None, queue, queue_state(self, queue))


def agent_state(tx: Tx, login: str) -> dict[str, Any]:
    """An agent's status, load and capacity (``GET /api/agents/me`` without offers)."""
    row = agent_row(tx.db, login)
    groups = directory.workgroups_of(tx.db, login)
    return {"login": login, "display_name": directory.display_name(tx.db, login),
            "status": row["status"] if row else "offline",
            "reason": row["reason"] if row else "",
            "since": row["status_since"] if row else None,
            "capacity": capacity(tx, login, groups[0] if groups else login),
            "load": load(tx.db, login),
            "wrapup_until": row["wrapup_until"] if row else None, "workgroups": groups}


def agent_row(db: Database, login: str) -> dict[str, Any] | None:
    rows = list(db.query("select * from queue_agents where login = ?", [login]))
    return rows[0] if rows else None


def load(db: Database, login: str) -> int:
    return int(db.execute("select count(*) from queue_interactions where assigned_to = ? "
                          "and state in ('offered', 'connected')", [login]).fetchone()[0])


def capacity(tx: Tx, login: str, queue: str) -> int:
    """The agent's own capacity when set, else its queue's."""
    row = tx.db.execute("select capacity from queue_agents where login = ?",
                        [login]).fetchone()
    if row is not None and row[0] is not None:
        return int(row[0])
    return tx.acd(queue).capacity


def queue_state(tx: Tx, queue: str) -> dict[str, Any]:
    """A queue's length, its longest wait and its agents by status."""
    waiting, oldest = tx.db.execute(
        "select count(*), min(queued_at) from queue_interactions where queue = ? and "
        "state = 'waiting'", [queue]).fetchone()
    kind = directory.kind_of(tx.db, queue)
    members = directory.candidates(tx.db, queue, kind[0]) if kind else []
    statuses = {"available": 0, "away": 0, "offline": 0}
    for login in members:
        row = agent_row(tx.db, login)
        statuses[row["status"] if row else "offline"] += 1
    return {"queue": queue, "waiting": int(waiting), "oldest_queued_at": oldest,
            "longest_wait": age(tx.epoch, oldest) if oldest else None, "agents": statuses}


def age(epoch: float, stamp: str) -> float:
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return round(max(0.0, epoch - then), 3)
