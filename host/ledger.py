"""The ledger: the one writer of ``messages`` and ``message_events`` (a message's life).

Every write of a message row or of its status history goes through the functions
below, which run inside a store write (``store.write(lambda db: ledger.insert(db,
new))``) and return what changed: a :class:`Change` (the message as it now is, the
status event appended, the status before). The caller commits; then
:meth:`Ledger.announce` runs the after-commit sequence for what changed, in order:
the metrics move, ``message_stored`` fires for a new message, and
``message_status_changed`` for every change (the event stream hears it through that
hook, :mod:`host.defaults.events`). Nothing is announced before it is committed.

Reads stay where they are used (:mod:`host.messages` is the read side).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from host import jsontext, textindex
from host.ledger_records import Change as Change
from host.ledger_records import Exchange as Exchange
from host.ledger_records import IngestStep as IngestStep
from host.ledger_records import LaneTaker as LaneTaker
from host.ledger_records import MessageHooks as MessageHooks
from host.ledger_records import NewMessage as NewMessage
from host.callbacks.queue import enqueue, wanted
from host.models import Message, StatusEvent, utcnow
from host.text import clean

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.metrics import Metrics
    from host.store import Store

_COLUMNS = ("direction", "broker", "account", "local", "remote", "body", "encoding",
            "segments", "status", "broker_message_id", "created_at", "updated_at", "attrs",
            "route")
_INSERT = (f"insert into messages ({', '.join(_COLUMNS)}) "
           f"values ({', '.join('?' * len(_COLUMNS))}) "
           "on conflict (broker, broker_message_id) where broker_message_id is not null "
           "do nothing returning id")
_PG_PARTS = (
    f"with m as ({_INSERT}), "
    "e as (insert into message_events (message_id, status, at, source, detail) "
    "select id, ?, ?, ?, ? from m returning id), "
    "t as (insert into messages_text (id, body) select id, ? from m)")
_INSERT_PG = f"{_PG_PARTS} select m.id, e.id from m, e"
_INSERT_PG_EXCHANGE = (
    f"{_PG_PARTS}, x as (insert into message_exchanges (message_id, at, kind, request, "
    "response) select id, ?, ?, ?, ? from m) select m.id, e.id from m, e")
_KEEP: Any = object()  # a column an update leaves as it is


# -- writes (inside a store write) ------------------------------------------------------

def insert(db: Database, new: NewMessage,
           lanes: LaneTaker | None = None) -> tuple[Message, StatusEvent | None]:
    """Insert ``new`` with its first status event; the stored one (and no event) if it
    is a retry of a message already stored (same broker and broker message id). With
    ``lanes``, an MO to route takes its conversation's lane in the same write."""
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
    detail: dict[str, Any] = {}  # the first event's as stored (PostgreSQL's insert)
    if isinstance(db.conn, sqlite3.Connection):
        row = db.conn.execute(_INSERT, args).fetchone()
    else:  # PostgreSQL: the message, its event, text and exchange in one round trip
        row, detail = _insert_pg(db, args, new, now)
    if row is None:
        existing = next(db.query(
            "select * from messages where broker = ? and broker_message_id = ?",
            [broker, broker_id]))
        return Message.from_row(existing), None
    message = Message(row[0], new.direction, broker, account, local, remote, body, encoding,
                      new.segments, new.status, broker_id, now, now, attrs, route)
    if len(row) > 1:  # the detail as stored (cleaned), as every later read returns it
        event = StatusEvent(row[1], message.id, new.status, now, new.source, detail)
    else:
        event = add_event(db, message.id, new.status, now, new.source, new.detail or {})
        if new.exchange is not None:
            add_exchange(db, message.id, now, new.exchange)
        if textindex.due(message.id):  # the search's text index, in batches (m014)
            textindex.index_pending(db, 4 * textindex.BATCH)
    queue_callbacks(db, Change(message, event, None, True))
    if lanes is not None and new.direction == "in" and new.status == "received":
        lanes.claim(db, local, remote)
    return message, event


def _insert_pg(db: Database, args: list[Any], new: NewMessage,
               now: str) -> tuple[Any, dict[str, Any]]:
    """``(message id, event id)`` of ``new`` inserted with its status event, its text
    (the search's) and its exchange in one statement: on PostgreSQL each statement is a
    round trip under the cluster's write lock. None when the message was stored already
    (its broker message id taken: nothing else is inserted then). And the event's
    detail as stored (:func:`host.jsontext.encode` cleaned)."""
    text, detail = jsontext.encode(new.detail) if new.detail else ("{}", {})
    params = [*args, new.status, now, new.source, text, args[5]]
    sql = _INSERT_PG
    if new.exchange is not None:
        params += [now, *_exchange_values(new.exchange)]
        sql = _INSERT_PG_EXCHANGE
    return db.conn.execute(sql, params).fetchone(), detail


def _exchange_values(exchange: Exchange) -> list[str]:
    return [exchange.kind, jsontext.dumps(exchange.request),
            jsontext.dumps(exchange.response or {})]


def add_exchange(db: Database, message_id: int, at: str, exchange: Exchange) -> None:
    """Keep ``exchange`` with message ``message_id`` (in the caller's transaction)."""
    db.conn.execute(
        "insert into message_exchanges (message_id, at, kind, request, response) "
        "values (?, ?, ?, ?, ?)", exchange_row(message_id, at, exchange))


def exchange_row(message_id: int, at: str, exchange: Exchange) -> list[Any]:
    """The ``message_exchanges`` row of ``exchange`` (host.ledger_rows writes many)."""
    return [message_id, at, *_exchange_values(exchange)]


def created(stored: Iterable[tuple[Message, StatusEvent | None]]) -> list[Change]:
    """The changes of :func:`insert` results (retries, which stored nothing, left out)."""
    return [Change(message, event, None, True) for message, event in stored
            if event is not None]


def add_event(db: Database, message_id: int, status: str, at: str, source: str,
              detail: dict[str, Any]) -> StatusEvent:
    """Append one entry to a message's status history (its status row unchanged)."""
    text, detail = jsontext.encode(detail) if detail else ("{}", detail)
    cursor = db.conn.execute(
        "insert into message_events (message_id, status, at, source, detail) "
        "values (?, ?, ?, ?, ?)", [message_id, status, at, source, text])
    return StatusEvent(int(cursor.lastrowid or 0), message_id, status, at, source, detail)


def add_events(db: Database, rows: Sequence[tuple[int, str, str, dict[str, Any]]],
               at: str) -> dict[int, StatusEvent]:
    """:func:`add_event` for many messages (one event each at most: message id, status,
    source, detail) in one statement; the events by message id (host.ledger_rows)."""
    args: list[Any] = []
    made: dict[int, StatusEvent] = {}
    for message_id, status, source, detail in rows:
        text, detail = jsontext.encode(detail) if detail else ("{}", detail)
        args += [message_id, status, at, source, text]
        made[message_id] = StatusEvent(0, message_id, status, at, source, detail)
    found = db.conn.execute(
        "insert into message_events (message_id, status, at, source, detail) values "
        + ", ".join(["(?, ?, ?, ?, ?)"] * len(rows)) + " returning id, message_id",
        args).fetchall()
    return {int(m): replace(made[int(m)], id=int(i)) for i, m in found}


def set_statuses(db: Database, rows: Sequence[tuple[int, str, str | None]], at: str) -> None:
    """Many messages' status and broker id (when not None), in one executemany: the
    caller checked no other message of the broker holds the id (host.ledger_rows)."""
    db.conn.executemany("update messages set status = ?, updated_at = ?, broker_message_id "
                        "= coalesce(?, broker_message_id) where id = ?",
                        [[status, at, bid, message_id] for message_id, status, bid in rows])


def status_of(db: Database, message_id: int) -> str | None:
    row = db.conn.execute("select status from messages where id = ?", [message_id]).fetchone()
    return None if row is None else str(row[0])


def change_status(db: Database, message_id: int, status: str, source: str,
                  detail: dict[str, Any], *, at: str | None = None) -> Change:
    """Append a status event and make it the message's current status."""
    old = status_of(db, message_id)
    if old is None:
        raise LookupError(f"no message {message_id}")
    at = at or utcnow()
    event = add_event(db, message_id, status, at, source, detail)
    message = update(db, message_id, at, status=status)
    assert message is not None  # read above, in this transaction
    return queue_callbacks(db, Change(message, event, old))


def queue_callbacks(db: Database, change: Change) -> Change:
    """Queue the callbacks ``change`` asks for (host.callbacks.queue) in the transaction
    that records it, so a committed status change has its callbacks committed with it.
    Every status change announced after its commit passes here first (the router's
    :func:`record_status` excepted: an inbound message asks for no callback). A
    message that asked for none costs the few dict lookups of ``wanted``."""
    if wanted(change):
        enqueue(db, change)
    return change


def record_status(db: Database, message_id: int, status: str, source: str,
                  detail: dict[str, Any], *, route: str | None) -> StatusEvent:
    """As :func:`change_status` with the route taken, for a caller that knows the row
    (the router): nothing read back; the event's ``at`` is the row's ``updated_at``. No
    callback is queued: an inbound message (the router's) never asks for one."""
    now = utcnow()
    event = add_event(db, message_id, status, now, source, detail)
    db.conn.execute("update messages set status = ?, route = ?, updated_at = ? where id = ?",
                    [status, route, now, message_id])
    return event


def update(db: Database, message_id: int, at: str, *, status: str = _KEEP,
           broker_message_id: str | None = None, read: bool = True) -> Message | None:
    """Set a message's ``status`` (when given) and ``broker_message_id`` (when given;
    one the broker reused for another message is kept in ``attrs.broker_message_id``),
    and ``updated_at``; the row as it now is (None: no such message, or not ``read``)."""
    sets, args = ["updated_at = ?"], [at]
    if status is not _KEEP:
        sets.insert(0, "status = ?")
        args.insert(0, status)
    if not read and broker_message_id is None:
        db.conn.execute(f"update messages set {', '.join(sets)} where id = ?",
                        [*args, message_id])
        return None
    if broker_message_id is not None:
        if _taken(db, message_id, broker_message_id):  # the broker reused an id: aside
            return _returning(db, [*sets, "attrs = json_set(attrs, '$.broker_message_id', ?)"],
                              [*args, broker_message_id], message_id)
        return _returning(db, [*sets, "broker_message_id = ?"], [*args, broker_message_id],
                          message_id)
    return _returning(db, sets, args, message_id)


def _taken(db: Database, message_id: int, broker_message_id: str) -> bool:
    """Another message of this one's broker has ``broker_message_id`` (asked first, not
    found by the unique index's refusal: on PostgreSQL a refused statement ends the
    whole transaction)."""
    return db.conn.execute(
        "select 1 from messages where broker = (select broker from messages where id = ?) "
        "and broker_message_id = ? and id != ?",
        [message_id, broker_message_id, message_id]).fetchone() is not None


def _returning(db: Database, sets: list[str], args: list[Any],
               message_id: int) -> Message | None:
    cursor = db.conn.execute(f"update messages set {', '.join(sets)} where id = ? "
                             "returning *", [*args, message_id])
    row = cursor.fetchone()
    if row is None:
        return None
    return Message.from_row(dict(zip([d[0] for d in cursor.description], row, strict=True)))


def touch(db: Database, message_id: int, at: str) -> None:
    """Only ``updated_at`` (a receipt that did not move the status on)."""
    db.conn.execute("update messages set updated_at = ? where id = ?", [at, message_id])


def mark_sending(db: Database, ids: Sequence[int], at: str) -> None:
    """The claimed messages still ``queued`` (or ``scheduled``, now due) are ``sending``
    (no event: a send's outcome is its history)."""
    marks = ",".join("?" * len(ids))
    db.conn.execute(f"update messages set status = 'sending', updated_at = ? "
                    f"where id in ({marks}) and status in ('queued', 'scheduled')",
                    [at, *ids])


def flag(db: Database, message_id: int, name: str) -> None:
    """Set ``attrs.<name>`` to true (``possibly_duplicated``). Read and written back in
    Python: SQLite's ``json_set`` with a computed path and a JSON ``true`` has no
    PostgreSQL spelling (the recovery at start only, never the send path)."""
    row = db.execute("select attrs from messages where id = ?", [message_id]).fetchone()
    if row is None:
        return
    attrs = json.loads(row[0] or "{}")
    attrs[name] = True
    db.conn.execute("update messages set attrs = ? where id = ?",
                    [json.dumps(attrs, ensure_ascii=False), message_id])


def rewrite(db: Database, message_id: int, body: str, encoding: str,
            attrs: dict[str, Any]) -> None:
    """A waiting message's new text and attributes (consolidation, SPEC O5)."""
    db.conn.execute("update messages set body = ?, encoding = ?, updated_at = ?, attrs = ? "
                    "where id = ?", [body, encoding, utcnow(), json.dumps(attrs), message_id])


async def purge(store: Store, cutoff: str, *, batch_size: int, pause: float, dry_run: bool,
                keep: str) -> dict[str, int]:
    """Delete messages (with their status history) last changed before ``cutoff``,
    except those of ``keep`` (a query of ids); the counts per table. Their kept
    exchanges go by the foreign key's cascade (not counted)."""
    # Walked by created_at (indexed; never after updated_at): a batch reads the next
    # old messages only, never the ones kept or changed since.
    counts = await store.purge_table(
        "messages", "updated_at", cutoff, batch_size=batch_size, pause=pause,
        dry_run=dry_run, children=[("message_events", "message_id")], keep=keep,
        walk="created_at")
    if counts["messages"] and not dry_run and store.dialect == "sqlite":
        # The text index keeps what was deleted as markers until its segments merge:
        # merged now (a bounded step: FTS5 'merge' of TEXT_MERGE_PAGES pages), so the
        # space goes back with the rest.
        await store.write(lambda db: db.execute(
            "insert into messages_text (messages_text, rank) values ('merge', ?)",
            [TEXT_MERGE_PAGES]))
    return counts


TEXT_MERGE_PAGES = 2000


# -- after the commit -------------------------------------------------------------------

class Ledger:
    """Stores and announces: the after-commit sequence, and the writes whose callers
    only want them done (:class:`host.messages.Messages` delegates to it)."""

    def __init__(self, store: Store, metrics: Metrics, hooks: MessageHooks,
                 host: object) -> None:
        self._store = store
        self._metrics = metrics
        self._hooks = hooks
        self._host = host  # what the hooks receive as ``host``
        # The core's own listener, after the hooks: wakes the callbacks' worker
        # (host.callbacks) when the change queued callbacks; None, or an awaitable.
        self.on_change: Callable[[Change], Awaitable[None] | None] | None = None
        # The router's lanes (host.routing.leases), taken as MOs are stored; None while
        # routing is off.
        self.lanes: LaneTaker | None = None
        # The router's step that routes a broker's MO in the write storing it
        # (host.routing.ingest); None while routing is off.
        self.ingest: IngestStep | None = None

    async def announce(self, changes: Iterable[Change]) -> None:
        """Run the after-commit sequence for each committed change, in order."""
        for change in changes:
            message = change.message
            if change.created:
                self._metrics.message_stored(message)
                await self._hooks.message_stored(self._host, message)
            else:
                self._metrics.status_changed(message)
            await self._hooks.message_status_changed(self._host, message, change.old,
                                                     message.status, change.event)
            if self.on_change is not None and (pending := self.on_change(change)):
                await pending

    async def add(self, new: NewMessage, *, at_ingest: bool = False) -> tuple[Message, bool]:
        """Store ``new`` durably and announce it; ``(message, created)`` (a broker's
        retry of a stored message comes back with ``created=False``). ``at_ingest`` (a
        broker's MO): routed in the same write when it can be (host.routing.ingest)."""
        ingest = self.ingest if at_ingest and new.direction == "in" and \
            new.status == "received" else None
        if ingest is None:
            message, event = await self._store.write(lambda db: insert(db, new, self.lanes))
            entered = None
        else:
            def write(db: Database) -> tuple[Message, StatusEvent | None, Any]:
                # no lane taken by the insert: one routed here needs none, and the step
                # takes it for one that falls back (host.routing.ingest)
                message, event = insert(db, new, None)
                return message, event, (None if event is None else ingest.step(db, message))
            message, event, entered = await self._store.write(write)
        if event is None:
            return message, False
        stored = Change(message, event, None, True)
        if ingest is not None and entered is not None:
            await ingest.announce(stored, entered)
        else:
            await self.announce((stored,))
        return message, True

    async def add_many(self, news: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
        """Store several messages in one transaction (all or nothing)."""
        rows = await self._store.write(lambda db: [insert(db, n, self.lanes) for n in news])
        await self.announce(created(rows))
        return [(message, event is not None) for message, event in rows]

    async def set_status(self, message_id: int, status: str, *, source: str,
                         detail: dict[str, Any] | None = None) -> tuple[Message, StatusEvent]:
        """Append a status event, make it the message's current status, announce it."""
        change = await self._store.write(
            lambda db: change_status(db, message_id, status, source, detail or {}))
        await self.announce((change,))
        return change.message, change.event
