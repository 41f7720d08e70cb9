"""The store's one writer: a queue of writes, committed in groups (see :mod:`host.store`).

Every write is a function ``fn(db)``. One drain task takes the writes waiting (up to
``max_batch``), starts one ``BEGIN IMMEDIATE`` transaction, runs them, COMMITs once, and
only then settles each caller's future: many concurrent callers share one fsync (group
commit). The writes themselves run on the event loop; only BEGIN and COMMIT, which can
block on a lock or an fsync, run on the commit thread, which also runs the "bare" writes
(migrations, the probe, upkeep steps) alone, outside any batch.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlite_utils import Database

from host.config.settings import StoreSettings
from host.errors import StoreError, StoreUnavailable
from host.writepath import WritePath, unavailable

T = TypeVar("T")
log = logging.getLogger("smshost.store")


@dataclass(slots=True)
class Op:
    fn: Callable[[Database], Any]
    future: asyncio.Future[Any]
    bare: bool = False  # run alone on the commit thread, outside any transaction
    result: Any = None
    error: BaseException | None = None


@dataclass
class StoreStats:
    """Counters of the writer, for metrics and the benchmark."""

    commits: int = 0
    writes: int = 0
    largest_batch: int = 0
    failed_commits: int = 0


class Queue:
    """The writes waiting for a store's writer (this module's or host.pg.writer's), taken
    in groups in the order they were queued; a bare one always alone."""

    def __init__(self) -> None:
        self._pending: deque[Op] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False

    def queue(self, fn: Callable[[Any], T], *, bare: bool = False) -> asyncio.Future[T]:
        """Queue ``fn``; the future gives its result once committed (in queue order)."""
        op = Op(fn, asyncio.get_running_loop().create_future(), bare)
        self._pending.append(op)
        self._wakeup.set()
        return op.future

    async def _next(self, max_batch: int, linger: float = 0.0) -> list[Op] | None:
        """The next group (after ``linger`` seconds for more); None once closing and
        nothing is left."""
        while not self._pending:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        if linger and not self._closing:
            await asyncio.sleep(linger)
        first = self._pending.popleft()
        batch = [first]
        if first.bare:
            return batch
        while self._pending and len(batch) < max_batch and not self._pending[0].bare:
            batch.append(self._pending.popleft())
        return batch


class Writer(Queue):
    """Commits the writes queued with :meth:`queue` on ``db``, BEGIN and COMMIT on the
    commit thread ``pool``; records each outcome in ``writes`` and counts in ``stats``."""

    def __init__(self, db: Database, pool: ThreadPoolExecutor, settings: StoreSettings,
                 writes: WritePath, stats: StoreStats) -> None:
        self.db = db
        self._pool = pool
        self._settings = settings
        self._writes = writes
        self._stats = stats
        super().__init__()
        self.task = asyncio.create_task(self._drain(), name="smshost-store-writer")

    async def close(self) -> None:
        """Commit every write already queued, then stop and close the connection."""
        self._closing = True
        self._wakeup.set()
        await self.task
        await self.in_thread(self.db.conn.close)
        self._pool.shutdown(wait=True)

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the commit thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _drain(self) -> None:
        """The one writer: take waiting writes in batches until closed and empty."""
        max_batch = self._settings.max_batch if self._settings.group_commit else 1
        linger = self._settings.linger_ms / 1000
        while (batch := await self._next(max_batch, linger)) is not None:
            try:
                if batch[0].bare:
                    await self._run_bare(batch[0])
                else:
                    await self._run_batch(batch)
            # The writer must never die: anything unexpected fails this batch only.
            except Exception as exc:  # noqa: BLE001
                log.exception("write batch failed")
                await self._abandon(batch, exc)
            for op in batch:
                settle(op)

    async def _run_bare(self, op: Op) -> None:
        try:
            op.result = await self.in_thread(op.fn, self.db)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            op.error = self._refused(exc, "the database refused the write") or exc
            return
        self._writes.succeeded()

    async def _run_batch(self, batch: list[Op]) -> None:
        """Run and commit ``batch``; every op ends with a result or an error.

        Ops run back to back without savepoints (they cost two statements per write on
        the hot path). When one raises, the transaction is rolled back and the others
        run again, without it, in a new one: a failed write never takes its
        neighbours' writes down, and never leaves half of itself behind.
        """
        conn = self.db.conn
        pending = batch
        for _ in range(len(batch)):  # bounded: each round drops at least one failed op
            try:
                await self._begin(conn)
            except sqlite3.Error as exc:
                error = self._refused(exc, "cannot start a write transaction")
                for op in pending:
                    op.error = error or StoreError(f"cannot start a write transaction: {exc}")
                return
            failed = self._run_all(pending)
            if failed is None:
                break
            if conn.in_transaction:
                conn.execute("rollback")
            if isinstance(failed.error, StoreUnavailable):  # the others would meet it too
                self._writes.failed(str(failed.error.__cause__ or failed.error))
                for op in pending:
                    op.error, op.result = op.error or failed.error, None
                return
            pending = [op for op in pending if op is not failed]
            if not pending:
                return
        try:
            await self.in_thread(conn.execute, "commit")
        except sqlite3.Error as exc:
            self._stats.failed_commits += 1
            error = self._refused(exc, "commit failed")
            await self._abandon(pending, error or StoreError(f"commit failed: {exc}"))
            return
        self._writes.succeeded()
        stats = self._stats
        stats.commits += 1
        stats.writes += len(pending)
        stats.largest_batch = max(stats.largest_batch, len(pending))

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE: right here when the write lock is free (the usual case, a few
        microseconds); on the commit thread, waiting up to busy_timeout, when another
        process holds it (``smshost purge`` running beside the server, say)."""
        conn.execute("pragma busy_timeout = 0")
        try:
            conn.execute("begin immediate")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        finally:
            conn.execute(f"pragma busy_timeout = {int(self._settings.busy_timeout_ms)}")
        await self.in_thread(conn.execute, "begin immediate")

    def _run_all(self, ops: list[Op]) -> Op | None:
        """Run ``ops`` in the open transaction; the first that raised, if any."""
        db = self.db
        for op in ops:
            op.result, op.error = None, None
            try:
                op.result = op.fn(db)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, others commit
                op.error = unavailable(exc, "the database refused the write") or exc
                return op
        return None

    def _refused(self, exc: Exception, what: str) -> StoreUnavailable | None:
        """``exc`` as StoreUnavailable (and recorded in ``writes``) when it is a refusal."""
        error = unavailable(exc, what)
        if error is not None:
            self._writes.failed(str(exc))
        return error

    async def _abandon(self, batch: list[Op], error: BaseException) -> None:
        """Roll back what is open and fail every op of ``batch`` not failed already."""
        for op in batch:
            if op.error is None:
                op.error = error if isinstance(error, StoreError) else StoreError(
                    f"write failed: {error}")
                op.result = None
        if self.db.conn.in_transaction:
            try:
                await self.in_thread(self.db.conn.execute, "rollback")
            except sqlite3.Error:
                log.exception("rollback failed")


def settle(op: Op) -> None:
    if op.future.cancelled():
        return
    if op.error is not None:
        op.future.set_exception(op.error)
    else:
        op.future.set_result(op.result)
