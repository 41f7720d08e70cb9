"""The PostgreSQL store's writer: group commit, one write transaction at a time across
the cluster.

As on SQLite (:mod:`host.writer`), every write is a function ``fn(db)`` queued here;
the writes waiting are run together in one transaction and committed once, and each
caller's future is settled after that commit. Two things differ:

- the whole group runs on the writer's thread (statements are round trips to the
  server, which would hold up the event loop; psycopg lets the GIL go while it waits);
- a group that inserted into a table some node follows (host.follow) sends one
  ``NOTIFY`` naming those tables before its commit (:func:`notify`);
- each group first takes ``pg_advisory_xact_lock(WRITE_LOCK)``: one write transaction
  at a time in the whole cluster, as SQLite's ``BEGIN IMMEDIATE`` gives one per file.
  Every write function was written for that guarantee (read, decide, write, with no
  other writer in between: a claim, an ACD offer, a rate slot, a config version), so it
  holds on any number of nodes without a second, weaker set of rules. A group is short
  (its statements and one commit) and carries every write of the node that was waiting,
  so nodes take turns a group at a time; what the nodes do in parallel is everything
  else (HTTP, parsing, signatures, routing, the brokers' requests).

A write that raises rolls the transaction back and the others run again without it,
in a new one (as on SQLite). A lost connection fails the group with
:class:`~host.errors.StoreUnavailable` and is opened again for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg

from host.config.settings import StoreSettings
from host.errors import StoreError, StoreUnavailable
from host.pg.database import PgDatabase
from host.pg.listen import CHANNEL
from host.writepath import WritePath, unavailable
from host.writer import Op, Queue, StoreStats, settle

T = TypeVar("T")
log = logging.getLogger("smshost.store")

WRITE_LOCK = 0x736D7331  # "sms1": the cluster's one write transaction at a time


def notify(db: PgDatabase) -> None:
    """In the transaction about to commit: one notification naming the followed tables
    it inserted into (host.pg.listen), if any; delivered only if it commits."""
    if db.wrote:
        db.execute("select pg_notify(?, ?)", [CHANNEL, ",".join(sorted(db.wrote))])
        db.wrote.clear()


class PgWriter(Queue):
    """Commits the writes queued with :meth:`queue` through ``connect()``'s connection."""

    def __init__(self, connect: Callable[[], PgDatabase], settings: StoreSettings,
                 writes: WritePath, stats: StoreStats) -> None:
        self._connect = connect
        self._db: PgDatabase | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smshost-pgwrite")
        self._settings = settings
        self._writes = writes
        self._stats = stats
        super().__init__()
        self.task = asyncio.create_task(self._drain(), name="smshost-store-writer")

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        await self.task
        await asyncio.get_running_loop().run_in_executor(self._pool, self._disconnect)
        self._pool.shutdown(wait=True)

    async def _drain(self) -> None:
        max_batch = self._settings.max_batch if self._settings.group_commit else 1
        loop = asyncio.get_running_loop()
        while (batch := await self._next(max_batch)) is not None:
            try:
                await loop.run_in_executor(self._pool, self._run, batch)
            except Exception as exc:  # noqa: BLE001 - the writer must never die
                log.exception("write batch failed")
                for op in batch:
                    if op.error is None:
                        op.error, op.result = StoreError(f"write failed: {exc}"), None
            for op in batch:
                settle(op)

    # -- on the writer's thread -------------------------------------------------------

    def _run(self, batch: list[Op]) -> None:
        try:
            db = self._database()
        except (psycopg.Error, sqlite3.Error) as exc:
            self._fail_all(batch, exc, "cannot reach the database")
            return
        if batch[0].bare:
            self._run_bare(db, batch[0])
        else:
            self._run_batch(db, batch)

    def _database(self) -> PgDatabase:
        if self._db is not None and (self._db.raw.closed or self._db.raw.broken):
            self._disconnect()
        if self._db is None:
            db = self._connect()
            # the wait for the write lock (another node's group, a purge's step) is
            # bounded as SQLite's busy_timeout bounds it: then refused as "busy"
            db.execute(f"set lock_timeout = {int(self._settings.busy_timeout_ms)}")
            self._db = db
        return self._db

    def _run_bare(self, db: PgDatabase, op: Op) -> None:
        try:
            op.result = op.fn(db)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            if not db.raw.closed and db.in_transaction:
                db.raw.rollback()
            op.error = self._lost(db, exc) or self._refused(exc) or exc
            return
        self._writes.succeeded()

    def _run_batch(self, db: PgDatabase, batch: list[Op]) -> None:
        pending = batch
        for _ in range(len(batch)):  # each round drops at least one failed op
            db.wrote.clear()
            try:
                db.execute("begin")
                db.execute("select pg_advisory_xact_lock(?)", [WRITE_LOCK])
            except sqlite3.Error as exc:
                self._fail_all(pending, exc, "cannot start a write transaction")
                return
            failed = self._run_all(db, pending)
            if failed is None:
                break
            lost = self._lost(db, failed.error)
            if lost is not None:
                self._fail_all(pending, lost, "the database connection was lost")
                return
            db.raw.rollback()
            if isinstance(failed.error, StoreUnavailable):  # the others would meet it too
                self._fail_all(pending, failed.error, "the database refused the write")
                return
            pending = [op for op in pending if op is not failed]
            if not pending:
                return
        try:
            notify(db)
            db.execute("commit")
        except sqlite3.Error as exc:
            self._stats.failed_commits += 1
            self._fail_all(pending, exc, "commit failed")
            return
        self._writes.succeeded()
        stats = self._stats
        stats.commits += 1
        stats.writes += len(pending)
        stats.largest_batch = max(stats.largest_batch, len(pending))

    @staticmethod
    def _run_all(db: PgDatabase, ops: list[Op]) -> Op | None:
        for op in ops:
            op.result, op.error = None, None
            try:
                op.result = op.fn(db)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - handed to the caller, others commit
                op.error = unavailable(exc, "the database refused the write") or exc
                return op
        return None

    def _lost(self, db: PgDatabase, exc: BaseException | None) -> StoreUnavailable | None:
        """A refusal from outside the write (the connection gone, the server shutting
        down): recorded for /health, and the connection dropped for a new one."""
        if not db.raw.closed and not db.raw.broken:
            return None
        self._disconnect()
        self._writes.failed(str(exc))
        return StoreUnavailable("the database connection was lost", kind="ioerr")

    def _refused(self, exc: Exception) -> StoreUnavailable | None:
        """``exc`` as StoreUnavailable (and recorded in ``writes``) when it is a refusal."""
        error = unavailable(exc, "the database refused the write")
        if error is not None:
            self._writes.failed(str(exc))
        return error

    def _fail_all(self, ops: list[Op], exc: BaseException, what: str) -> None:
        if self._db is not None and not self._db.raw.closed and self._db.in_transaction:
            try:
                self._db.raw.rollback()
            except psycopg.Error:
                self._disconnect()
        error = exc if isinstance(exc, StoreError) else unavailable(exc, what) or \
            StoreUnavailable(f"{what}: {exc}", kind="ioerr")
        if isinstance(error, StoreUnavailable):
            self._writes.failed(str(exc))
        for op in ops:
            op.error, op.result = op.error or error, None

    def _disconnect(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except psycopg.Error:
                pass
            self._db = None
