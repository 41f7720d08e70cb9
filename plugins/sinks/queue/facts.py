"""The facts reports count, replayed from an interaction's stored history: its events
(``queue_events``), its offers (``queue_offers``) and the times of its replies
(outbound ``queue_messages``). Definitions: docs/agent-desk.md, "Reports".

A **stay** is an interaction's time in one queue: from the event that put it there
(the router's first ``waiting``, or a transfer's) to its end (``disconnected``) or its
transfer out. A **connection** is an agent holding it: from ``connected`` (accepted or
picked up) to its end, a transfer, or its return to the line (the agent went offline).
Each fact is dated by the event (or reply) it comes from, and carries that event's id
(the metrics count facts of events they have not seen yet).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from host.api import to_epoch

# kinds of facts
OFFER = "offer"  # an offer made (outcome: accepted, declined, expired, withdrawn, pending)
ANSWER = "answer"  # a stay's first connection (seconds: its wait)
ABANDON = "abandon"  # a stay ended before any connection (seconds: its wait)
TRANSFER = "transfer"  # a stay left by a transfer (answered or not)
HANDLE = "handle"  # a connection ended (seconds: its length)
FIRST_REPLY = "first_reply"  # a stay's first reply (seconds: from queued)
QUEUED = "queued"  # a stay begun


@dataclass(frozen=True, slots=True)
class Fact:
    kind: str
    queue: str
    at: str
    event: int  # the id of the event it comes from (0: a reply)
    agent: str | None = None
    seconds: float | None = None
    outcome: str | None = None


@dataclass
class _Stay:
    queue: str
    start: str
    answered: bool = False
    replied: bool = False


@dataclass
class _Connection:
    agent: str
    start: str


@dataclass
class History:
    """What is stored of one interaction, in order."""

    events: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # times of outbound messages


def seconds(start: str, end: str) -> float:
    return round(max(0.0, to_epoch(end) - to_epoch(start)), 3)


def replay(history: History) -> list[Fact]:
    """The facts of one interaction's history."""
    return list(_Replay(history).run())


class _Replay:
    def __init__(self, history: History) -> None:
        self.history = history
        self.offers = iter(history.offers)
        self.replies = list(history.replies)
        self.stay: _Stay | None = None
        self.connection: _Connection | None = None

    def run(self) -> Iterator[Fact]:
        state: str | None = None
        for event in self.history.events:
            detail = json.loads(event["detail"]) if isinstance(event["detail"], str) \
                else event["detail"]
            moved = "transfer" in detail and event["state"] == "waiting"
            if event["state"] == state and not moved:
                continue  # a note, or another mark of the same state: no change
            state = event["state"]
            yield from self._event(event, detail, moved)
        if self.stay is not None:  # still open: its replies so far
            yield from self._first_reply(None)

    def _event(self, event: dict[str, Any], detail: dict[str, Any], moved: bool
               ) -> Iterator[Fact]:
        at, queue, eid, state = event["at"], event["queue"], int(event["id"]), event["state"]
        if state == "waiting":
            if moved or self.stay is None:
                if self.stay is not None:
                    yield from self._leave(at, eid, TRANSFER, "transferred")
                self.stay = _Stay(queue, at)
                yield Fact(QUEUED, queue, at, eid)
            elif self.connection is not None:  # back in line: its agent went offline
                yield from self._disconnect(at, eid, "returned")
        elif state == "offered":
            yield from self._offer(event, detail)
        elif state == "connected" and self.stay is not None:
            agent = str(detail.get("agent") or "")
            self.connection = _Connection(agent, at)
            if not self.stay.answered:
                self.stay.answered = True
                yield Fact(ANSWER, self.stay.queue, at, eid, agent,
                           seconds(self.stay.start, at), detail.get("how"))
        elif state == "disconnected" and self.stay is not None:
            yield from self._leave(at, eid, ABANDON, "disconnected")

    def _offer(self, event: dict[str, Any], detail: dict[str, Any]) -> Iterator[Fact]:
        stored = next(self.offers, None)  # offers and offered events pair up in order
        agent = stored["agent"] if stored else detail.get("agent")
        outcome = stored["outcome"] if stored else None
        queue = self.stay.queue if self.stay else event["queue"]
        yield Fact(OFFER, queue, event["at"], int(event["id"]), agent, None, outcome)

    def _leave(self, at: str, eid: int, unanswered: str, how: str) -> Iterator[Fact]:
        """The stay ends (a transfer or the end): its replies, its connection, and an
        abandon when no agent took it (transfers are counted either way)."""
        stay = self.stay
        assert stay is not None
        yield from self._first_reply(at)
        if self.connection is not None:
            yield from self._disconnect(at, eid, how)
        if unanswered == TRANSFER:
            yield Fact(TRANSFER, stay.queue, at, eid, None, seconds(stay.start, at),
                       "answered" if stay.answered else "unanswered")
        elif not stay.answered:
            yield Fact(ABANDON, stay.queue, at, eid, None, seconds(stay.start, at))
        self.stay = None

    def _disconnect(self, at: str, eid: int, how: str) -> Iterator[Fact]:
        connection, stay = self.connection, self.stay
        assert connection is not None and stay is not None
        yield from self._first_reply(at)
        yield Fact(HANDLE, stay.queue, at, eid, connection.agent,
                   seconds(connection.start, at), how)
        self.connection = None

    def _first_reply(self, until: str | None) -> Iterator[Fact]:
        """The stay's first reply before ``until`` (None: so far), once per stay, dated
        by the reply and credited to the agent connected then."""
        stay = self.stay
        if stay is None or stay.replied:
            return
        for at in self.replies:
            if at >= stay.start and (until is None or at <= until):
                stay.replied = True
                agent = self.connection.agent if self.connection is not None else None
                yield Fact(FIRST_REPLY, stay.queue, at, 0, agent, seconds(stay.start, at))
                return


def histories(db: Any, ids: Sequence[int], chunk: int = 500) -> Iterable[History]:
    """The stored history of each interaction of ``ids`` (read by its indexes)."""
    for start in range(0, len(ids), chunk):
        part = list(ids[start:start + chunk])
        marks = ", ".join("?" * len(part))
        found: dict[int, History] = {i: History() for i in part}
        for row in db.query(f"select id, interaction_id, at, state, queue, detail from "
                            f"queue_events where interaction_id in ({marks}) order by "
                            "interaction_id, id", part):
            found[row["interaction_id"]].events.append(row)
        for row in db.query(f"select interaction_id, agent, outcome from queue_offers "
                            f"where interaction_id in ({marks}) order by interaction_id, "
                            "id", part):
            found[row["interaction_id"]].offers.append(row)
        for row in db.execute(f"select interaction_id, at from queue_messages where "
                              f"interaction_id in ({marks}) and direction = 'out' order "
                              "by interaction_id, at", part):
            found[row[0]].replies.append(row[1])
        yield from found.values()
