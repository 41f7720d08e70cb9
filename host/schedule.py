"""Scheduled sends and cancelling (issue 16 point 2).

A send with ``send_at`` in the future is stored like any other, with its outbox row,
but ``scheduled`` and with the row's ``next_attempt_at`` (the outbox's not-before
time, in the due index ``outbox_account_due``) at ``send_at``: the sender reads only
due rows, so it is never claimed early, and it survives a restart as the row it is.
The sender's wake-up already looks at the earliest ``next_attempt_at`` to come
(:func:`host.brokers.claims.claim`). A ``send_at`` now or in the past sends now; one
beyond ``outbox.schedule_horizon`` is refused.

Cancelling takes a message out of the outbox while no broker has it: one conditional
``DELETE ... where in_flight = 0`` decides it in the writer's transaction, as the
sender's claim is one conditional ``UPDATE ... where in_flight = 0``: whichever comes
first wins, so a message is either cancelled or sent, never both. The parts of a split
message after a cancelled one are cancelled with it (the recipient would read a text
with a hole in it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from host import ledger
from host.ledger import Change
from host.models import from_epoch, read_iso
from host.sends import SendError

CANCELLABLE = ("scheduled", "queued")


def parse_send_at(text: str) -> float:
    """An RFC 3339 time with its offset (``Z`` or ``+02:00``) as Unix seconds;
    ``ValueError`` saying why for anything else (a time without an offset is
    ambiguous: refused)."""
    moment, value = read_iso(text, "an RFC 3339")
    if moment.tzinfo is None or "T" not in value.upper():
        raise ValueError(f"{text!r} needs a date, a time and an offset (Z or +hh:mm), "
                         "e.g. 2026-11-27T09:00:00Z")
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{text!r} is out of range") from None


def not_before(send_at: float | None, now: float, horizon: float) -> float | None:
    """The time a send waits for: None to send now (no ``send_at``, or one now or
    past); :class:`SendError` 400 naming ``send_at`` beyond ``horizon`` seconds."""
    if send_at is None or send_at <= now:
        return None
    if send_at - now > horizon:
        raise SendError(400, "bad_parameter", f"send_at: {from_epoch(send_at)} is more "
                        f"than {horizon:g} s ahead (outbox.schedule_horizon)")
    return send_at


# -- cancelling --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Cancelled:
    """How a cancel went: ``changes`` (the message, then the parts after it) when it was
    cancelled; otherwise ``status`` is the message's (None: no such message) and
    ``owner`` who sent it."""

    changes: list[Change]
    status: str | None = None
    owner: str | None = None


def owner_of(db: Any, message_id: int) -> tuple[str | None, str | None]:
    """(status, login of the user who sent it) of an outbound message; (None, None)
    when there is none."""
    row = db.conn.execute("select status from messages where id = ? and direction = 'out'",
                          [message_id]).fetchone()
    if row is None:
        return None, None
    first = db.conn.execute("select detail from message_events where message_id = ? "
                            "order by id limit 1", [message_id]).fetchone()
    detail = json.loads(first[0] or "{}") if first is not None else {}
    by = detail.get("by") if isinstance(detail, dict) else None
    return str(row[0]), by if isinstance(by, str) else None


def cancel(db: Any, message_id: int, who: str,
           may: Callable[[str | None], bool]) -> Cancelled:
    """Cancel ``message_id`` if it waits in the outbox, not in flight, and ``may(owner)``
    (the caller may cancel a message its ``owner`` sent); one transaction."""
    status, owner = owner_of(db, message_id)
    if status is None or not may(owner):
        return Cancelled([], status, owner)
    gone = db.conn.execute("delete from outbox where message_id = ? and in_flight = 0 "
                           "returning message_id", [message_id]).fetchone()
    if gone is None:  # the sender claimed it first, or it left the outbox
        return Cancelled([], status, owner)
    changes = [ledger.change_status(db, message_id, "cancelled", "api", {"by": who})]
    current = message_id
    while (row := db.conn.execute("select message_id from outbox where waits_for = ?",
                                  [current]).fetchone()) is not None:
        db.conn.execute("delete from outbox where message_id = ?", [row[0]])
        changes.append(ledger.change_status(
            db, row[0], "cancelled", "api",
            {"by": who, "error": f"not sent: the part before (message {current}) was "
                                 "cancelled"}))
        current = row[0]
    return Cancelled(changes, "cancelled", owner)
