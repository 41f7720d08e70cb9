"""The store on PostgreSQL (``[store] url``): the face of :class:`host.store.Store`, so
the rest of smshost does not know which one it has.

Writes go through :class:`host.pg.writer.PgWriter` (group commit, one write
transaction at a time across the cluster); reads run on worker threads, each on a
pooled connection of its own (autocommit: every statement sees what was committed
before it, as on SQLite); ``read_now`` runs on the event loop on a connection of its
own. Migrations run at open under an advisory lock (:mod:`host.pg.schema`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlite_utils import Migrations

from host import upkeep
from host.config.settings import StoreSettings
from host.errors import StoreClosed, StoreError
from host.pg import schema
from host.pg.database import PgDatabase, connect, mask_url
from host.pg.writer import PgWriter
from host.readers import Readers
from host.store import Store

T = TypeVar("T")
log = logging.getLogger("smshost.store")


class PgStore(Store):
    """The database of one node of a cluster sharing ``url``."""

    dialect = "postgresql"

    def __init__(self, url: str, settings: StoreSettings | None = None,
                 path: Path | None = None) -> None:
        super().__init__(path or Path("postgresql"), settings)
        self.url = url
        self.readers = Readers(partial(self._connect_pg, readonly=True),  # type: ignore[arg-type]
                               wrap=lambda db: db,  # type: ignore[arg-type,return-value]
                               usable=lambda db: not db.raw.broken)  # type: ignore[attr-defined]
        self._read_call = self._read_again_once_lost
        self._pg_writer: PgWriter | None = None
        self._now: PgDatabase | None = None
        self.notified: set[str] = set()  # tables the writer notifies (host.follow)

    @property
    def where(self) -> str:
        """The database named for logs and messages: the URL without its password."""
        return mask_url(self.url)

    async def open(self, migrations: Sequence[Migrations] = ()) -> None:
        loop = asyncio.get_running_loop()
        try:
            db = await loop.run_in_executor(None, self._connect_pg)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the database {self.where}: {exc}") from None
        try:
            await loop.run_in_executor(None, schema.apply, db, list(migrations))
        except Exception as exc:
            raise StoreError(f"cannot prepare the database {self.where}: {exc}") from exc
        finally:
            db.close()
        writer = PgWriter(self._connect_pg, self.settings, self.writes, self.stats)
        self._pg_writer = writer
        self._drainer = writer.task
        self._queue = writer.queue
        self._open = True

    async def close(self) -> None:
        if self._pg_writer is None:
            return
        self._open = False
        writer, self._pg_writer = self._pg_writer, None
        await writer.close()
        self._drainer = None
        self.readers.close()
        if self._now is not None:
            self._now.close()
            self._now = None

    def _read_again_once_lost(self, fn: Callable[[Any], T]) -> T:
        """``fn`` on a pooled reader; once more on a new one when the server dropped the
        first (a restart, a failover): a read changes nothing, so it can be asked again."""
        lost: list[bool] = []

        def watched(db: PgDatabase) -> T:
            try:
                return fn(db)
            except sqlite3.Error:
                lost.append(db.raw.broken)
                raise

        try:
            return self.readers.run(watched)  # type: ignore[arg-type]
        except sqlite3.Error:
            if not (lost and lost[-1]):
                raise
        return self.readers.run(fn)

    async def probe(self) -> None:
        """A committed write through the writer's connection: raises
        :class:`~host.errors.StoreUnavailable` when the database refuses it."""
        if not self._open:
            raise StoreClosed("the store is not open")
        await self._submit(_probe, bare=True)  # type: ignore[arg-type]

    def read_now(self, fn: Callable[[Any], T]) -> T:
        if not self._open:
            raise StoreClosed("the store is not open")
        if self._now is not None and (self._now.raw.closed or self._now.raw.broken):
            self._now.close()
            self._now = None
        if self._now is None:
            self._now = self._connect_pg(readonly=True)
        return fn(self._now)

    async def write_apart(self, fn: Callable[[Any], T], *, transaction: bool = True) -> T:
        if not self._open:
            raise StoreClosed("the store is not open")
        result = await self._submit(partial(_apart, fn, transaction), bare=True)
        self.stats.commits += transaction
        return result

    async def purge_table(self, table: str, column: str, cutoff: str, *, batch_size: int,
                          pause: float, dry_run: bool = False,
                          children: Sequence[tuple[str, str]] = (),
                          keep: str | None = None, walk: str | None = None,
                          spare: upkeep.Spare | None = None) -> dict[str, int]:
        return await upkeep.purge_table(self, table, column, cutoff, batch_size=batch_size,
                                        pause=pause, dry_run=dry_run, children=children,
                                        keep=keep, walk=walk, spare=spare)

    def _connect_pg(self, *, readonly: bool = False) -> PgDatabase:
        conn = connect(self.url)
        if readonly:
            conn.execute("set default_transaction_read_only = on")
        db = PgDatabase(conn)
        db.notified = self.notified  # the same set: follow() may add to it later
        return db


def _apart(fn: Callable[[PgDatabase], T], transaction: bool, db: PgDatabase) -> T:
    """``fn`` alone, in a transaction of its own under the write lock (or none)."""
    from host.pg.writer import WRITE_LOCK, notify

    if not transaction:
        return fn(db)
    db.execute("begin")
    try:
        db.execute("set local synchronous_commit = off")
        db.execute("select pg_advisory_xact_lock(?)", [WRITE_LOCK])
        db.wrote.clear()
        result = fn(db)
        notify(db)
        db.execute("commit")
    except BaseException:
        if db.in_transaction:
            db.raw.rollback()
        raise
    return result


def _probe(db: PgDatabase) -> None:
    db.execute("begin")
    try:
        db.execute("create temporary table if not exists _smshost_probe (pad text)")
        db.execute("insert into _smshost_probe values ('probe')")
        db.execute("delete from _smshost_probe")
        db.execute("commit")
    except BaseException:
        if db.in_transaction:
            db.raw.rollback()
        raise
