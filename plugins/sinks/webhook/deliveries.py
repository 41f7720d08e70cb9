"""The webhook sink's tables: deliveries and their attempts, and the queries on them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database, Migrations

from host.api import from_epoch

from .settings import STATUSES

if TYPE_CHECKING:
    pass

# -- storage ----------------------------------------------------------------------------

migrations = Migrations("smshost-webhook")


@migrations()
def m001_deliveries(db: Database) -> None:
    db.execute("""
        create table webhook_deliveries (
            id integer primary key autoincrement,
            message_id integer,
            route text not null,
            target text not null,
            payload text not null,
            status text not null,
            attempts integer not null default 0,
            replays integer not null default 0,
            next_attempt_at text,
            last_attempt_at text,
            last_status integer,
            last_error text,
            created_at text not null,
            updated_at text not null,
            delivered_at text,
            dead_at text
        )""")
    db.execute("create unique index webhook_deliveries_once "
               "on webhook_deliveries (message_id, route, target)")
    db.execute("create index webhook_deliveries_status on webhook_deliveries (status, id)")
    db.execute("create index webhook_deliveries_updated on webhook_deliveries (updated_at)")
    db.execute("""
        create table webhook_attempts (
            id integer primary key,
            delivery_id integer not null references webhook_deliveries (id),
            attempt integer not null,
            replay integer not null,
            started_at text not null,
            finished_at text not null,
            http_status integer,
            outcome text not null,
            error text,
            next_attempt_at text
        )""")
    db.execute("create index webhook_attempts_delivery on webhook_attempts (delivery_id)")


@migrations()
def m002_target_index(db: Database) -> None:
    # The deliveries API filters by target (and status): read through this index in
    # id order, a target matching few or none of the rows costs a seek, not a scan.
    db.execute("create index webhook_deliveries_target on webhook_deliveries "
               "(target, status, id)")


@migrations()
def m003_owner(db: Database) -> None:
    # The node that keeps a pending delivery in its queue (host.cluster's node id): a
    # starting node, and each node after each heartbeat, adopts the pending deliveries
    # of dead nodes (and those from before, null) instead of every pending one.
    db.execute("alter table webhook_deliveries add column node text")


ADOPT = ("update webhook_deliveries set node = ? where status = 'pending' and (node is null "
         "or node = ? or node not in (select id from nodes where heartbeat_at >= ?)) "
         "returning id, next_attempt_at")


def orphaned(db: Database, since: float) -> bool:
    """Whether a pending delivery belongs to a dead node (or to none)."""
    return db.conn.execute(
        "select 1 from webhook_deliveries where status = 'pending' and (node is null or "
        "node not in (select id from nodes where heartbeat_at >= ?)) limit 1",
        [since]).fetchone() is not None


def adopt(db: Database, node: str, since: float, mine: bool
          ) -> list[tuple[int, str | None]]:
    """Take the pending deliveries of dead nodes (no heartbeat since ``since``, or none
    named) for ``node``, and with ``mine`` those ``node`` has (a sink built again by a
    live change reads them): their ids and next attempts."""
    return [(int(r[0]), r[1]) for r in db.conn.execute(
        ADOPT, [node, node if mine else "", since]).fetchall()]


COLUMNS = ("id, message_id, route, target, status, attempts, replays, next_attempt_at, "
            "last_attempt_at, last_status, last_error, created_at, updated_at, delivered_at, "
            "dead_at")


def enqueue(db: Database, message_id: int, route: str, target: str, payload: str,
            now: str, node: str | None = None) -> tuple[int, bool]:
    cur = db.conn.execute(
        "insert or ignore into webhook_deliveries (message_id, route, target, payload, "
        "status, next_attempt_at, created_at, updated_at, node) "
        "values (?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
        [message_id, route, target, payload, now, now, now, node])
    if cur.rowcount == 1:
        return int(cur.lastrowid or 0), True
    row = db.conn.execute("select id from webhook_deliveries where message_id = ? and "
                          "route = ? and target = ?", [message_id, route, target]).fetchone()
    return int(row[0]), False


@dataclass(frozen=True, slots=True)
class Result:
    """How one attempt ended."""

    outcome: str  # "delivered", "retry" or "dead"
    http_status: int | None
    error: str | None
    started: float
    finished: float
    next_attempt: float | None = None


def record(db: Database, row: dict[str, Any], result: Result) -> bool:
    """Store the attempt; False when the row was no longer pending (replayed, purged)."""
    attempts = row["attempts"] + 1
    finished = from_epoch(result.finished)
    next_at = from_epoch(result.next_attempt) if result.next_attempt is not None else None
    cur = db.conn.execute(
        "update webhook_deliveries set status = ?, attempts = ?, next_attempt_at = ?, "
        "last_attempt_at = ?, last_status = ?, last_error = ?, updated_at = ?, "
        "delivered_at = ?, dead_at = ? where id = ? and status = 'pending' and replays = ?",
        ["pending" if result.outcome == "retry" else result.outcome, attempts, next_at,
         from_epoch(result.started), result.http_status, result.error, finished,
         finished if result.outcome == "delivered" else None,
         finished if result.outcome == "dead" else None, row["id"], row["replays"]])
    if cur.rowcount != 1:
        return False
    db.conn.execute(
        "insert into webhook_attempts (delivery_id, attempt, replay, started_at, finished_at, "
        "http_status, outcome, error, next_attempt_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [row["id"], attempts, row["replays"], from_epoch(result.started), finished,
         result.http_status, result.outcome, result.error, next_at])
    return True


def replay(db: Database, delivery_id: int, now: str, node: str | None = None
           ) -> dict[str, Any] | None:
    cur = db.conn.execute(
        "update webhook_deliveries set status = 'pending', attempts = 0, "
        "replays = replays + 1, next_attempt_at = ?, dead_at = null, updated_at = ?, "
        "node = ? where id = ? and status = 'dead'", [now, now, node, delivery_id])
    if cur.rowcount != 1:
        return None
    return delivery_row(db, delivery_id)


WAITING_AND_DEAD = ("select status, count(*) from webhook_deliveries where status in "
                    "('pending', 'dead') group by status")


def waiting_and_dead(db: Database) -> Iterator[tuple[tuple[str], int]]:
    """Pending and dead deliveries, counted on the index webhook_deliveries_status
    (no table row read; delivered ones, the bulk, are not walked)."""
    counts = dict(db.execute(WAITING_AND_DEAD).fetchall())
    for status in ("pending", "dead"):
        yield (status,), counts.get(status, 0)


def delivery_row(db: Database, delivery_id: int) -> dict[str, Any] | None:
    rows = list(db.query(f"select {COLUMNS} from webhook_deliveries where id = ?",
                         [delivery_id]))
    return rows[0] if rows else None


def list_query(status: str | None, target: str | None,
                before: int | None) -> tuple[str, list[Any]]:
    """Deliveries newest first, each filter read through an index in id order: with a
    target, one arm per status in webhook_deliveries_target (merged by id), so a page
    reads the rows it lists however few match; with a status only, its range of
    webhook_deliveries_status."""
    tail, tail_args = ([" and id < ?"], [before]) if before is not None else ([], [])
    arms: list[tuple[str, list[Any]]] = []
    if target is not None:
        arms = [("target = ? and status = ?", [target, s])
                for s in ((status,) if status is not None else STATUSES)]
    elif status is not None:
        arms = [("status = ?", [status])]
    if not arms:
        where = " where id < ?" if before is not None else ""
        return (f"select {COLUMNS} from webhook_deliveries{where} order by id desc "
                "limit ?", tail_args)
    selects = [f"select {COLUMNS} from webhook_deliveries where {a}{''.join(tail)}"
               for a, _ in arms]
    return (" union all ".join(selects) + " order by id desc limit ?",
            [v for _, values in arms for v in (*values, *tail_args)])
