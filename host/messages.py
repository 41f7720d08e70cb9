"""Messages and their status history: the core's use of the store.

Every change is one write (the message row and its status event together), committed
before anything is announced; then the metrics move and the event hooks fire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from host import jsontext
from host.models import DIRECTIONS, Direction, Message, StatusEvent, utcnow
from host.text import clean

if TYPE_CHECKING:
    from host.core import Host

_COLUMNS = ("direction", "broker", "account", "local", "remote", "body", "encoding",
            "segments", "status", "broker_message_id", "created_at", "updated_at", "attrs",
            "route")


@dataclass(slots=True)
class NewMessage:
    """What a caller knows about a message before it is stored (not frozen: see
    :class:`host.brokers.engine.MoFields`)."""

    direction: Direction
    body: str
    status: str
    broker: str | None = None
    account: str | None = None
    local: str | None = None
    remote: str | None = None
    encoding: str | None = None
    segments: int | None = None
    broker_message_id: str | None = None
    attrs: dict[str, Any] | None = None
    source: str = "system"
    detail: dict[str, Any] | None = None
    route: str | None = None


@dataclass(frozen=True, slots=True)
class MessageFilter:
    direction: Direction | None = None
    status: str | None = None
    broker: str | None = None
    since: str | None = None
    before_id: int | None = None
    limit: int = 50


class Messages:
    """Store, change and query messages of one host."""

    def __init__(self, host: Host) -> None:
        self._host = host

    async def add(self, new: NewMessage) -> tuple[Message, bool]:
        """Store ``new`` durably; return ``(message, created)``.

        A message whose (broker, broker_message_id) is already stored is not stored
        again: the existing one comes back with ``created=False`` (a broker retry).
        """
        message, event = await self._host.store.write(lambda db: _insert(db, new))
        if event is None:
            return message, False
        self._host.metrics.message_stored(message)
        await self._host.hooks.message_stored(self._host, message)
        await self._host.hooks.message_status_changed(self._host, message, None,
                                                     message.status, event)
        return message, True

    async def add_many(self, news: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
        """Store several messages in one transaction (all or nothing)."""
        rows = await self._host.store.write(lambda db: [_insert(db, n) for n in news])
        out = []
        for message, event in rows:
            if event is not None:
                self._host.metrics.message_stored(message)
                await self._host.hooks.message_stored(self._host, message)
                await self._host.hooks.message_status_changed(
                    self._host, message, None, message.status, event)
            out.append((message, event is not None))
        return out

    async def set_status(self, message_id: int, status: str, *, source: str,
                         detail: dict[str, Any] | None = None) -> tuple[Message, StatusEvent]:
        """Append a status event and make it the message's current status."""
        old, message, event = await self._host.store.write(
            lambda db: _set_status(db, message_id, status, source, detail or {}))
        self._host.metrics.status_changed(message)
        await self._host.hooks.message_status_changed(self._host, message, old, status, event)
        return message, event

    async def get(self, message_id: int) -> Message | None:
        rows = self._host.store.read_now(
            lambda db: list(db.query("select * from messages where id = ?", [message_id])))
        return Message.from_row(rows[0]) if rows else None

    async def events(self, message_id: int) -> list[StatusEvent]:
        rows = await self._host.store.read(lambda db: list(db.query(
            "select * from message_events where message_id = ? order by id", [message_id])))
        return [StatusEvent.from_row(r) for r in rows]

    async def find(self, flt: MessageFilter) -> list[Message]:
        """Newest first, ``flt.limit`` at most, before ``flt.before_id`` when given."""
        rows = await self._host.store.read(partial(find_rows, flt=flt))
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
        first = db.execute("select id from messages where created_at >= ? "
                           "order by created_at limit 1", [flt.since]).fetchone()
        if first is None:
            return []
        low = first[0]
        if db.execute("select 1 from clock_steps where before_max >= ? and first_id <= ? "
                      "limit 1", [flt.since, low]).fetchone():
            low = db.execute("select min(id) from messages indexed by messages_created "
                             "where created_at >= ?", [flt.since]).fetchone()[0]
    return _page(db, flt, low, flt.before_id)


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
        statuses = (flt.status,) if flt.status is not None else _statuses(db, direction)
        if statuses is None:
            return None
        pairs += [(direction, s) for s in statuses]
    if flt.broker is None:
        return [(("direction", "status"), [d, s]) for d, s in pairs]
    return [(("broker", "direction", "status"), [flt.broker, d, s]) for d, s in pairs]


def _statuses(db: Database, direction: str) -> list[str] | None:
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


_INSERT = (f"insert into messages ({', '.join(_COLUMNS)}) values ({', '.join('?' * len(_COLUMNS))}) "
           "on conflict (broker, broker_message_id) where broker_message_id is not null "
           "do nothing returning id")


def _insert(db: Database, new: NewMessage) -> tuple[Message, StatusEvent | None]:
    """Insert ``new`` with its first status event; the stored one if it is a retry."""
    now = utcnow()
    attrs_text, attrs = jsontext.encode(new.attrs) if new.attrs else ("{}", {})
    # The last guard of the text rule (host/text.py), for what adapters decode themselves:
    # the message built below holds what was stored, as every later read returns it.
    broker, account, local, remote, encoding, broker_id, route = (
        clean(v) if v else v for v in (new.broker, new.account, new.local, new.remote,
                                       new.encoding, new.broker_message_id, new.route))
    body = clean(new.body)
    args = [new.direction, broker, account, local, remote, body, encoding, new.segments,
            new.status, broker_id, now, now, attrs_text, route]
    conn = db.conn
    row = conn.execute(_INSERT, args).fetchone()
    if row is None:
        existing = next(db.query(
            "select * from messages where broker = ? and broker_message_id = ?",
            [broker, broker_id]))
        return Message.from_row(existing), None
    message = Message(row[0], new.direction, broker, account, local, remote, body, encoding,
                      new.segments, new.status, broker_id, now, now, attrs, route)
    event = _add_event(db, message.id, new.status, now, new.source, new.detail or {})
    return message, event


def message_from_cursor(cursor: Any) -> Message | None:
    """The message of a ``... returning *`` statement's row (None when it changed none)."""
    row = cursor.fetchone()
    if row is None:
        return None
    return Message.from_row(dict(zip([d[0] for d in cursor.description], row, strict=True)))


def _add_event(db: Database, message_id: int, status: str, at: str, source: str,
               detail: dict[str, Any]) -> StatusEvent:
    text, detail = jsontext.encode(detail) if detail else ("{}", detail)
    cursor = db.conn.execute(
        "insert into message_events (message_id, status, at, source, detail) "
        "values (?, ?, ?, ?, ?)", [message_id, status, at, source, text])
    return StatusEvent(int(cursor.lastrowid or 0), message_id, status, at, source, detail)


def _set_status(db: Database, message_id: int, status: str, source: str,
                detail: dict[str, Any]) -> tuple[str | None, Message, StatusEvent]:
    rows = list(db.query("select * from messages where id = ?", [message_id]))
    if not rows:
        raise LookupError(f"no message {message_id}")
    old = rows[0]["status"]
    now = utcnow()
    event = _add_event(db, message_id, status, now, source, detail)
    db.execute("update messages set status = ?, updated_at = ? where id = ?",
               [status, now, message_id])
    row = next(db.query("select * from messages where id = ?", [message_id]))
    return old, Message.from_row(row), event
