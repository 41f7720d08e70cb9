"""Settling sends together: what each send came to, written for many in one write.

The sends that end while a settlement write is pending wait for it, then go in the
next write together (:class:`Settler`): one transaction, and one statement per kind
of row for all of them (:mod:`host.ledger_rows`) where the per-send write took five
or more each. Each send is settled exactly as alone (:func:`settle_many`, also used
alone for a send failed at recovery):

* its status event appended (the status the send came to);
* a receipt that came first (by our reference) stands: its status is kept, never
  back to ``queued``, and the message leaves the outbox;
* accepted or failed, it leaves the outbox and the part of a split message after it
  is due, or fails with the rest (:func:`host.brokers.parts.part_left`); a retry's row
  goes back waiting with its next attempt;
* its callbacks are queued in the same transaction when its status is the one asked;
* accepted, the orphan receipts that named it are applied in the same transaction
  (looked for once for the whole write, not one read per send).

A write the database refuses is written again for about a minute, the whole group
together (``Store.write_retrying``); a group's write that raises anything else (a
constraint, a bug: ``host.writepath.refusal`` says None) is not retried as a group but
written again send by send (each then retried alone), so one send's bug does not leave
the others in flight.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from host import ledger
from host.brokers.parts import part_left
from host.brokers.receipts import Applied, adopt_orphans_op
from host.ledger import Change, Exchange
from host.ledger_rows import NewStatus, marks, statuses, update_many
from host.models import utcnow
from host.writepath import refusal

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.outage import Outage
    from host.store import Store

log = logging.getLogger("smshost.sender")

# Most sends one write takes (SQLite's 32766 parameters: 5 per event).
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one send came to: ``status`` asked (``sent``, ``queued``, ``failed``),
    the broker's id when accepted, and the next attempt's time for a retry."""

    message_id: int
    broker: str | None
    status: str
    detail: dict[str, Any]
    broker_message_id: str | None = None
    retry_at: float | None = None  # a retry: back waiting until then
    error: str | None = None  # a retry's last error
    exchange: Exchange | None = None


@dataclass(slots=True)
class Settled:
    """One send's committed settlement: its change, the parts failed after it, and the
    orphan receipts applied to it."""

    change: Change
    later: list[Change] = field(default_factory=list)
    adopted: list[Applied] = field(default_factory=list)


def settle_many(db: Database, items: Sequence[Settlement]) -> list[Settled | LookupError]:
    """Settle ``items`` (one send of a message each) in the caller's transaction; for
    each, what it did, or a LookupError when its message is gone."""
    conn, now = db.conn, utcnow()
    olds = statuses(db, [s.message_id for s in items])
    found = [s for s in items if s.message_id in olds]
    if found:
        _rows(db, found, olds, now)
        events = ledger.add_events(db, [(s.message_id, s.status, "sender", s.detail)
                                        for s in found], now)
        final = [replace(_asked(s), status=s.status if olds[s.message_id] in (
            "queued", "sending") else olds[s.message_id]) for s in found]
        messages = update_many(db, final, now)
        leaving = [s for s in found if s.retry_at is None
                   or olds[s.message_id] not in ("queued", "sending")]
        waited: set[int] = set()
        if leaving:
            ids = [s.message_id for s in leaving]
            conn.execute(f"delete from outbox where message_id in ({marks(len(ids))})", ids)
            waited = {int(r[0]) for r in conn.execute(
                f"select waits_for from outbox where waits_for in ({marks(len(ids))})",
                ids).fetchall()}
        out: dict[int, Settled] = {}
        for s in found:
            old = olds[s.message_id]
            settled = out[s.message_id] = Settled(Change(
                messages[s.message_id], events[s.message_id], old))
            if s.message_id in waited:  # the next part goes now, or fails with the rest
                failed = s.status == "failed" and old in ("queued", "sending")
                settled.later = part_left(db, s.message_id, failed)
            if settled.change.message.status == s.status:  # announced: callbacks queued
                ledger.queue_callbacks(db, settled.change)
        for message_id in _with_orphans(db, [s for s in found if s.broker_message_id]):
            out[message_id].adopted = adopt_orphans_op(db, message_id)
    return [out[s.message_id] if s.message_id in olds
            else LookupError(f"no message {s.message_id}") for s in items]


def _asked(s: Settlement) -> NewStatus:
    return NewStatus(s.message_id, s.status, "sender", s.detail, s.broker,
                     s.broker_message_id)


def _rows(db: Database, found: list[Settlement], olds: dict[int, str], now: str) -> None:
    """The retries' rows back waiting (recovered = 0: this attempt ended, so a crash
    later is not "in a row"), and the exchanges kept."""
    retries = [s for s in found if s.retry_at is not None]
    if retries:
        db.conn.executemany(
            "update outbox set in_flight = 0, claimed_by = null, next_attempt_at = ?, "
            "last_error = ?, recovered = 0 where message_id = ?",
            [[s.retry_at, s.error, s.message_id] for s in retries])
    kept = [s for s in found if s.exchange is not None]
    if kept:
        db.conn.executemany(
            "insert into message_exchanges (message_id, at, kind, request, response) "
            "values (?, ?, ?, ?, ?)", [ledger.exchange_row(s.message_id, now, s.exchange)
                                       for s in kept if s.exchange is not None])


def _with_orphans(db: Database, accepted: list[Settlement]) -> list[int]:
    """Which ``accepted`` sends have orphan receipts waiting (by the broker's id, or by
    our reference with no broker id of their own): one read for them all."""
    rows: list[Any] = []
    for broker in {s.broker for s in accepted}:  # by broker: the index's first column
        mine = [s for s in accepted if s.broker == broker]
        refs = [str(s.message_id) for s in mine]
        bids = [s.broker_message_id for s in mine]
        rows += db.conn.execute(
            "select broker, broker_message_id, ref from orphan_receipts where broker = ? "
            f"and (broker_message_id in ({marks(len(bids))}) or ref in "
            f"({marks(len(refs))}))", [broker, *bids, *refs]).fetchall()
    if not rows:  # the usual case
        return []
    return [s.message_id for s in accepted if any(
        b == s.broker and (bid == s.broker_message_id or (ref == str(s.message_id)
                                                          and not bid))
        for b, bid, ref in rows)]


class Settler:
    """Writes settlements in groups: the ones that ended while a write was pending go
    together in the next. ``keep_going()`` false: a refused write is not tried again
    (the sends stay in flight for the next start)."""

    def __init__(self, store: Store, keep_going: Callable[[], bool], outage: Outage,
                 retries: Sequence[float]) -> None:
        self._store = store
        self._keep_going = keep_going
        self._outage = outage
        self._retries = retries
        self._pending: list[tuple[Settlement, asyncio.Future[Settled | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def settle(self, item: Settlement) -> Settled | None:
        """``item`` written (None: the database refused it for too long); raises
        LookupError when its message is gone."""
        future: asyncio.Future[Settled | None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="smshost-settler")
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self._write([item for item, _ in batch])
            # A bug in the group's write: each send written alone (queued together, the
            # writer keeps each write's failure to itself), so only its own send meets
            # it (BLE001: it goes to that send's task).
            except Exception:  # noqa: BLE001
                await asyncio.gather(*(self._alone(item, future) for item, future in batch))
                continue
            outcomes: Sequence[Settled | LookupError | None] = \
                [None] * len(batch) if results is None else results
            for (_, future), result in zip(batch, outcomes, strict=True):
                _resolve(future, result)

    async def _write(self, items: list[Settlement]) -> list[Settled | LookupError] | None:
        what = (f"message {items[0].message_id}: the outcome of its send" if len(items) == 1
                else f"the outcomes of {len(items)} sends")
        # A group's non-refusal error goes to _drain (each send alone, then retried as
        # a refusal is: a trigger refusing the statement, say, may be dropped).
        fn = _settle_or_bug if len(items) > 1 else settle_many
        try:
            return await self._store.write_retrying(
                lambda db: fn(db, items), self._retries, self._keep_going, what,
                self._outage)
        except _Bug as bug:
            raise bug.error from None

    async def _alone(self, item: Settlement, future: asyncio.Future[Settled | None]) -> None:
        try:
            results = await self._write([item])
        except Exception as exc:  # noqa: BLE001 (to the send's task, which logs it)
            if not future.done():
                future.set_exception(exc)
            return
        _resolve(future, results[0] if results else None)


class _Bug(Exception):  # private: never leaves this module (Settler._write unwraps it)
    """A database error that is no refusal (a constraint, a bug), carried past
    ``Store.write_retrying``: retried, it would be met again for a minute, then leave
    every send of the group in flight until a restart."""

    def __init__(self, error: sqlite3.Error) -> None:
        super().__init__(str(error))
        self.error = error


def _settle_or_bug(db: Database, items: Sequence[Settlement]) -> list[Settled | LookupError]:
    try:
        return settle_many(db, items)
    except sqlite3.Error as exc:
        if refusal(exc) is not None:
            raise  # the disk, a lock: written again later, the group together
        raise _Bug(exc) from exc


def _resolve(future: asyncio.Future[Settled | None],
             result: Settled | LookupError | None) -> None:
    if future.done():
        return
    if isinstance(result, LookupError):
        future.set_exception(result)
    else:
        future.set_result(result)
