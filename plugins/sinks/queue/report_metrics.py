"""``/metrics`` of the queues (docs/agent-desk.md, "Reports"): per queue, read from the
database at scrape time through ``host.metrics`` (at most once a second): the line's
length and longest wait, its agents by status, the service level of the last hour, and
counters of offers, answers and abandons.

The counters count the facts (:mod:`.facts`) of the events stored since this process
first read them (they start at 0, like any counter after a restart), a batch of events
per scrape: they never go down, and a purge of old history does not move them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from sqlite_utils import Database

from . import reading, reports
from .facts import ABANDON, ANSWER, OFFER, histories, replay
from .tx import Tx, queue_state

if TYPE_CHECKING:
    from host.api import HostAPI

    from .sink import QueueSink

Samples = Iterator[tuple[tuple[str, ...], float]]
HOUR = 3600.0
BATCH = 20_000  # events a scrape counts at most; the rest at the next scrapes
TOTALS = {OFFER: ("smshost_queue_offered", "Offers made to agents, by queue."),
          ANSWER: ("smshost_queue_answered", "Interactions answered (a queue's first "
                   "connection to an agent: accepted or picked up), by queue."),
          ABANDON: ("smshost_queue_abandoned", "Interactions that ended in a queue before "
                    "any agent took them, by queue.")}


def register(host: HostAPI, sink: QueueSink) -> None:
    """Add the queue metrics (a rebuilt sink replaces them; its counters start again)."""
    totals = Totals()
    metrics = host.metrics
    metrics.stored_gauge("smshost_queue_waiting", "Interactions waiting in a queue (not "
                         "offered).", ("queue",), lambda db: _each(db, sink, "waiting"))
    metrics.stored_gauge("smshost_queue_longest_wait_seconds", "Seconds the oldest "
                         "waiting interaction of a queue has waited (0: none waits).",
                         ("queue",), lambda db: _each(db, sink, "longest_wait"))
    metrics.stored_gauge("smshost_queue_agents", "Agents of a queue by status (available, "
                         "away, offline).", ("queue", "status"),
                         lambda db: _agents(db, sink))
    metrics.stored_gauge("smshost_queue_service_level", "Service level of the last hour "
                         "(0 to 1): answered within queue.service_level_seconds / (answered "
                         "+ abandoned after it); absent when there were none.", ("queue",),
                         lambda db: _service_level(db, sink))
    for kind, (name, text) in TOTALS.items():
        metrics.stored_counter(name, text, ("queue",), totals.reader(kind, sink))


def _tx(db: Database, sink: QueueSink) -> Tx:
    return Tx(db, sink.clock(), sink.settings.acd, sink.settings.priorities)


def _names(db: Database, sink: QueueSink) -> list[str]:
    """The known queues and any other with an interaction waiting (a user's)."""
    names = [n for n, _ in reading.queue_names(db, list(sink.settings.queues))]
    known = set(names)
    names += [r[0] for r in db.execute("select distinct queue from queue_interactions "
                                       "where state = 'waiting'") if r[0] not in known]
    return names


def _each(db: Database, sink: QueueSink, key: str) -> Samples:
    tx = _tx(db, sink)
    for name in _names(db, sink):
        yield (name,), float(queue_state(tx, name)[key] or 0)


def _agents(db: Database, sink: QueueSink) -> Samples:
    tx = _tx(db, sink)
    for name in _names(db, sink):
        for status, count in queue_state(tx, name)["agents"].items():
            yield (name, status), float(count)


def _service_level(db: Database, sink: QueueSink) -> Samples:
    now = _tx(db, sink)
    span = reports.Range(now.before(HOUR), now.now, sink.settings.service_level_seconds)
    for row in reports.by_queue(reports.facts_in(db, span), [], span):
        value = row["service_level"]["value"]
        if value is not None:
            yield (row["queue"],), float(value)


class Totals:
    """Running counts of facts by kind and queue, from the events stored since the
    first read (the event id read up to is kept)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.counts: dict[tuple[str, str], int] = {}

    def reader(self, kind: str, sink: QueueSink) -> Callable[[Database], Samples]:
        return lambda db: self.read(db, kind, _names(db, sink))

    def read(self, db: Database, kind: str, names: list[str]) -> Samples:
        """The count of ``kind`` of each queue counted and of each of ``names``."""
        self.update(db)
        queues = {q for k, q in self.counts if k == kind} | set(names)
        for queue in sorted(queues):
            yield (queue,), float(self.counts.get((kind, queue), 0))

    def update(self, db: Database) -> None:
        top = int(db.execute("select coalesce(max(id), 0) from queue_events").fetchone()[0])
        if self.last is None or top < self.last:  # the first read, or a new database
            self.last = top
            return
        if top == self.last:
            return
        upto = min(top, self.last + BATCH)
        ids = [r[0] for r in db.execute("select distinct interaction_id from queue_events "
                                        "where id > ? and id <= ?", [self.last, upto])]
        counts = dict(self.counts)
        for history in histories(db, ids):
            for fact in replay(history):
                if fact.kind in TOTALS and self.last < fact.event <= upto:
                    counts[fact.kind, fact.queue] = counts.get((fact.kind, fact.queue), 0) + 1
        self.counts, self.last = counts, upto
