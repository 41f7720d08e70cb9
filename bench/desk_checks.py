"""What bench/desk.py reads from the server's SQLite file after a run: the times (MO
stored to offer, offer to accepted) and the checks (every MO one interaction, offered
exactly once, to a member, within capacity, none waiting)."""

from __future__ import annotations

import argparse
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any


def logins(n: int) -> list[str]:
    return [f"agent{i:04d}" for i in range(n)]


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pctl(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def analyse(db: Path, args: argparse.Namespace) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        one = conn.execute
        mos = one("select count(*) from messages where direction = 'in'").fetchone()[0]
        rows = one("""
            select m.created_at, min(o.offered_at), count(o.id), i.state, i.connected_at
            from messages m
            join queue_interactions i on i.message_id = m.id
            left join queue_offers o on o.interaction_id = i.id
            where m.direction = 'in' group by i.id""").fetchall()
        per_agent = one("select agent, count(*) from queue_offers group by agent").fetchall()
        held = [r[0] for r in one(
            "select count(*) from queue_interactions where state in ('offered', 'connected') "
            "group by assigned_to").fetchall()]
        members = {r[0].lower() for r in one(
            "select login from queue_agents").fetchall()}
        multi = one("select count(*) from (select message_id from queue_interactions "
                    "group by message_id having count(*) > 1)").fetchone()[0]
        states = dict(one("select state, count(*) from queue_interactions "
                          "group by state").fetchall())
    finally:
        conn.close()
    created = [stamp(r[0]) for r in rows]
    offered = [stamp(r[1]) for r in rows if r[1]]
    waits = [stamp(r[1]) - stamp(r[0]) for r in rows if r[1]]
    accepts = [stamp(r[4]) - stamp(r[1]) for r in rows if r[1] and r[4]]
    span = (max(offered) - min(created)) if offered and created else 0.0
    agents = set(logins(args.agents))
    checks = {
        "mo stored": mos == args.texters,
        "one interaction per mo": len(rows) == mos and multi == 0,
        "offered exactly once": all(r[2] == 1 for r in rows),
        "to a member": all(a.lower() in agents and a.lower() in members for a, _ in per_agent),
        "within capacity": max(held, default=0) <= args.capacity,
        "none waiting": states.get("waiting", 0) == 0,
    }
    if args.scenario == "accept":
        checks["all accepted"] = states.get("connected", 0) == len(rows)
    return {"mos": mos, "interactions": len(rows), "states": states,
            "agents_used": len(per_agent), "max_per_agent": max(held, default=0),
            "assign_per_s": len(offered) / span if span > 0 else None, "span_s": span,
            "wait_ms": {p: (v * 1000 if (v := pctl(waits, p)) is not None else None)
                        for p in (50, 90, 99, 100)},
            "accept_ms": {p: (v * 1000 if (v := pctl(accepts, p)) is not None else None)
                          for p in (50, 99)},
            "checks": checks}
