"""Messages and their status history: the read side, and the facade of the ledger.

Every change is made by :mod:`host.ledger` (the one writer of messages and their
history): one write, committed before anything is announced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from host.ledger import NewMessage, purge
from host.models import DIRECTIONS, Direction, Message, StatusEvent

if TYPE_CHECKING:
    from host.ledger import Ledger
    from host.store import Store

__all__ = ["MessageFilter", "Messages", "NewMessage", "find_rows", "first_id_since", "statuses_of"]


@dataclass(frozen=True, slots=True)
class MessageFilter:
    direction: Direction | None = None
    status: str | None = None
    broker: str | None = None
    since: str | None = None
    before_id: int | None = None
    limit: int = 50


class Messages:
    """Query the messages of one host; store and change them through its ledger."""

    def __init__(self, store: Store, ledger: Ledger) -> None:
        self._store = store
        self._ledger = ledger

    async def add(self, new: NewMessage) -> tuple[Message, bool]:
        """Store ``new`` durably; return ``(message, created)``.

        A message whose (broker, broker_message_id) is already stored is not stored
        again: the existing one comes back with ``created=False`` (a broker retry).
        """
        return await self._ledger.add(new)

    async def add_many(self, news: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
        """Store several messages in one transaction (all or nothing)."""
        return await self._ledger.add_many(news)

    async def set_status(self, message_id: int, status: str, *, source: str,
                         detail: dict[str, Any] | None = None) -> tuple[Message, StatusEvent]:
        """Append a status event and make it the message's current status."""
        return await self._ledger.set_status(message_id, status, source=source,
                                             detail=detail)

    async def purge(self, cutoff: str, *, batch_size: int, pause: float, dry_run: bool,
                    keep: str) -> dict[str, int]:
        """Delete messages last changed before ``cutoff`` but those ``keep`` selects."""
        return await purge(self._store, cutoff, batch_size=batch_size, pause=pause,
                           dry_run=dry_run, keep=keep)

    async def get(self, message_id: int) -> Message | None:
        rows = self._store.read_now(
            lambda db: list(db.query("select * from messages where id = ?", [message_id])))
        return Message.from_row(rows[0]) if rows else None

    async def events(self, message_id: int) -> list[StatusEvent]:
        rows = await self._store.read(lambda db: list(db.query(
            "select * from message_events where message_id = ? order by id", [message_id])))
        return [StatusEvent.from_row(r) for r in rows]

    async def find(self, flt: MessageFilter) -> list[Message]:
        """Newest first, ``flt.limit`` at most, before ``flt.before_id`` when given."""
        rows = await self._store.read(partial(find_rows, flt=flt))
        return [Message.from_row(r) for r in rows]


MAX_STATUSES = 100
"""Statuses of one direction a query makes arms for (smshost's own are a dozen; SQLite
allows 500 arms)."""


def find_rows(db: Database, flt: MessageFilter) -> list[dict[str, Any]]:
    """The rows of one page of ``flt``, read through indexes in id order.

    ``since`` becomes a range of ids, from the smallest id of the messages created
    since then: the first of them in time (one seek in messages_created), unless the
    clock was ever set back across ``since`` (clock_steps, kept by a trigger), which
    is when an older id can have a later time; then the smallest is read.
    """
    low = None
    if flt.since is not None:
        low = first_id_since(db, flt.since)
        if low is None:
            return []
    return _page(db, flt, low, flt.before_id)


def first_id_since(db: Database, since: str) -> int | None:
    """The smallest id of the messages created at or after ``since`` (None: none
    was): one seek in messages_created, unless the clock was ever set back across
    ``since`` (see :func:`find_rows`)."""
    first = db.execute("select id from messages where created_at >= ? "
                       "order by created_at limit 1", [since]).fetchone()
    if first is None:
        return None
    low: int = first[0]
    if db.execute("select 1 from clock_steps where before_max >= ? and first_id <= ? "
                  "limit 1", [since, low]).fetchone():
        low = db.execute("select min(id) from messages indexed by messages_created "
                         "where created_at >= ?", [since]).fetchone()[0]
    return low


def _page(db: Database, flt: MessageFilter, low: int | None,
          high: int | None) -> list[dict[str, Any]]:
    """Up to ``flt.limit`` rows of ``flt`` with ``low <= id < high``, newest first.

    Equality filters become one arm per (direction, status) pair (``union all``, which
    SQLite merges in id order): each arm is one index range (messages_direction_status,
    or messages_broker with a broker), so a page reads the rows it lists and stops,
    however few messages match. Without direction, status and broker, the primary key.
    """
    tail, tail_args = [], []
    for clause, value in (("id >= ?", low), ("id < ?", high),
                          ("+created_at >= ?", flt.since)):  # +: a filter, the ids bound
        if value is not None:
            tail.append(clause)
            tail_args.append(value)
    arms = _arms(db, flt)
    if arms is None:  # no equality filter (or statuses beyond count): one walk of ids
        columns = tuple(c for c in ("direction", "status", "broker")
                        if getattr(flt, c) is not None)
        arms = [(columns, [getattr(flt, c) for c in columns])]
    selects, args = [], []
    for columns, values in arms:
        where = [f"{c} = ?" for c in columns] + tail
        selects.append("select * from messages" + (f" where {' and '.join(where)}"
                                                   if where else ""))
        args += [*values, *tail_args]
    if not selects:
        return []
    return list(db.query(" union all ".join(selects) + " order by id desc limit ?",
                         [*args, flt.limit]))


def _arms(db: Database, flt: MessageFilter) -> list[tuple[tuple[str, ...], list[Any]]] | None:
    """Per (direction, status) pair the filter covers: its columns and values. None
    when the filter names no direction, status or broker, or the messages have more
    statuses than a query may have arms."""
    if flt.direction is None and flt.status is None and flt.broker is None:
        return None
    pairs = []
    for direction in DIRECTIONS if flt.direction is None else (flt.direction,):
        statuses = (flt.status,) if flt.status is not None else statuses_of(db, direction)
        if statuses is None:
            return None
        pairs += [(direction, s) for s in statuses]
    if flt.broker is None:
        return [(("direction", "status"), [d, s]) for d, s in pairs]
    return [(("broker", "direction", "status"), [flt.broker, d, s]) for d, s in pairs]


def statuses_of(db: Database, direction: str) -> list[str] | None:
    """The statuses messages of ``direction`` have, one index seek each (a skip scan);
    None past MAX_STATUSES."""
    found: list[str] = []
    while len(found) <= MAX_STATUSES:
        row = db.execute("select status from messages where direction = ? and status > ? "
                         "order by status limit 1", [direction, found[-1] if found else ""]
                         ).fetchone()
        if row is None:
            return found
        found.append(row[0])
    return None
