"""The ledger's writes of many messages at once, around :func:`host.ledger.add_events`
and :func:`host.ledger.set_statuses` (the ledger stays the one writer of ``messages``
and ``message_events``): the reads they need, done once for all.

The outbox worker settles the sends that ended while a write was pending in one write
(:mod:`host.brokers.settlements`). Each statement repeated per message is written once
for them all: on PostgreSQL every statement is a network round trip
(:mod:`host.pg`), so a batch of n settlements costs a handful of round trips, not 5n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.ledger import set_statuses, update
from host.models import Message

if TYPE_CHECKING:
    from sqlite_utils import Database


@dataclass(frozen=True, slots=True)
class NewStatus:
    """One message's new status (its event's ``source`` and ``detail``), and the
    broker's id for it when the broker gave one."""

    message_id: int
    status: str
    source: str
    detail: dict[str, Any]
    broker: str | None = None
    broker_message_id: str | None = None


def marks(n: int) -> str:
    return ",".join("?" * n)


def statuses(db: Database, ids: Sequence[int]) -> dict[int, str]:
    """The current status of each of ``ids`` still stored (one read)."""
    rows = db.conn.execute(f"select id, status from messages where id in ({marks(len(ids))})",
                           list(ids)).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


def update_many(db: Database, news: Sequence[NewStatus], at: str) -> dict[int, Message]:
    """Set each message's status and broker id (as :func:`host.ledger.update`: an id the
    broker reused for another message of it, stored or earlier in ``news``, is kept in
    ``attrs.broker_message_id``); the rows as they now are, by id."""
    given = [n for n in news if n.broker_message_id is not None]
    held: dict[tuple[str | None, str | None], int] = {}
    for broker in {n.broker for n in given}:  # asked first, not found by the unique
        # index's refusal (see ledger._taken); by (broker, id): that index's order
        bids = [n.broker_message_id for n in given if n.broker == broker]
        held.update(((broker, bid), int(i)) for i, bid in db.conn.execute(
            "select id, broker_message_id from messages where broker = ? and "
            f"broker_message_id in ({marks(len(bids))})", [broker, *bids]).fetchall())
    reused: set[int] = set()
    for n in given:  # in order: the first of the batch to get an id holds it
        key = (n.broker, n.broker_message_id)
        if held.setdefault(key, n.message_id) != n.message_id:
            reused.add(n.message_id)  # stored already, or earlier in this batch
    plain = [n for n in news if n.message_id not in reused]
    if plain:
        set_statuses(db, [(n.message_id, n.status, n.broker_message_id) for n in plain], at)
    found: dict[int, Message] = {}
    for n in news:
        if n.message_id in reused:  # rare: one statement each, as the ledger does it
            message = update(db, n.message_id, at, status=n.status,
                             broker_message_id=n.broker_message_id)
            if message is not None:
                found[n.message_id] = message
    ids = [n.message_id for n in plain]
    if ids:
        found.update({int(r["id"]): Message.from_row(r) for r in db.query(
            f"select * from messages where id in ({marks(len(ids))})", ids)})
    return found
