"""Reads of the desk (no change): queues and their lines, agents, interaction lists.
Each runs on a read-only connection through a :class:`~.tx.Tx` (for the ACD settings
and the clock), never writing."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from . import directory, rows
from .actions import Actor
from .settings import QueueDefinition
from .tx import Tx, age, agent_state

_WAITING = """
    select i.*, m.body as body
    from queue_interactions i left join messages m on m.id = i.message_id
    where i.queue = ? and i.state = 'waiting'
    order by i.priority desc, i.queued_at, i.id limit ?"""


def queue_names(db: Database, configured: list[QueueDefinition]) -> list[tuple[str, str]]:
    """(name, kind) of every queue: sinks.toml's in order, then the other workgroups."""
    out: list[tuple[str, str]] = [(q.name, q.kind) for q in configured]
    seen = {name.lower() for name, _ in out}
    out += [(w, "workgroup") for w in directory.workgroups(db) if w.lower() not in seen]
    return out


def describe(tx: Tx, name: str, kind: str, configured: QueueDefinition | None
             ) -> dict[str, Any]:
    members = directory.members(tx.db, name) if kind == "workgroup" else [name]
    if kind == "workgroup" and not members and configured is not None:
        members = list(configured.users)
    return {"name": name, "kind": kind, "members": members,
            "account": (configured.account or None) if configured else None,
            "settings": tx.acd(name).as_json()}


def summary(tx: Tx, configured: list[QueueDefinition]) -> list[dict[str, Any]]:
    by_name = {q.name: q for q in configured}
    out = []
    for name, kind in queue_names(tx.db, configured):
        waiting, oldest = tx.db.execute(
            "select count(*), min(queued_at) from queue_interactions where queue = ? and "
            "state = 'waiting'", [name]).fetchone()
        out.append({**describe(tx, name, kind, by_name.get(name)), "waiting": waiting,
                    "oldest_wait": age(tx.epoch, oldest) if oldest else None,
                    "oldest_queued_at": oldest})
    return out


def line(tx: Tx, name: str, kind: str, configured: QueueDefinition | None,
         limit: int) -> dict[str, Any]:
    total = tx.db.execute("select count(*) from queue_interactions where queue = ? and "
                          "state = 'waiting'", [name]).fetchone()[0]
    found = list(tx.db.query(_WAITING, [name, limit]))
    return {**describe(tx, name, kind, configured), "waiting": int(total), "interactions": [
        {"position": position, "age": age(tx.epoch, row["queued_at"]), **_waiting_json(row)}
        for position, row in enumerate(found, start=1)]}


def _waiting_json(row: dict[str, Any]) -> dict[str, Any]:
    """A waiting interaction with its SMS (body None once the message was purged)."""
    return {"id": row["id"], "state": row["state"], "queue": row["queue"],
            "kind": row["kind"], "priority": row["priority"],
            "message_id": row["message_id"], "queued_at": row["queued_at"],
            "created_at": row["created_at"], "assigned_to": row["assigned_to"],
            "broker": row["broker"], "account": row["account"],
            "from": row["remote"], "to": row["local"], "body": row["body"]}


def me(tx: Tx, login: str) -> dict[str, Any]:
    """``GET /api/agents/me``: the agent's state and its pending offers."""
    offers = [{"interaction": r["id"], "queue": r["queue"], "remote": r["remote"],
               "preview": rows.preview(tx.db, r["id"]), "deadline": r["offer_deadline"]}
              for r in tx.db.query(
                  "select * from queue_interactions where assigned_to = ? and state = "
                  "'offered' order by offer_deadline, id", [login])]
    return {**agent_state(tx, login), "offers": offers}


def every_agent(tx: Tx) -> list[dict[str, Any]]:
    return [agent_state(tx, login) for login in directory.agents(tx.db)]


def interactions(tx: Tx, actor: Actor, filters: dict[str, Any], limit: int,
                 before: int | None) -> list[dict[str, Any]]:
    """Newest first. An agent: what it holds and its user queue's line; a supervisor:
    all, filtered by queue, state and agent."""
    where: list[str] = ["1 = 1"]
    args: list[Any] = []
    if not actor.supervise:
        if actor.login is None:
            return []
        where.append("((assigned_to = ? and state in ('offered', 'connected')) or "
                      "(kind = 'user' and queue = ? and state = 'waiting'))")
        args += [actor.login, actor.login]
    for name, column in (("queue", "queue"), ("state", "state"), ("agent", "assigned_to")):
        if filters.get(name) is not None:
            where.append(f"{column} = ?")
            args.append(filters[name])
    if before is not None:
        where.append("id < ?")
        args.append(before)
    found = tx.db.query(f"select * from queue_interactions where {' and '.join(where)} "
                        "order by id desc limit ?", [*args, limit])
    return [{**rows.summary(r), "preview": rows.preview(tx.db, r["id"])} for r in found]
