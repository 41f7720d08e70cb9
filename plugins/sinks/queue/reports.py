"""Reports per queue and per agent over a time range, counted from the facts
(:mod:`.facts`) dated in ``[since, until)``. Definitions: docs/agent-desk.md,
"Reports".

The interactions read are those with an event or a reply in the range, each replayed
from its whole history (by the index ``queue_events_interaction``) so that a stay begun
before the range is measured from its start. The indexes of those selections are the
migration ``m003_reports`` of the ``smshost-queue`` set, defined here (registered after
:mod:`.schema`'s own when the package loads).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from host.api import ApiError

from .facts import (ABANDON, ANSWER, FIRST_REPLY, HANDLE, OFFER, QUEUED, TRANSFER, Fact,
                    histories, replay)
from .schema import migrations

MAX_INTERACTIONS = 100_000  # interactions one report reads; a larger range is refused
STATS = ("count", "mean", "p50", "p90", "max")


@migrations()
def m003_reports(db: Database) -> None:
    """Reports select by time (``queue_events.at``, with or without a queue), by reply
    time (outbound ``queue_messages.at``) and by agent (``queue_offers.agent``)."""
    db.execute("create index if not exists queue_events_at on queue_events (at)")
    db.execute("create index if not exists queue_events_queue_at on queue_events "
               "(queue, at)")
    db.execute("create index if not exists queue_messages_out_at on queue_messages (at) "
               "where direction = 'out'")
    db.execute("create index if not exists queue_offers_agent on queue_offers "
               "(agent, offered_at)")


@dataclass(frozen=True, slots=True)
class Range:
    since: str
    until: str
    service_level: float  # seconds


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Count, mean, nearest-rank percentiles and maximum of ``values`` (seconds)."""
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "max": None}
    ordered = sorted(values)
    return {"count": len(ordered), "mean": round(sum(ordered) / len(ordered), 3),
            "p50": _rank(ordered, 50), "p90": _rank(ordered, 90), "max": ordered[-1]}


def _rank(ordered: Sequence[float], percent: int) -> float:
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def interaction_ids(db: Database, span: Range, queue: str | None = None) -> list[int]:
    """The interactions with an event (in ``queue``, when given) or a reply in range."""
    if queue is None:
        events = db.execute("select distinct interaction_id from queue_events where at >= ? "
                            "and at < ? limit ?", [span.since, span.until,
                                                   MAX_INTERACTIONS + 1])
    else:
        events = db.execute("select distinct interaction_id from queue_events where "
                            "queue = ? and at >= ? and at < ? limit ?",
                            [queue, span.since, span.until, MAX_INTERACTIONS + 1])
    found = {r[0] for r in events}
    found |= {r[0] for r in db.execute(
        "select distinct interaction_id from queue_messages where direction = 'out' and "
        "at >= ? and at < ? limit ?", [span.since, span.until, MAX_INTERACTIONS + 1])}
    if len(found) > MAX_INTERACTIONS:
        raise ApiError(422, "range_too_large", f"since: more than {MAX_INTERACTIONS} "
                       "interactions changed in this range; ask for a shorter one")
    return sorted(found)


def facts_in(db: Database, span: Range, queue: str | None = None) -> list[Fact]:
    """Every fact dated in the range (of ``queue``, when given)."""
    out: list[Fact] = []
    for history in histories(db, interaction_ids(db, span, queue)):
        out += [f for f in replay(history) if span.since <= f.at < span.until
                and (queue is None or f.queue == queue)]
    return out


def queue_figures(facts: Iterable[Fact], span: Range) -> dict[str, Any]:
    """The figures of one queue from its facts."""
    mine = list(facts)
    answers = [f for f in mine if f.kind == ANSWER]
    abandons = [f for f in mine if f.kind == ABANDON]
    offers = [f for f in mine if f.kind == OFFER]
    within = sum(1 for f in answers if (f.seconds or 0) <= span.service_level)
    late = sum(1 for f in abandons if (f.seconds or 0) > span.service_level)
    base = len(answers) + late
    return {
        "queued": _count(mine, QUEUED), "offered": len(offers),
        "answered": len(answers), "abandoned": len(abandons),
        "transferred": _count(mine, TRANSFER),
        "offers": _outcomes(offers),
        "wait_time": stats([f.seconds or 0 for f in answers]),
        "abandon_time": stats([f.seconds or 0 for f in abandons]),
        "first_reply_time": stats([f.seconds or 0 for f in mine if f.kind == FIRST_REPLY]),
        "handle_time": stats([f.seconds or 0 for f in mine if f.kind == HANDLE]),
        "service_level": {"seconds": span.service_level, "answered_within": within,
                          "abandoned_after": late,
                          "value": round(within / base, 4) if base else None},
    }


def agent_figures(facts: Iterable[Fact]) -> dict[str, Any]:
    """The figures of one agent from the facts credited to it."""
    mine = list(facts)
    offers = [f for f in mine if f.kind == OFFER]
    answers = [f for f in mine if f.kind == ANSWER]
    return {
        "offered": len(offers), "offers": _outcomes(offers),
        "answered": len(answers),
        "picked_up": sum(1 for f in answers if f.outcome == "picked up"),
        "first_reply_time": stats([f.seconds or 0 for f in mine if f.kind == FIRST_REPLY]),
        "handle_time": stats([f.seconds or 0 for f in mine if f.kind == HANDLE]),
    }


def _count(facts: Sequence[Fact], kind: str) -> int:
    return sum(1 for f in facts if f.kind == kind)


def _outcomes(offers: Sequence[Fact]) -> dict[str, int]:
    """Offers by outcome; ``missed`` are those that timed out (``expired``)."""
    names = {"accepted": "accepted", "declined": "declined", "expired": "missed",
             "withdrawn": "withdrawn", "pending": "pending"}
    out = dict.fromkeys(names.values(), 0)
    for offer in offers:
        out[names.get(offer.outcome or "pending", "pending")] += 1
    return out


def by_queue(facts: Iterable[Fact], names: Iterable[str], span: Range
             ) -> list[dict[str, Any]]:
    """One row per queue of ``names`` and per queue with facts, by name."""
    grouped: dict[str, list[Fact]] = {name: [] for name in names}
    for fact in facts:
        grouped.setdefault(fact.queue, []).append(fact)
    return [{"queue": name, **queue_figures(grouped[name], span)}
            for name in sorted(grouped, key=str.lower)]


def by_agent(facts: Iterable[Fact], names: Iterable[str]) -> list[dict[str, Any]]:
    """One row per agent of ``names`` and per agent credited with facts, by login."""
    grouped: dict[str, list[Fact]] = {name.lower(): [] for name in names}
    shown = {name.lower(): name for name in names}
    for fact in facts:
        if fact.agent:
            grouped.setdefault(fact.agent.lower(), []).append(fact)
            shown.setdefault(fact.agent.lower(), fact.agent)
    return [{"agent": shown[key], **agent_figures(grouped[key])} for key in sorted(grouped)]
