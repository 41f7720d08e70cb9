"""Agents' statuses and the timers of the desk, each step inside one :class:`~.tx.Tx`.

An agent (a user with the agent role) is ``offline``, ``available`` or ``away`` (with a
reason). Away keeps what it holds but withdraws its offers; offline also returns its
connected interactions to their queues, in their place (``queued_at`` kept). The timers
are stored deadlines: an offer's (``offer_deadline``: it expires, the agent's missed
count grows, at ``missed_offers_limit`` it is set away) and a wrap-up's
(``wrapup_until``: no offer before it).
"""

from __future__ import annotations

import json
from typing import Any

from host.api import ApiError, to_epoch

from . import acd, directory
from .tx import Tx, agent_row

STATUSES = ("offline", "available", "away")
MAX_REASON = 200
MISSED = "missed offers"


def ensure(tx: Tx, login: str) -> dict[str, Any]:
    """The agent row of ``login`` (made offline the first time)."""
    tx.db.conn.execute("insert or ignore into queue_agents (login, status, status_since, "
                       "updated_at) values (?, 'offline', ?, ?)", [login, tx.now, tx.now])
    row = agent_row(tx.db, login)
    assert row is not None
    return row


def require(tx: Tx, login: str | None) -> str:
    """The stored login of agent ``login``; 404 when it is no agent."""
    found = directory.agent(tx.db, login) if login else None
    if found is None:
        who = f"user {login!r}" if login else "this caller (no user)"
        raise ApiError(404, "not_an_agent", f"{who} is not an agent (a user with the "
                       "agent role)")
    return found


def set_status(tx: Tx, login: str, status: str, reason: str, actor: str) -> None:
    if status not in STATUSES:
        raise ApiError(400, "bad_parameter", f"status must be one of {', '.join(STATUSES)}; "
                       f"got {status!r}")
    if len(reason) > MAX_REASON or any(ch in reason for ch in "\r\n\x00"):
        raise ApiError(400, "bad_parameter", f"reason: at most {MAX_REASON} characters on "
                       "one line")
    old = ensure(tx, login)
    since = tx.now if old["status"] != status else old["status_since"]
    tx.db.conn.execute(
        "update queue_agents set status = ?, reason = ?, status_since = ?, updated_at = ? "
        "where login = ?", [status, reason if status != "available" else "", since,
                            tx.now, login])
    if status == "available":
        tx.db.conn.execute("update queue_agents set missed = 0 where login = ?", [login])
        if old["status"] != "available":
            tx.db.conn.execute("update queue_agents set idle_since = max(coalesce("
                               "wrapup_until, ''), ?) where login = ?", [tx.now, login])
    else:
        _release(tx, login, status, actor)
    tx.agents.add(login)


def _release(tx: Tx, login: str, status: str, actor: str) -> None:
    """Away: the agent's offers go back to their queues; offline: its connected
    interactions too (front of the line: ``queued_at`` kept)."""
    states = ("offered",) if status == "away" else ("offered", "connected")
    held = list(tx.db.query(
        f"select * from queue_interactions where assigned_to = ? and state in "
        f"({', '.join('?' * len(states))}) order by id", [login, *states]))
    for row in held:
        if row["state"] == "offered":
            acd.withdraw(tx, row, "withdrawn", actor)
        else:
            acd.back_to_line(tx, row, actor, {"returned": f"agent {login} {status}"})


def tick(tx: Tx) -> None:
    """Expire the offers due, end the wrap-ups due, then offer what can be."""
    for row in list(tx.db.query(
            "select * from queue_interactions where offer_deadline is not null and "
            "offer_deadline <= ? and state = 'offered' order by offer_deadline, id",
            [tx.now])):
        _expire(tx, row)
    for (login,) in tx.db.execute("select login from queue_agents where wrapup_until "
                                  "is not null and wrapup_until <= ?", [tx.now]).fetchall():
        tx.db.conn.execute("update queue_agents set wrapup_until = null, updated_at = ? "
                           "where login = ?", [tx.now, login])
        tx.agents.add(login)
    acd.dispatch(tx)


def _expire(tx: Tx, row: dict[str, Any]) -> None:
    agent = row["assigned_to"]
    acd.withdraw(tx, row, "expired", "timer")
    tx.db.conn.execute("update queue_agents set missed = missed + 1, updated_at = ? "
                       "where login = ?", [tx.now, agent])
    found = agent_row(tx.db, agent)
    if found and found["status"] == "available" and \
            found["missed"] >= tx.acd(row["queue"]).missed_offers_limit:
        set_status(tx, agent, "away", MISSED, "timer")


def wrap_up(tx: Tx, login: str, queue: str) -> None:
    """``login`` closed an interaction of ``queue``: no offer for its wrap-up time."""
    seconds = tx.acd(queue).wrapup
    until = tx.later(seconds)
    ensure(tx, login)
    # whether there is a wrap-up is decided here, not in SQL (PostgreSQL would type a
    # parameter compared with 0 as an integer; seconds may be fractional)
    wrapup = ("wrapup_until = max(coalesce(wrapup_until, ''), ?), ", [until]) \
        if seconds > 0 else ("", [])
    tx.db.conn.execute(
        f"update queue_agents set {wrapup[0]}idle_since = ?, updated_at = ? where login = ?",
        [*wrapup[1], until, tx.now, login])
    tx.agents.add(login)


def next_due(tx: Tx) -> float | None:
    """The next stored deadline (Unix seconds): an offer's, a wrap-up's, or a declined
    offer's retry (the shortest offer timeout after it ended: early is harmless)."""
    db = tx.db
    timeout = min([tx.defaults.offer_timeout] + [
        float(json.loads(r[0]).get("offer_timeout", tx.defaults.offer_timeout))
        for r in db.execute("select settings from queue_settings")])
    offer = db.execute("select min(offer_deadline) from queue_interactions where "
                       "offer_deadline is not null").fetchone()[0]
    wrap = db.execute("select min(wrapup_until) from queue_agents where wrapup_until "
                      "is not null").fetchone()[0]
    retry = db.execute(
        "select min(o.ended_at) from queue_offers o join queue_interactions i on i.id = "
        "o.interaction_id where i.state = 'waiting' and o.outcome in ('declined', "
        "'expired') and o.ended_at > ?", [tx.before(timeout)]
    ).fetchone()[0]
    found = [to_epoch(s) for s in (offer, wrap) if s]
    if retry:
        found.append(to_epoch(retry) + timeout)
    return min(found) if found else None
