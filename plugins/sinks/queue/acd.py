"""Automatic call distribution: which agent is offered which waiting interaction.

:func:`dispatch` runs inside one :class:`~.tx.Tx` (one store write), after whatever
may free or fill a seat: an SMS queued, an agent available, an offer declined or timed
out, an interaction closed, a wrap-up ended. Each queue's line is served in order
(priority, then arrival), each interaction offered to one eligible agent: available,
not in wrap-up, under capacity (offers count), and not one that declined or missed this
interaction within the offer timeout. Among them the sticky agent (who served the
texter within ``sticky_seconds``) comes first, then the queue's strategy decides. The
candidates and why each was skipped are stored with the offer (``queue_offers.why``).
"""

from __future__ import annotations

import json
from typing import Any

from . import directory, rows
from .settings import Acd
from .tx import Tx, agent_row, capacity, load

LINE_LIMIT = 200  # waiting interactions of one queue considered per decision


def dispatch(tx: Tx, queue: str | None = None) -> None:
    """Offer what can be offered, in ``queue`` or in every queue with a line."""
    queues = [queue] if queue is not None else [r[0] for r in tx.db.execute(
        "select distinct queue from queue_interactions where state = 'waiting'")]
    for name in queues:
        _serve(tx, name)


def _serve(tx: Tx, queue: str) -> None:
    line = list(tx.db.query(
        "select * from queue_interactions where queue = ? and state = 'waiting' "
        "order by priority desc, queued_at, id limit ?", [queue, LINE_LIMIT]))
    if not line:
        return
    acd = tx.acd(queue)
    members = directory.candidates(tx.db, queue, line[0]["kind"])
    for row in line:
        chosen, why = choose(tx, row, members, acd)
        if chosen is not None:
            offer(tx, row, chosen, why, acd)
        elif not any(c["skipped"] in ("declined this one", "missed this one")
                     for c in why["candidates"]):
            return  # nobody has a free seat: the rest of the line waits too


def choose(tx: Tx, row: dict[str, Any], members: list[str], acd: Acd
           ) -> tuple[str | None, dict[str, Any]]:
    """The agent to offer ``row`` to (None: nobody eligible), and why."""
    candidates = [_candidate(tx, login, row, acd) for login in members]
    eligible = [c for c in candidates if c["skipped"] is None]
    sticky = _sticky(tx, row, acd)
    rule: str = acd.strategy
    if sticky is not None and any(c["agent"] == sticky for c in eligible):
        chosen: str | None = sticky
        rule = "sticky"
    elif eligible:
        chosen = min(eligible, key=_ORDER[acd.strategy])["agent"]
    else:
        chosen = None
    return chosen, {"at": tx.now, "queue": row["queue"], "strategy": acd.strategy,
                    "rule": rule, "sticky_agent": sticky, "chosen": chosen,
                    "candidates": candidates}


def _candidate(tx: Tx, login: str, row: dict[str, Any], acd: Acd) -> dict[str, Any]:
    agent = agent_row(tx.db, login) or {}
    held, seats = load(tx.db, login), capacity(tx, login, row["queue"])
    out = {"agent": login, "status": agent.get("status", "offline"), "load": held,
           "capacity": seats, "idle_since": agent.get("idle_since") or
           agent.get("status_since"), "last_offer_at": agent.get("last_offer_at"),
           "skipped": None}
    if out["status"] != "available":
        out["skipped"] = out["status"]
    elif agent.get("wrapup_until") and agent["wrapup_until"] > tx.now:
        out["skipped"] = "in wrap-up"
    elif held >= seats:
        out["skipped"] = "at capacity"
    else:
        out["skipped"] = _refused(tx, login, row, acd)
    return out


def _refused(tx: Tx, login: str, row: dict[str, Any], acd: Acd) -> str | None:
    """"declined this one" / "missed this one" within the last offer timeout."""
    found = tx.db.execute(
        "select outcome from queue_offers where interaction_id = ? and agent = ? and "
        "outcome in ('declined', 'expired') and ended_at > ? order by id desc limit 1",
        [row["id"], login, tx.before(acd.offer_timeout)]).fetchone()
    if found is None:
        return None
    return "declined this one" if found[0] == "declined" else "missed this one"


def _sticky(tx: Tx, row: dict[str, Any], acd: Acd) -> str | None:
    """The agent that served this texter last, within ``sticky_seconds``."""
    if acd.sticky_seconds <= 0:
        return None
    found = tx.db.execute(
        "select assigned_to from queue_interactions where local = ? and remote = ? and "
        "state = 'disconnected' and connected_at is not null and assigned_to is not null "
        "and ended_at >= ? order by ended_at desc limit 1",
        [row["local"], row["remote"], tx.before(acd.sticky_seconds)]).fetchone()
    return None if found is None else str(found[0])


_ORDER: dict[str, Any] = {
    # idle: since it became free or since its last offer, whichever is later
    "longest_idle": lambda c: (max(c["idle_since"] or "", c["last_offer_at"] or ""),
                               c["agent"]),
    "least_loaded": lambda c: (c["load"], c["idle_since"] or "", c["agent"]),
    "round_robin": lambda c: (c["last_offer_at"] or "", c["agent"]),
}


def offer(tx: Tx, row: dict[str, Any], agent: str, why: dict[str, Any], acd: Acd) -> None:
    deadline = tx.later(acd.offer_timeout)
    tx.db.conn.execute(
        "update queue_interactions set state = 'offered', assigned_to = ?, assigned_at = ?, "
        "offer_deadline = ?, updated_at = ? where id = ?",
        [agent, tx.now, deadline, tx.now, row["id"]])
    tx.db.conn.execute(
        "insert into queue_offers (interaction_id, agent, offered_at, deadline, why) "
        "values (?, ?, ?, ?, ?)", [row["id"], agent, tx.now, deadline, json.dumps(why)])
    tx.db.conn.execute("update queue_agents set last_offer_at = ?, updated_at = ? "
                       "where login = ?", [tx.now, tx.now, agent])
    tx.event(row["id"], "offered", row["queue"], "acd", {"agent": agent,
                                                           "deadline": deadline})
    tx.feed("offer", agent, row["queue"], {
        "interaction": row["id"], "queue": row["queue"], "remote": row["remote"],
        "preview": rows.preview(tx.db, row["id"]), "deadline": deadline})
    tx.agents.add(agent)


def close_offer(tx: Tx, row: dict[str, Any], outcome: str) -> None:
    """The pending offer of ``row`` ends with ``outcome`` (accepted, declined, expired,
    withdrawn)."""
    tx.db.conn.execute("update queue_offers set outcome = ?, ended_at = ? where "
                       "interaction_id = ? and outcome = 'pending'",
                       [outcome, tx.now, row["id"]])


def withdraw(tx: Tx, row: dict[str, Any], outcome: str, actor: str) -> None:
    """An offered interaction back to waiting in its queue, keeping its place in line
    (``queued_at``); its offer ends with ``outcome`` and the agent is told."""
    agent = row["assigned_to"]
    close_offer(tx, row, outcome)
    back_to_line(tx, row, actor, {"offer": outcome, "agent": agent})
    tx.feed("offer_withdrawn", agent, row["queue"], {"interaction": row["id"],
                                                     "reason": outcome})


def back_to_line(tx: Tx, row: dict[str, Any], actor: str, detail: dict[str, Any]) -> None:
    """``row`` waiting again in its queue, in its place (``queued_at`` kept)."""
    tx.db.conn.execute(
        "update queue_interactions set state = 'waiting', assigned_to = null, "
        "offer_deadline = null, updated_at = ? where id = ?", [tx.now, row["id"]])
    tx.event(row["id"], "waiting", row["queue"], actor, detail, agent=row["assigned_to"])
    if row["assigned_to"]:
        tx.agents.add(row["assigned_to"])
