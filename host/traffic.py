"""Recent traffic as the admin dashboard shows it (issue 15 point 1): messages in and
out per minute, each broker's share of failed sends, the handler calls that failed.

Every read is bounded and served by an index (checked with EXPLAIN QUERY PLAN in
tests/admin/test_dashboard.py): a minute of messages is a range of ids counted in
``messages_direction_status`` (no table row is read), a broker's sends of the hour are ranges of
``messages_broker`` from the hour's first id, and the handler failures are looked for
among the newest :data:`EVENTS_SCANNED` status events only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlite_utils import Database

from host import jsontext
from host.messages import first_id_since, statuses_of
from host.models import DIRECTIONS, OUTBOUND_STATES, to_timestamp

T = TypeVar("T")

MINUTES = 60
"""The dashboard's window: the last hour, minute by minute."""
ERROR_STATES = ("failed", "rejected", "undelivered", "expired")
"""The outbound statuses a broker's error rate counts (of the sends of the window)."""
EVENTS_SCANNED = 5000
"""How many of the newest status events are looked through for handler failures."""


@dataclass(frozen=True, slots=True)
class Minute:
    """One minute of the window: its start (``HH:MM`` UTC) and the messages created."""

    start: str
    inbound: int
    outbound: int


@dataclass(frozen=True, slots=True)
class BrokerErrors:
    """A broker instance's sends of the window: how many, and how many ended in one of
    :data:`ERROR_STATES`."""

    sent: int
    failed: int

    @property
    def rate(self) -> float | None:
        return self.failed / self.sent if self.sent else None


def in_snapshot(db: Database, read: Callable[[], T]) -> T:
    """``read()`` in one read transaction, so its queries see one state of the
    database: the counts here read the statuses present, then count each, and a status
    changing between the two (queued → sending) would be counted in neither."""
    if db.conn.in_transaction:
        return read()
    db.conn.execute("begin")
    try:
        return read()
    finally:
        db.conn.execute("commit")


def window(now: datetime, minutes: int = MINUTES) -> list[datetime]:
    """The starts of the window's minutes, oldest first (the current minute last)."""
    current = now.astimezone(UTC).replace(second=0, microsecond=0)
    return [current - timedelta(minutes=minutes - 1 - i) for i in range(minutes)]


def per_minute(db: Database, now: datetime, minutes: int = MINUTES) -> list[Minute]:
    """Messages created in each minute of the window ending at ``now``, by direction.

    A minute is a range of ids (from the first id at or after its start: a seek in
    messages_created); its messages of a direction are counted in
    messages_direction_status, one seek per status, reading index entries only. (A
    range of messages_created holds no direction: it read every row of the hour from
    the table, ~60 ms for 100,000; widening that index would make the purge, which
    walks it in (created_at, rowid) order, sort.) Ids follow time unless the clock was
    set back: then a minute's count is approximate, the hour's total is not."""
    starts = window(now, minutes)
    bounds = [first_id_since(db, to_timestamp(start)) for start in starts]
    statuses = {d: statuses_of(db, d) for d in DIRECTIONS}
    out = []
    for i, start in enumerate(starts):
        low = bounds[i]
        high = next((b for b in bounds[i + 1:] if b is not None), None)
        counts = {d: 0 if low is None else _count(db, d, statuses[d], low, high)
                  for d in DIRECTIONS}
        out.append(Minute(to_timestamp(start)[11:16], counts["in"], counts["out"]))
    return out


def _count(db: Database, direction: str, statuses: list[str] | None, low: int,
           high: int | None) -> int:
    where, args = "direction = ? and id >= ?", [direction, low]
    if statuses is not None:
        where += f" and status in ({', '.join('?' for _ in statuses)})"
        args += statuses
    if high is not None:
        where += " and id < ?"
        args.append(high)
    count: int = db.execute(f"select count(*) from messages where {where}", args).fetchone()[0]
    return count


def broker_errors(db: Database, brokers: Iterable[str], now: datetime,
                  minutes: int = MINUTES) -> dict[str, BrokerErrors]:
    """Per broker instance of ``brokers``: the outbound messages created in the
    window, and those now in an error state. Each count is one seek per status in
    messages_broker (broker, direction, status, id) from the window's first id."""
    low = first_id_since(db, to_timestamp(window(now, minutes)[0]))
    if low is None:
        return {name: BrokerErrors(0, 0) for name in brokers}
    sent_states = statuses_of(db, "out") or list(OUTBOUND_STATES)
    every = ", ".join("?" for _ in sent_states)
    errors = ", ".join("?" for _ in ERROR_STATES)
    found = {}
    for name in brokers:
        sent, failed = (db.execute(
            f"select count(*) from messages where broker = ? and direction = 'out' "
            f"and status in ({marks}) and id >= ?", [name, *states, low]).fetchone()[0]
            for marks, states in ((every, sent_states), (errors, ERROR_STATES)))
        found[name] = BrokerErrors(sent, failed)
    return found


def handler_failures(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """The newest failed handler calls (a handler route whose handler raised or timed
    out: the router recorded it in the message's routing event), newest first."""
    rows = db.execute(
        "select message_id, at, detail from message_events where id > "
        "(select coalesce(max(id), 0) from message_events) - ? and source = 'router' "
        "and detail like '%\"failures\"%' order by id desc", [EVENTS_SCANNED])
    found: list[dict[str, Any]] = []
    for message_id, at, detail in rows:
        for failure in _failures(detail):
            if failure.get("destination") == "handler":
                found.append({"message_id": message_id, "at": at,
                              "handler": str(failure.get("target") or ""),
                              "route": str(failure.get("route") or ""),
                              "reason": str(failure.get("reason") or "")})
        if len(found) >= limit:
            break
    return found[:limit]


def _failures(detail: str) -> list[dict[str, Any]]:
    try:
        data = jsontext.loads(detail)
    except ValueError:
        return []
    failures = data.get("failures") if isinstance(data, dict) else None
    return [f for f in failures if isinstance(f, dict)] if isinstance(failures, list) else []


def handler_loads(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """The newest load events of handler scripts (loaded, failed, removed)."""
    return list(db.query("select name, digest, status, error, at from handler_loads "
                         "order by id desc limit ?", [limit]))
