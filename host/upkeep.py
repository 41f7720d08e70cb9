"""Upkeep of the database file: the purge's bounded batches and giving space back.

Both run as :meth:`Store.write_apart` steps: each one transaction of bounded work on the
writer's thread (never the event loop), queued between the live writes, with a pause
after it, so ingest waits at most one short step (SPEC P2).

* :func:`purge_table` walks the rows below the cutoff in the order of an indexed column
  and deletes them ``batch_size`` at a time; a batch reads at most ``batch_size`` rows
  of that index, whatever the table holds above the cutoff or keeps.
* :func:`give_back` returns the free pages a purge left (``PRAGMA
  incremental_vacuum``) a few at a time, on a database in ``auto_vacuum =
  INCREMENTAL`` (new ones are; an older file is switched by ``smshost vacuum``, or at
  start while it is small: :func:`switch_to_incremental`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

if TYPE_CHECKING:
    from host.store import Store

log = logging.getLogger("smshost.store")

VACUUM_STEP_PAGES = 32
"""Free pages returned per step of the incremental vacuum (128 KiB with 4 KiB pages):
moving a page from the end of the file touches its parent and the pointer map too; at a
million messages a step holds the writer ~2 ms (256 pages took ~20 ms, and the MO
latency's p99 with them)."""
REST_FACTOR = 10
"""After each step the writer is left to live writes at least this many times as long
as the step took (and at least the configured pause): upkeep never takes more than a
tenth of it, however slow a step is."""
AUTO_SWITCH_BYTES = 64 * 1024 * 1024
"""An older database up to this size is switched to incremental vacuum at start (one
VACUUM, about a second); a larger one waits for ``smshost vacuum``."""
Cursor = tuple[Any, int] | None


@dataclass(frozen=True, slots=True)
class Spare:
    """Rows a purge leaves however old: those whose ``columns`` hold one of ``values``
    (known before the run, e.g. the conversations with messages kept). For a table
    without ``children``."""

    columns: tuple[str, ...]
    values: frozenset[tuple[Any, ...]]

    def doomed(self, conn: sqlite3.Connection, table: str, rowids: list[int]) -> list[int]:
        """Those of ``rowids`` (rows of ``table``) that are not spared."""
        if not self.values:
            return rowids
        names = ", ".join(f'"{c}"' for c in self.columns)
        out = []
        for start in range(0, len(rowids), 500):  # a dry run asks about every old row
            chunk = rowids[start:start + 500]
            rows = conn.execute(f'select rowid, {names} from "{table}" where rowid in '
                                f'({",".join("?" * len(chunk))})', chunk)
            out += [r[0] for r in rows if tuple(r[1:]) not in self.values]
        return out


async def purge_table(store: Store, table: str, column: str, cutoff: str, *,
                      batch_size: int, pause: float, dry_run: bool = False,
                      children: Sequence[tuple[str, str]] = (), keep: str | None = None,
                      walk: str | None = None, spare: Spare | None = None) -> dict[str, int]:
    """Delete the rows of ``table`` whose ``column`` < ``cutoff`` in bounded batches.

    ``walk`` (default ``column``) is an indexed column whose value is never later than
    ``column``'s (a message's ``created_at`` for its ``updated_at``): each batch takes
    the next ``batch_size`` rows below the cutoff in its order, deletes those whose
    ``column`` is below it too and that ``keep`` (a one-column query of rowids) does
    not name, with their ``children`` (``(table, foreign key)`` pairs). A row kept or
    changed since is passed, never read again in this run. ``spare`` leaves more rows.
    """
    assert spare is None or not children, "spare is for tables without children"
    walk = walk or column
    counts = {table: 0, **{child: 0 for child, _ in children}}
    plan = store.dialect == "sqlite"
    if not await store.read(partial(_any_below, table, walk, cutoff, plan)):
        return counts  # nothing to do: no transaction
    if dry_run:
        return await store.read(partial(_count, table, column, walk, cutoff, children, keep,
                                        spare))
    cursor: Cursor = None
    while True:  # bounded: the cursor only moves up, through the rows below the cutoff
        started = time.monotonic()
        done, read, cursor = await store.write_apart(partial(
            _purge_batch, table, column, walk, cutoff, batch_size, children, keep, cursor,
            spare))
        for name, n in done.items():
            counts[name] += n
        if read < batch_size:
            return counts
        await _rest(started, pause)


async def _rest(started: float, pause: float) -> None:
    """Sleep after a step that began at ``started``: ``pause``, or REST_FACTOR times as
    long as the step took (its wait for the writer included) if that is longer."""
    await asyncio.sleep(max(pause, REST_FACTOR * (time.monotonic() - started)))


def _any_below(table: str, walk: str, cutoff: str, check_plan: bool, db: Database) -> bool:
    """Whether a row is below the cutoff; with ``check_plan`` (SQLite: its ``explain
    query plan``) warns when ``walk`` has no index (then each batch would read the whole
    table)."""
    sql = f'select rowid from "{table}" where "{walk}" < ? order by "{walk}", rowid limit 1'
    if check_plan:
        _warn_unindexed(db, sql, table, walk, cutoff)
    return db.execute(sql, [cutoff]).fetchone() is not None


def _warn_unindexed(db: Database, sql: str, table: str, walk: str, cutoff: str) -> None:
    plan = " ".join(r[3] for r in db.execute(f"explain query plan {sql}", [cutoff]))
    if "INDEX" not in plan:
        log.warning("purge of %s by %s reads the whole table each batch: index %s (%s)",
                    table, walk, walk, plan)


def _keep_clause(keep: str | None, marks: str) -> tuple[str, str]:
    """The ``with`` prefix and the condition that leave the kept rows out; the kept
    query is asked about these rowids only (SQLite pushes the ``in`` into it)."""
    if not keep:
        return "", ""
    return (f"with kept(id) as ({keep}) ",
            f" and rowid not in (select id from kept where id in ({marks}))")


def _purge_batch(table: str, column: str, walk: str, cutoff: str, limit: int,
                 children: Sequence[tuple[str, str]], keep: str | None, cursor: Cursor,
                 spare: Spare | None, db: Database) -> tuple[dict[str, int], int, Cursor]:
    """One batch (in the caller's transaction): ``(rows deleted per table, rows read,
    where the next batch starts)``."""
    conn = db.conn
    after = "" if cursor is None else f' and ("{walk}", rowid) > (?, ?)'
    rows = conn.execute(
        f'select rowid, "{walk}" from "{table}" where "{walk}" < ?{after} '
        f'order by "{walk}", rowid limit ?', [cutoff, *(cursor or ()), limit]).fetchall()
    done = {table: 0, **{child: 0 for child, _ in children}}
    if not rows:
        return done, 0, cursor
    ids = [r[0] for r in rows]
    marks = ",".join("?" * len(ids))
    prefix, kept = _keep_clause(keep, marks)
    also = "" if column == walk else f' and "{column}" < ?'
    doomed = [r[0] for r in conn.execute(
        f'{prefix}select rowid from "{table}" where rowid in ({marks}){also}{kept}',
        [*ids, *([cutoff] if also else []), *(ids if kept else [])])]
    if spare is not None:
        doomed = spare.doomed(conn, table, doomed)
    if doomed:
        marks = ",".join("?" * len(doomed))
        for child, fk in children:
            done[child] = conn.execute(
                f'delete from "{child}" where "{fk}" in ({marks})', doomed).rowcount
        done[table] = conn.execute(
            f'delete from "{table}" where rowid in ({marks})', doomed).rowcount
    return done, len(rows), (rows[-1][1], rows[-1][0])


def _count(table: str, column: str, walk: str, cutoff: str,
           children: Sequence[tuple[str, str]], keep: str | None, spare: Spare | None,
           db: Database) -> dict[str, int]:
    """What :func:`purge_table` would delete (one read; a dry run)."""
    also = "" if column == walk else f' and "{column}" < :cutoff'
    kept = "" if not keep else " and rowid not in (select id from kept)"
    prefix = "" if not keep else f"with kept(id) as ({keep}) "
    doomed = f'select rowid from "{table}" where "{walk}" < :cutoff{also}{kept}'
    if spare is not None:
        ids = [r[0] for r in db.execute(f"{prefix}{doomed}", {"cutoff": cutoff})]
        return {table: len(spare.doomed(db.conn, table, ids))}
    counts = {table: int(db.execute(f"{prefix}select count(*) from ({doomed}) as d",
                                    {"cutoff": cutoff}).fetchone()[0])}
    for child, fk in children:
        counts[child] = int(db.execute(
            f'{prefix}select count(*) from "{child}" where "{fk}" in ({doomed})',
            {"cutoff": cutoff}).fetchone()[0])
    return counts


def check_keep(keep: str, db: Database) -> None:
    """Run ``keep`` the way a purge batch does (as ``kept(id)``, about no row); raise
    if it cannot (bad SQL, not one column)."""
    db.execute(f"with kept(id) as ({keep}) select id from kept where id in (-1)").fetchall()


# -- giving space back ------------------------------------------------------------------

async def give_back(store: Store, pause: float) -> int:
    """Return the database's free pages to the file system, VACUUM_STEP_PAGES per step
    with ``pause`` seconds between steps; the pages returned (0 when the database is
    not in incremental vacuum mode; on PostgreSQL, whose autovacuum does this)."""
    if store.dialect != "sqlite":
        return 0
    mode, free = await store.read(_vacuum_state)
    if mode != 2 or not free:
        return 0
    returned = 0
    for _ in range(free // VACUUM_STEP_PAGES + 2):  # bounded: frees only shrink here
        started = time.monotonic()
        left = await store.write_apart(_vacuum_step, transaction=False)
        returned = free - left
        if left == 0:
            break
        await _rest(started, pause)
    await store.write_apart(_checkpoint, transaction=False)
    return returned


def _vacuum_state(db: Database) -> tuple[int, int]:
    return (int(db.execute("pragma auto_vacuum").fetchone()[0]),
            int(db.execute("pragma freelist_count").fetchone()[0]))


def _vacuum_step(db: Database) -> int:
    """One step, its own transaction. executescript steps the pragma to its end:
    execute() stops at its first step, which frees one page."""
    db.conn.executescript(f"pragma incremental_vacuum({VACUUM_STEP_PAGES})")
    return int(db.execute("pragma freelist_count").fetchone()[0])


def _checkpoint(db: Database) -> None:
    """Copy the WAL into the file, which then shrinks (readers may hold part back)."""
    db.execute("pragma wal_checkpoint(passive)").fetchall()


def switch_to_incremental(db: Database) -> bool:
    """Put a database in ``auto_vacuum = INCREMENTAL``: VACUUM rewrites the whole file
    (holding the write lock throughout, with free disk space of its size). True when it
    was switched, False when it was already."""
    if db.execute("pragma auto_vacuum").fetchone()[0] == 2:
        return False
    db.execute("pragma auto_vacuum = incremental")
    db.execute("vacuum")
    return True


def vacuum_mode(db: Database) -> None:
    """Switch an older database (made before auto_vacuum was set) to incremental
    vacuum while it is small; say how to when it is not."""
    if db.execute("pragma auto_vacuum").fetchone()[0] == 2:
        return
    size = file_bytes(db.conn)
    if size > AUTO_SWITCH_BYTES:
        log.warning("the database (%d MB) does not give the space a purge frees back to "
                    "the file system: stop the server and run `smshost vacuum` once "
                    "(docs/operators.md, Purge)", size // 1_000_000)
        return
    switch_to_incremental(db)
    log.info("database switched to incremental vacuum (one VACUUM of %d kB)", size // 1000)


def vacuum_file(path: Path, busy_timeout_ms: int) -> tuple[int, int, bool]:
    """VACUUM the database at ``path`` into incremental vacuum mode (``smshost
    vacuum``): ``(bytes before, bytes after, whether it was switched)``."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        before = file_bytes(conn)
        switched = conn.execute("pragma auto_vacuum").fetchone()[0] != 2
        conn.execute("pragma auto_vacuum = incremental")
        conn.execute("vacuum")
        conn.execute("pragma wal_checkpoint(truncate)").fetchall()
        return before, file_bytes(conn), switched
    finally:
        conn.close()


def locked_hint(exc: sqlite3.Error) -> str:
    """What to add to ``exc`` for an operator: who may hold the database when it is busy
    or locked (only then: a corrupt file or a full disk has nothing to do with it)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (" (another process holds the database: a `smshost purge`, or a server "
                "of an older version? let it finish or stop it first)")
    return ""


def file_bytes(conn: sqlite3.Connection) -> int:
    return int(conn.execute("pragma page_count").fetchone()[0]) * \
        int(conn.execute("pragma page_size").fetchone()[0])
