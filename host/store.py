"""SQLite storage: WAL, one writer thread with group commit, pooled readers.

Every write is a function ``fn(db)`` sent to the writer thread. The writer takes all
writes waiting in its queue (up to ``max_batch``), runs each inside its own SAVEPOINT
within one ``BEGIN IMMEDIATE`` transaction, COMMITs once, and only then settles each
caller's future. So ``await store.write(fn)`` returns after the COMMIT that made ``fn``
durable, and many concurrent callers share one fsync (group commit). A write that
raises is rolled back to its savepoint alone and its caller gets the exception; the
others still commit.

Reads run on worker threads, each with its own read-only connection; WAL lets them
proceed while the writer commits.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from sqlite_utils import Database, Migrations

from host.config.settings import StoreSettings
from host.errors import StoreClosed, StoreError

T = TypeVar("T")
log = logging.getLogger("smshost.store")
Prepare = Callable[[sqlite3.Connection], None]


@dataclass(slots=True)
class _Op:
    fn: Callable[[Database], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    bare: bool = False  # run alone, outside any transaction (migrations)
    result: Any = None
    error: BaseException | None = None


_STOP = object()


@dataclass
class StoreStats:
    """Counters of the writer, for metrics and the benchmark."""

    commits: int = 0
    writes: int = 0
    largest_batch: int = 0
    failed_commits: int = 0


class Store:
    """The database of one host. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, path: Path, settings: StoreSettings | None = None,
                 prepare: Prepare | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or StoreSettings()
        self._prepare = prepare
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._open = False
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.stats = StoreStats()

    # -- lifecycle ------------------------------------------------------------------

    async def open(self, migrations: Sequence[Migrations] = ()) -> None:
        """Create the file if needed, start the writer, apply ``migrations`` in order."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(
            target=self._writer_main, args=(ready, asyncio.get_running_loop()),
            name="smshost-writer", daemon=True,
        )
        self._thread.start()
        await ready
        self._open = True
        for migration_set in migrations:
            await self._submit(migration_set.apply, bare=True)

    async def close(self) -> None:
        """Commit every write already queued, then stop the writer and close readers."""
        if self._thread is None:
            return
        self._open = False
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._readers = threading.local()

    @property
    def is_open(self) -> bool:
        return self._open

    # -- public operations ----------------------------------------------------------

    async def write(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on the writer; return its result once it is committed.

        Cancelling the caller does not withdraw the write: once queued it runs and
        commits, so a caller that gave up may still find its row stored.
        """
        if not self._open:
            raise StoreClosed("the store is not open")
        if self._thread is None or not self._thread.is_alive():
            raise StoreError("the writer thread has stopped")
        return await self._submit(fn)

    async def read(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on a read-only connection in a worker thread."""
        if not self._open:
            raise StoreClosed("the store is not open")
        return await anyio.to_thread.run_sync(partial(self._read_call, fn))

    async def ping(self) -> bool:
        """True when a read succeeds and the writer is alive; raise with the reason if not."""
        if not self._open:
            raise StoreClosed("the store is not open")
        if self._thread is None or not self._thread.is_alive():
            raise StoreError("the writer thread has stopped")
        return await self.read(lambda db: db.execute("select 1").fetchone()[0] == 1)

    async def purge_table(
        self, table: str, column: str, cutoff: str, *, batch_size: int, pause: float,
        dry_run: bool = False, children: Sequence[tuple[str, str]] = (),
    ) -> dict[str, int]:
        """Delete rows of ``table`` whose ``column`` < ``cutoff`` in bounded batches.

        ``children`` are ``(table, foreign key column)`` pairs deleted with each batch.
        Each batch is one transaction; ``pause`` seconds pass between batches so live
        writes interleave. Returns rows per table (counted only, with ``dry_run``).
        """
        where = f'"{column}" < ?'
        total = await self.read(
            lambda db: db.execute(f'select count(*) from "{table}" where {where}', [cutoff])
            .fetchone()[0])
        counts = {table: 0, **{child: 0 for child, _ in children}}
        if total == 0:
            return counts
        if dry_run:
            counts[table] = total
            for child, fk in children:
                counts[child] = await self.read(partial(
                    _count_children, table, child, fk, where, cutoff))
            return counts
        for _ in range(total // batch_size + 2):  # bounded: rows only age into the cutoff
            done = await self.write(partial(
                _delete_batch, table, where, cutoff, batch_size, children))
            for name, n in done.items():
                counts[name] += n
            if done[table] < batch_size:
                break
            await asyncio.sleep(pause)
        return counts

    # -- threads --------------------------------------------------------------------

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False,
            timeout=self.settings.busy_timeout_ms / 1000,
        )
        conn.execute(f"pragma busy_timeout = {int(self.settings.busy_timeout_ms)}")
        if not readonly:
            conn.execute("pragma journal_mode = wal")
        conn.execute(f"pragma synchronous = {self.settings.synchronous}")
        conn.execute("pragma foreign_keys = on")
        if readonly:
            conn.execute("pragma query_only = on")
        if self._prepare is not None:
            self._prepare(conn)
        return conn

    def _read_call(self, fn: Callable[[Database], T]) -> T:
        db: Database | None = getattr(self._readers, "db", None)
        if db is None:
            conn = self._connect(readonly=True)
            with self._lock:
                self._reader_conns.append(conn)
            db = self._readers.db = Database(conn)
        return fn(db)

    async def _submit(self, fn: Callable[[Database], T], *, bare: bool = False) -> T:
        loop = asyncio.get_running_loop()
        op = _Op(fn, loop.create_future(), loop, bare)
        self._queue.put(op)
        return await op.future  # type: ignore[no-any-return]

    def _writer_main(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = self._connect(readonly=False)
        except BaseException as exc:  # noqa: BLE001 - reported to open()'s caller
            loop.call_soon_threadsafe(_settle_ready, ready, exc)
            return
        loop.call_soon_threadsafe(_settle_ready, ready, None)
        db = Database(conn)
        try:
            self._writer_loop(db)
        finally:
            conn.close()

    def _writer_loop(self, db: Database) -> None:
        max_batch = self.settings.max_batch if self.settings.group_commit else 1
        linger = self.settings.linger_ms / 1000
        pending: Any = None
        while True:
            item = pending if pending is not None else self._queue.get()
            pending = None
            if item is _STOP:
                return
            if item.bare:
                self._run_bare(db, item)
                continue
            batch = [item]
            pending = self._fill(batch, max_batch, linger)
            self._run_batch(db, batch)
            if pending is _STOP:
                return

    def _fill(self, batch: list[_Op], max_batch: int, linger: float) -> Any:
        """Add waiting ops to ``batch``; return an item that must run after it, if any."""
        deadline = None
        while len(batch) < max_batch:
            try:
                if linger and deadline is None:
                    deadline = time.monotonic() + linger
                timeout = max(0.0, deadline - time.monotonic()) if deadline else 0
                item = self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
            except queue.Empty:
                return None
            if item is _STOP or item.bare:
                return item
            batch.append(item)
        return None

    def _run_bare(self, db: Database, op: _Op) -> None:
        try:
            op.result = op.fn(db)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            op.error = exc
        _settle(op.loop, [op])

    def _run_batch(self, db: Database, batch: list[_Op]) -> None:
        """Run and commit ``batch``; every op is settled whatever happens."""
        try:
            self._commit_batch(db, batch)
        # The writer thread must never die: anything unexpected fails this batch only.
        except BaseException as exc:  # noqa: BLE001
            log.exception("write batch failed")
            for op in batch:
                if op.error is None:
                    op.error = StoreError(f"write failed: {exc}")
                    op.result = None
            if db.conn.in_transaction:
                db.conn.execute("rollback")
        _settle_all(batch)

    def _commit_batch(self, db: Database, batch: list[_Op]) -> None:
        conn = db.conn
        try:
            conn.execute("begin immediate")
        except sqlite3.Error as exc:
            for op in batch:
                op.error = StoreError(f"cannot start a write transaction: {exc}")
            return
        grouped = len(batch) > 1
        for op in batch:
            if not self._run_one(db, op, grouped):
                # The op's error ended the whole transaction (disk full, RAISE(ROLLBACK)):
                # the others' work is gone with it. Run them again without the culprit.
                again = [o for o in batch if o is not op]
                for other in again:
                    other.result, other.error = None, None
                if again:
                    self._commit_batch(db, again)
                return
        try:
            conn.execute("commit")
        except sqlite3.Error as exc:
            self.stats.failed_commits += 1
            if conn.in_transaction:
                conn.execute("rollback")
            for op in batch:
                op.error = StoreError(f"commit failed: {exc}")
                op.result = None
            return
        self.stats.commits += 1
        self.stats.writes += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))

    @staticmethod
    def _run_one(db: Database, op: _Op, grouped: bool) -> bool:
        """Run one op; False when its failure destroyed the enclosing transaction."""
        conn = db.conn
        if grouped:
            conn.execute("savepoint op")
        try:
            op.result = op.fn(db)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, others commit
            op.error = exc
            if not conn.in_transaction:
                return False
            if grouped:
                conn.execute("rollback to op")
            else:
                conn.execute("rollback")
                conn.execute("begin immediate")
        if grouped:
            conn.execute("release op")
        return True


def _settle_ready(ready: asyncio.Future[None], exc: BaseException | None) -> None:
    if exc is None:
        ready.set_result(None)
    else:
        ready.set_exception(StoreError(f"cannot open the database: {exc}"))


def _settle_all(batch: list[_Op]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Op]] = {}
    for op in batch:
        by_loop.setdefault(op.loop, []).append(op)
    for loop, ops in by_loop.items():
        _settle(loop, ops)


def _settle(loop: asyncio.AbstractEventLoop, ops: list[_Op]) -> None:
    try:
        loop.call_soon_threadsafe(_resolve, ops)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _resolve(ops: list[_Op]) -> None:
    for op in ops:
        if op.future.cancelled():
            continue
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)


def _delete_batch(table: str, where: str, cutoff: str, limit: int,
                  children: Sequence[tuple[str, str]], db: Database) -> dict[str, int]:
    conn = db.conn
    ids = [r[0] for r in conn.execute(
        f'select rowid from "{table}" where {where} limit ?', [cutoff, limit])]
    done = {table: len(ids)}
    if not ids:
        for child, _ in children:
            done[child] = 0
        return done
    marks = ",".join("?" * len(ids))
    for child, fk in children:
        done[child] = conn.execute(
            f'delete from "{child}" where "{fk}" in ({marks})', ids).rowcount
    conn.execute(f'delete from "{table}" where rowid in ({marks})', ids)
    return done


def _count_children(table: str, child: str, fk: str, where: str, cutoff: str,
                    db: Database) -> int:
    sql = (f'select count(*) from "{child}" where "{fk}" in '
           f'(select rowid from "{table}" where {where})')
    return int(db.execute(sql, [cutoff]).fetchone()[0])
