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

from host import conversations, jsontext, textindex
from host.conversations import Conversation
from host.ledger import NewMessage, purge
from host.models import DIRECTIONS, Direction, Message, StatusEvent

if TYPE_CHECKING:
    from host.ledger import Ledger
    from host.store import Store

__all__ = ["MessageFilter", "Messages", "NewMessage", "find_rows", "first_id_since", "statuses_of"]


MIN_TEXT = 3
"""The shortest text a search takes: the trigram index (m014) matches 3 characters on."""


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """One page of a message search. Every filter given must hold (and). ``number``:
    either party (``local`` or ``remote``), as stored (E.164 after normalisation);
    ``text``: a substring of the body, any case, :data:`MIN_TEXT` characters or more;
    ``since`` (inclusive) and ``until`` (exclusive): ``created_at``; ``conversation``:
    ``(local, remote)``, ``local`` ``''`` for none. ``before_id``: the page older than
    it (newest first); ``after_id``: the page newer than it (still listed newest
    first)."""

    direction: Direction | None = None
    status: str | None = None
    broker: str | None = None
    since: str | None = None
    before_id: int | None = None
    limit: int = 50
    account: str | None = None
    number: str | None = None
    text: str | None = None
    until: str | None = None
    conversation: tuple[str, str] | None = None
    after_id: int | None = None

    def __post_init__(self) -> None:
        if self.text is not None and len(self.text) < MIN_TEXT:
            raise ValueError(f"a text search needs {MIN_TEXT} characters or more")

    def cursors(self, ids: Sequence[int]) -> tuple[int | None, int | None]:
        """The cursors around a page of this search that listed ``ids`` (newest first):
        ``(before, after)``, the ``before_id`` of the page older than it and the
        ``after_id`` of the page newer than it, None where there is none to show (the
        first page has no newer one: ask ``after`` the newest id seen for what came
        since). Ids, not offsets: a page stays the same while messages arrive."""
        if not ids:
            return None, None
        full = len(ids) == self.limit
        older = ids[-1] if full or self.after_id is not None else None
        newer = ids[0] if self.before_id is not None or (
            self.after_id is not None and full) else None
        return older, newer


class Messages:
    """Query the messages of one host; store and change them through its ledger."""

    def __init__(self, store: Store, ledger: Ledger) -> None:
        self._store = store
        self._ledger = ledger

    async def add(self, new: NewMessage, *, at_ingest: bool = False) -> tuple[Message, bool]:
        """Store ``new`` durably; return ``(message, created)``.

        A message whose (broker, broker_message_id) is already stored is not stored
        again: the existing one comes back with ``created=False`` (a broker retry).
        ``at_ingest``: an MO routed in the write that stores it when it can be
        (host.routing.ingest; the broker webhooks ask for it).
        """
        return await self._ledger.add(new, at_ingest=at_ingest)

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
        """Newest first, ``flt.limit`` at most, before ``flt.before_id`` (or after
        ``flt.after_id``) when given."""
        if flt.text is not None:  # the text index is written in batches: the rest now
            await textindex.catch_up(self._store)
        rows = await self._store.read(partial(find_rows, flt=flt))
        return [Message.from_row(r) for r in rows]

    async def exchanges(self, message_id: int) -> list[dict[str, Any]]:
        """What was kept of the message's exchanges with its broker, in order (an MO's
        webhook, each send's request and answer): kind, at, request, response."""
        rows = await self._store.read(lambda db: list(db.query(
            "select kind, at, request, response from message_exchanges "
            "where message_id = ? order by id limit 100", [message_id])))
        return [{**r, "request": jsontext.loads(r["request"]),
                 "response": jsontext.loads(r["response"])} for r in rows]

    async def conversations(self, *, before: int | None = None, after: int | None = None,
                            limit: int = 50) -> list[Conversation]:
        """A page of conversations, latest first (host.conversations)."""
        return await self._store.read(partial(conversations.page, before=before,
                                              after=after, limit=limit))

    async def conversation(self, local: str, remote: str) -> Conversation | None:
        return await self._store.read(lambda db: conversations.one(db, local, remote))


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
    low = flt.after_id + 1 if flt.after_id is not None else None
    if flt.since is not None:
        first = first_id_since(db, flt.since)
        if first is None:
            return []
        low = first if low is None else max(low, first)
    high = flt.before_id
    if flt.until is not None:
        # Messages from ``until`` on have this id or more, unless the clock was set back
        # after it (a later id with an earlier time): then no bound, the filter only.
        first = first_id_since(db, flt.until)
        if first is not None and not db.execute(
                "select 1 from clock_steps where before_max >= ? limit 1",
                [flt.until]).fetchone():
            high = first if high is None else min(high, first)
    if flt.text is not None or flt.number is not None or flt.conversation is not None:
        rows = search_rows(db, flt, low, high)
    else:
        rows = _page(db, flt, low, high)
    return rows[::-1] if flt.after_id is not None else rows


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
    tail, tail_args = _tail(flt, low, high)
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
    order = "asc" if flt.after_id is not None else "desc"
    return list(db.query(" union all ".join(selects) + f" order by id {order} limit ?",
                         [*args, flt.limit]))


def _tail(flt: MessageFilter, low: int | None, high: int | None,
          column: str = "id") -> tuple[list[str], list[Any]]:
    """The clauses every arm of a page has: the id bounds and the filters no index
    drives (``+``: a filter, not an index; the ids bound the time)."""
    tail, args = [], []
    for clause, value in ((f"{column} >= ?", low), (f"{column} < ?", high),
                          ("+created_at >= ?", flt.since), ("+created_at < ?", flt.until),
                          ("+account = ?", flt.account)):
        if value is not None:
            tail.append(clause)
            args.append(value)
    return tail, args


def _text_match(db: Database, text: str | None) -> tuple[str | None, str]:
    """The argument and the clause that find ``text`` in ``messages_text t``: the FTS5
    trigram index's phrase on SQLite, a pg_trgm-indexed ``ilike`` on PostgreSQL."""
    if text is None:
        return None, ""
    if isinstance(db, Database):
        return '"' + text.replace('"', '""') + '"', "t.messages_text match ?"
    literal = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{literal}%", "t.body like ? escape '\\'"


def search_rows(db: Database, flt: MessageFilter, low: int | None,
                high: int | None) -> list[dict[str, Any]]:
    """A page of a search by text, number or conversation, each driven by its index:
    the trigram index (its matches in id order), or messages_remote and
    messages_local (a number's messages in id order, either party, merged)."""
    order = "asc" if flt.after_id is not None else "desc"
    equal = [(f"+{c} = ?", getattr(flt, c)) for c in ("direction", "status", "broker")
             if getattr(flt, c) is not None]
    if flt.conversation is not None:
        equal.append(("+coalesce(local, '') = ?", flt.conversation[0]))
    phrase, match = _text_match(db, flt.text)
    party = _party(flt)
    if phrase is not None and (party is None or not _few(db, flt)):
        tail, args = _tail(flt, low, high, "t.rowid")
        where = [*tail, *(c for c, _ in equal)]
        values = [*args, *(v for _, v in equal)]
        if party is not None:  # a busy number: its messages with the text come soon
            where.append(party[0])
            values += party[1]
        return list(db.query(
            "select m.* from messages_text t join messages m on m.id = t.rowid "
            f"where {match} {''.join(' and ' + w for w in where)} "
            f"order by t.rowid {order} limit ?", [phrase, *values, flt.limit]))
    if phrase is not None:  # a number with few messages: each looked up in the index
        equal.append((f"exists (select 1 from messages_text t where {match} "
                      "and t.rowid = id)", phrase))
    tail, args = _tail(flt, low, high)
    clauses = [*tail, *(c for c, _ in equal)]
    values = [*args, *(v for _, v in equal)]
    if flt.conversation is not None:
        arms = [("remote = ?", [flt.conversation[1]])]
    else:
        assert flt.number is not None
        arms = [("remote = ?", [flt.number]),
                ("local = ? and remote is not ?", [flt.number, flt.number])]
    selects, params = [], []
    for first, first_args in arms:
        selects.append(f"select * from messages where {' and '.join([first, *clauses])}")
        params += [*first_args, *values]
    return list(db.query(" union all ".join(selects) + f" order by id {order} limit ?",
                         [*params, flt.limit]))


FEW = 1000
"""Messages of a number (or conversation) up to which a text search within them walks
them (one text index lookup each) rather than the text's matches."""


def _party(flt: MessageFilter) -> tuple[str, list[str]] | None:
    """The clause naming the number or the conversation of ``flt`` (None: neither)."""
    if flt.conversation is not None:
        return "m.remote = ? and coalesce(m.local, '') = ?", [flt.conversation[1],
                                                               flt.conversation[0]]
    if flt.number is not None:
        return "(m.remote = ? or m.local = ?)", [flt.number, flt.number]
    return None


def _few(db: Database, flt: MessageFilter) -> bool:
    """Whether the number or conversation of ``flt`` has at most :data:`FEW` messages
    (counted in its indexes, FEW entries at most)."""
    numbers = [flt.conversation[1]] if flt.conversation is not None else \
        [flt.number] * 2
    columns = ("remote", "local")[:len(numbers)]
    total = 0
    for column, number in zip(columns, numbers, strict=True):
        total += db.execute(f"select count(*) from (select 1 from messages where {column} "
                            "= ? limit ?) as few", [number, FEW + 1]).fetchone()[0]
    return total <= FEW


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
