"""The outbox worker's reads and claims (SPEC O6): which due messages it may take,
account by account, and taking them.

Every outbox row names its message's broker and account (migration
``m006_outbox_accounts``); :func:`due_messages` reads each asked account from the
index ``outbox_account_due``, so however long the backlog of an account waiting for
its tokens, it is not read at all. A part of a split message waiting for the part
before it (``waits_for``, see :mod:`host.brokers.parts`) is not due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from host import ledger
from host.brokers.pacing import Key
from host.models import Message, utcnow


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message claimed for one attempt (its row as claimed, with that attempt's count)."""

    message: Message
    attempts: int
    enqueued_at: float


def due_messages(asks: list[tuple[Key, int]], now: float, window: int, strays: bool,
                 accounts: list[Key], db: Any) -> tuple[list[tuple[int, str, str]], bool]:
    """The first due messages (id, broker, account) in due order: at most ``limit`` of
    each asked account, read from its index, so that however long the backlog of an
    account without tokens it is not read at all. With ``strays``, also the messages of
    accounts not in ``accounts`` (a scan: only now and then), and whether there were."""
    rows: list[tuple[float, int, str, str]] = []
    found = False
    for (broker, account), limit in asks:
        rows += db.execute(
            "select next_attempt_at, message_id, broker, account from outbox "
            "where broker = ? and account = ? and in_flight = 0 and waits_for is null "
            "and next_attempt_at <= ? "
            "order by next_attempt_at, message_id limit ?",
            [broker, account, now, limit]).fetchall()
    if strays:
        skip, skipped = without(accounts)
        stray_rows = db.execute(
            "select next_attempt_at, message_id, broker, account from outbox o "
            f"where in_flight = 0 and waits_for is null and next_attempt_at <= ?{skip} "
            "order by next_attempt_at, message_id limit ?", [now, *skipped, window]
        ).fetchall()
        found = bool(stray_rows)
        rows = stray_rows + rows  # first: they fail at once, and must not wait behind
    known = set(accounts)
    rows.sort(key=lambda r: (0 if (r[2], r[3]) not in known else 1, r[0], r[1]))
    return [(message_id, broker, account) for _, message_id, broker, account in rows], found


def claim(ids: list[int], now: float, node: str | None, db: Any
          ) -> tuple[list[Claimed], float | None]:
    """Mark ``ids`` in flight, claimed by ``node`` (those still waiting: a receipt may
    have taken one meanwhile) and their messages ``sending``; the claimed ones, in the
    order of ``ids``, and the next attempt due after ``now``."""
    conn = db.conn
    claimed: list[Claimed] = []
    if ids:
        marks = ",".join("?" * len(ids))
        # Only the rows still waiting (a receipt may have taken one meanwhile).
        taken = {r[0]: (r[1], r[2]) for r in conn.execute(
            f"update outbox set in_flight = 1, attempts = attempts + 1, claimed_by = ? "
            f"where message_id in ({marks}) and in_flight = 0 "
            "returning message_id, attempts, enqueued_at", [node, *ids]).fetchall()}
        if taken:
            marks = ",".join("?" * len(taken))
            ledger.mark_sending(db, list(taken), utcnow())
            found = {r["id"]: r for r in db.query(
                f"select * from messages where id in ({marks})", list(taken))}
            claimed = [Claimed(Message.from_row(found[i]), *taken[i])
                       for i in ids if i in taken and i in found]
    nxt = conn.execute("select min(next_attempt_at) from outbox where in_flight = 0 "
                       "and next_attempt_at > ?", [now]).fetchone()[0]
    return claimed, nxt


def orphans(db: Any, since: float) -> list[tuple[int, int]]:
    """The rows in flight whose claimant is dead (no heartbeat since ``since``, no row,
    or claimed before nodes had ids): (message id, times recovered)."""
    rows = db.conn.execute(
        "select message_id, recovered from outbox where in_flight = 1 and (claimed_by "
        "is null or claimed_by not in (select id from nodes where heartbeat_at >= ?))",
        [since]).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]


def without(keys: list[Key]) -> tuple[str, list[str]]:
    """The SQL (over the outbox's ``broker`` and ``account``) that leaves out the
    messages of ``keys``, and its arguments."""
    if not keys:
        return "", []
    rows = ", ".join("(?, ?)" for _ in keys)
    return (f" and (broker, account) not in (values {rows})",
            [part for key in keys for part in key])
