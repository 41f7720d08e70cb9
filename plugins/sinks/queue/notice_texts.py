"""What a notice says: the place in line, the estimated wait and the other values of
the texts of :mod:`.notice_settings`, read inside one transaction of the desk.

* ``ahead``: interactions waiting ahead in the same queue, in the order ACD serves
  them (priority, then arrival, then id); ``position`` is ``ahead + 1``.
* free seats: over the queue's available agents, not in wrap-up, capacity minus load.
* estimated wait: ``ceil(ahead / max(1, free seats)) × average handle time``
  (:mod:`.handle_time`), in whole minutes, at least 1; past ``wait_limit_minutes`` it
  is said with ``wait_over_text``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from . import directory, handle_time
from .notice_settings import NoticeSettings
from .tx import Tx, agent_row, capacity, load

LINE_LIMIT = 500  # waiting interactions of one queue read for places in line


def effective(tx: Tx, defaults: NoticeSettings, queue: str) -> NoticeSettings:
    """The notice settings of ``queue``: ``defaults`` with its workgroup's overrides."""
    row = tx.db.execute("select settings from queue_settings where workgroup = ?",
                        [queue]).fetchone()
    stored = json.loads(row[0]).get("notices", {}) if row is not None else {}
    return defaults.with_overrides(stored)


def line(tx: Tx, queue: str) -> list[int]:
    """The waiting interactions of ``queue`` in the order ACD serves them."""
    return [r[0] for r in tx.db.execute(
        "select id from queue_interactions where queue = ? and state = 'waiting' "
        "order by priority desc, queued_at, id limit ?", [queue, LINE_LIMIT])]


def agents(tx: Tx, queue: str) -> list[dict[str, Any]]:
    """The queue's agents with status, load, capacity and wrap-up."""
    kind = directory.kind_of(tx.db, queue)
    out = []
    for login in directory.candidates(tx.db, queue, kind[0]) if kind else []:
        row = agent_row(tx.db, login) or {}
        out.append({"login": login, "status": row.get("status", "offline"),
                    "wrapup": bool(row.get("wrapup_until") and row["wrapup_until"] > tx.now),
                    "load": load(tx.db, login), "capacity": capacity(tx, login, queue)})
    return out


def free_seats(members: list[dict[str, Any]]) -> int:
    return sum(max(0, a["capacity"] - a["load"]) for a in members
               if a["status"] == "available" and not a["wrapup"])


def anyone(members: list[dict[str, Any]]) -> bool:
    """Is an agent there to serve: available, or away holding less than its capacity?"""
    return any(a["status"] == "available" or (a["status"] == "away" and
                                              a["load"] < a["capacity"]) for a in members)


def wait_seconds(ahead: int, free: int, average: float) -> float:
    return math.ceil(ahead / max(1, free)) * average


def values(tx: Tx, settings: NoticeSettings, queue: str, ahead: int,
           members: list[dict[str, Any]]) -> dict[str, Any]:
    """The named values of a notice to someone with ``ahead`` waiting before it."""
    average = handle_time.current(tx.db, queue, settings.initial_handle_minutes * 60)
    minutes = max(1, math.ceil(wait_seconds(ahead, free_seats(members), average) / 60))
    if minutes > settings.wait_limit_minutes:
        wait_text = settings.wait_over_text.format(minutes=settings.wait_limit_minutes)
    else:
        wait_text = settings.wait_text.format(minutes=minutes)
    return {"queue": queue, "position": ahead + 1, "ahead": ahead, "wait_minutes": minutes,
            "wait_text": wait_text, "hours": ", ".join(settings.hours) or "always",
            "agent": ""}


def render(template: str, named: dict[str, Any]) -> str:
    """``template`` (checked when loaded) with the named values."""
    return template.format_map(named)
