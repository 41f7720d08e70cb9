"""The parts of a split message leave in order (SPEC O4).

With ``mt.parsing = "split"`` a long text is stored as one message per segment
(``attrs.part`` of ``attrs.part_of``, consecutive ids), each with its outbox row. Every
part but the first *waits*: its row's ``waits_for`` names the part before it, and a
waiting row is not due (not read, not claimed: it takes no send slot and no token)
until that part leaves the outbox:

* accepted by the broker (``sent``, or a receipt said the broker has it): the next part
  is due at once, and goes out after it;
* failed for good: the parts after it fail too, with the reason
  ``not sent: part k of n (message id) failed`` (the recipient would read a text with
  a hole in it).

A part waiting for its retry stays in the outbox, so the parts after it wait with it;
after a crash the rows say the same, so a restart keeps the order. Each of these steps
runs in the transaction that takes the part out of the outbox.
"""

from __future__ import annotations

import json
from typing import Any

from host import ledger
from host.ledger import Change



def part_left(db: Any, message_id: int, failed: bool) -> list[Change]:
    """``message_id`` left the outbox: the part waiting for it is due now or, when
    ``failed``, fails with every part after it; the messages that failed so."""
    conn = db.conn
    changed: list[Change] = []
    reason = ""
    current = message_id
    while (row := conn.execute("select message_id from outbox where waits_for = ?",
                               [current]).fetchone()) is not None:
        if not failed:
            conn.execute("update outbox set waits_for = null where message_id = ?", [row[0]])
            break
        reason = reason or _reason(db, message_id)
        changed.append(_fail(db, row[0], reason))
        current = row[0]
    return changed


def repair(db: Any) -> int:
    """At start: parts waiting for a part that is no longer in the outbox (its message
    deleted, say, as no settlement leaves one so) go on as if it had left now; how many."""
    rows = db.conn.execute(
        "select o.waits_for, m.status from outbox o left join messages m on m.id = "
        "o.waits_for where o.waits_for is not null and not exists (select 1 from outbox "
        "p where p.message_id = o.waits_for)").fetchall()
    for before, status in rows:
        part_left(db, before, failed=status == "failed")
    return len(rows)


def _reason(db: Any, message_id: int) -> str:
    row = db.conn.execute("select attrs from messages where id = ?", [message_id]).fetchone()
    attrs = json.loads(row[0] or "{}") if row is not None else {}
    part, total = attrs.get("part"), attrs.get("part_of")
    which = f"part {part} of {total}" if part and total else "the part before"
    return f"not sent: {which} (message {message_id}) failed"


def _fail(db: Any, message_id: int, reason: str) -> Change:
    change = ledger.change_status(db, message_id, "failed", "sender", {"error": reason})
    db.conn.execute("delete from outbox where message_id = ?", [message_id])
    return change
