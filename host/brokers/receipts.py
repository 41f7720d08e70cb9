"""Delivery receipts: correlate, record, move status forward only (SPEC O8).

A receipt names a message by the broker's message id (or by our reference, for brokers
that echo it back). Each receipt is appended to the message's status history; the
message's status changes only when the new state is further along (a final state never
changes, a late "sent" after "delivered" stays in the history only). A receipt for an
id we do not know is kept as an orphan, answered 2xx, and applied when the send it
belongs to records its broker message id (:meth:`Receipts.adopt_orphans`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from host.brokers.engine import ReceiptFields
from host.brokers.parts import part_left
from host import ledger
from host.ledger import Change
from host.models import Message, StatusEvent, bounded_int, moves_forward, utcnow

if TYPE_CHECKING:
    from host.ledger import Ledger
    from host.store import Store


@dataclass(frozen=True, slots=True)
class Applied:
    """What one receipt did."""

    message: Message | None  # None: kept as an orphan
    event: StatusEvent | None
    old: str | None
    changed: bool


def _detail(fields: ReceiptFields) -> dict[str, Any]:
    detail: dict[str, Any] = {"broker_status": fields.raw_status}
    for key in ("error", "error_text", "timestamp", "to"):
        value = getattr(fields, key)
        if value:
            detail[key] = value
    if fields.attrs:
        detail["attrs"] = fields.attrs
    return detail


def _find(db: Database, broker: str, fields: ReceiptFields) -> dict[str, Any] | None:
    if fields.id:
        rows = list(db.query(
            "select * from messages where broker = ? and broker_message_id = ? "
            "and direction = 'out'", [broker, fields.id]))
        if rows:
            return rows[0]
    ref = bounded_int(fields.ref) if fields.ref else None
    if ref is not None:
        rows = list(db.query("select * from messages where id = ? and direction = 'out' "
                             "and broker = ?", [ref, broker]))
        if rows:
            return rows[0]
    return None


def _apply_row(db: Database, row: dict[str, Any], status: str,
               detail: dict[str, Any], at: str) -> Applied:
    old = row["status"]
    last = db.conn.execute("select status, detail, source from message_events "
                           "where message_id = ? order by id desc limit 1", [row["id"]]).fetchone()
    if last is not None and last[2] == "receipt" and last[0] == status \
            and json.loads(last[1]) == detail:
        return Applied(Message.from_row(row), None, old, False)  # a broker retry
    event = ledger.add_event(db, row["id"], status, at, "receipt", detail)
    changed = moves_forward(old, status)
    if changed:
        ledger.update(db, row["id"], at, status=status, read=False)
        if status not in ("queued", "sending"):
            # The broker has it: a retry waiting in the outbox must not send it again (a
            # send under way settles by this status, see host.brokers.settlements).
            if db.conn.execute("delete from outbox where message_id = ? and in_flight = 0",
                               [row["id"]]).rowcount:
                part_left(db, row["id"], failed=False)  # a split message's next part goes
        row = {**row, "status": status, "updated_at": at}
    else:
        ledger.touch(db, row["id"], at)
    message = Message.from_row(row)
    if changed:  # announced after the commit (Receipts._announce): callbacks queued now
        ledger.queue_callbacks(db, Change(message, event, old))
    return Applied(message, event, old, changed)


def apply_receipt(db: Database, broker: str, fields: ReceiptFields) -> Applied:
    """One write: apply ``fields`` to its message, or keep it as an orphan."""
    now = utcnow()
    row = _find(db, broker, fields)
    detail = _detail(fields)
    if row is None:
        db.conn.execute(
            "insert into orphan_receipts (broker, broker_message_id, ref, status, detail, "
            "received_at, updated_at) values (?, ?, ?, ?, ?, ?, ?)",
            [broker, fields.id, fields.ref, fields.status, json.dumps(detail), now, now])
        return Applied(None, None, None, False)
    return _apply_row(db, row, fields.status, detail, now)


def adopt_orphans_op(db: Database, message_id: int) -> list[Applied]:
    """Apply the orphan receipts that name ``message_id``'s broker id, or our reference
    with no broker id of their own (one that names another id is someone else's, e.g.
    from before a data reset), oldest first."""
    rows = list(db.query("select * from messages where id = ?", [message_id]))
    if not rows or not rows[0]["broker_message_id"]:
        return []
    row = rows[0]
    orphans = list(db.query(
        "select * from orphan_receipts where broker = ? and (broker_message_id = ? or "
        "(ref = ? and (broker_message_id is null or broker_message_id = ''))) order by id",
        [row["broker"], row["broker_message_id"], str(message_id)]))
    applied: list[Applied] = []
    if not orphans:
        return applied
    for orphan in orphans:
        result = _apply_row(db, row, orphan["status"], json.loads(orphan["detail"]),
                            utcnow())
        assert result.message is not None
        row = {**row, "status": result.message.status}
        applied.append(result)
    db.conn.execute(f"delete from orphan_receipts where id in ({','.join('?' * len(orphans))})",
                    [o["id"] for o in orphans])
    return applied


class Receipts:
    """Applies receipts for one host and announces the changes. ``wake`` tells the
    outbox worker a message left the outbox (the next part of a split message is due)."""

    def __init__(self, store: Store, ledger: Ledger,
                 wake: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._ledger = ledger
        self.wake = wake

    async def apply(self, broker: str, fields: ReceiptFields) -> Applied:
        applied = await self._store.write(lambda db: apply_receipt(db, broker, fields))
        if applied.changed and applied.old == "queued":  # it left the outbox: the next
            self.wake()                                  # part of a split message is due
        await self._announce(applied)
        return applied

    async def adopt_orphans(self, message_id: int) -> list[Applied]:
        """Call after a send recorded its broker message id."""
        waiting = self._store.read_now(lambda db: db.execute(
            "select 1 from orphan_receipts o join messages m on m.id = ? and o.broker = "
            "m.broker and (o.broker_message_id = m.broker_message_id or (o.ref = ? and "
            "(o.broker_message_id is null or o.broker_message_id = ''))) limit 1",
            [message_id, str(message_id)]).fetchone())
        if waiting is None:  # the usual case: no write needed
            return []
        results = await self._store.write(lambda db: adopt_orphans_op(db, message_id))
        for applied in results:
            await self._announce(applied)
        return results

    async def _announce(self, applied: Applied) -> None:
        if applied.message is None or applied.event is None or not applied.changed:
            return
        await self._ledger.announce((Change(applied.message, applied.event, applied.old),))
