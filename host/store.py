"""SQLite storage: WAL, one writer connection with group commit, pooled readers.

Every write is a function ``fn(db)`` queued for the writer. One drain task takes the
writes waiting (up to ``max_batch``), starts one ``BEGIN IMMEDIATE`` transaction, runs
each write inside its own SAVEPOINT, COMMITs once, and only then settles each caller's
future. So ``await store.write(fn)`` returns after the COMMIT that made ``fn`` durable,
and many concurrent callers share one fsync (group commit). A write that raises is
rolled back to its savepoint alone and its caller gets the exception; the others still
commit.

Where the work runs: the writes themselves (short, in-memory B-tree work) run on the
event loop; only BEGIN and COMMIT, which can block on a lock or an fsync, run on a
dedicated thread. Running the writes on a second thread instead made the two threads
trade the GIL for every SQL statement, which cost more than the writes themselves
(docs/benchmarks.md, MO ingest).

Reads run on worker threads, each with its own read-only connection; WAL lets them
proceed while the writer commits.

When the database refuses a write for a reason outside it (a full disk, a read-only file,
an I/O error: ``host.writepath.refusal``), the caller gets :class:`StoreUnavailable` and
the rest of its group fails with it (they would meet the same disk); ``writes`` (a
:class:`~host.writepath.WritePath`) records every outcome for /health, and ``probe``
tries a small write alone to see whether writes go through again.

The writer is :class:`host.writer.Writer`, the read pool :class:`host.readers.Readers`;
:class:`Store` opens them, closes them, and is the one face the rest of smshost uses.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio.to_thread
from sqlite_utils import Database, Migrations

from host import upkeep
from host.config.settings import StoreSettings
from host.errors import StoreClosed, StoreError, StoreUnavailable
from host.readers import Readers
from host.writepath import LASTING, WritePath, probe_transaction, unavailable
from host.writer import StoreStats, Writer

if TYPE_CHECKING:
    from host.outage import Outage

__all__ = ["Prepare", "Store", "StoreStats", "make_store"]

T = TypeVar("T")
log = logging.getLogger("smshost.store")
Prepare = Callable[[sqlite3.Connection], None]


class _Queue(Protocol):
    """:meth:`host.writer.Writer.queue`, bound."""

    def __call__(self, fn: Callable[[Database], T], *,
                 bare: bool = False) -> asyncio.Future[T]: ...


def _not_open(fn: Callable[[Database], T], *, bare: bool = False) -> asyncio.Future[T]:
    raise StoreClosed("the store is not open")


class Store:
    """The database of one host. Open with :meth:`open`, close with :meth:`close`."""

    dialect = "sqlite"  # or "postgresql" (host.pg.store.PgStore)

    def __init__(self, path: Path, settings: StoreSettings | None = None,
                 prepare: Prepare | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or StoreSettings()
        self._prepare = prepare
        self._writer: Writer | None = None
        self._drainer: asyncio.Task[None] | None = None  # the writer's task
        self._queue: _Queue = _not_open  # the writer's queue, bound (hot path)
        self._open = False
        self.readers = Readers(partial(self._connect, readonly=True))
        self._read_call = self.readers.run
        self._loop_reader: Database | None = None
        self.stats = StoreStats()
        self.writes = WritePath()

    # -- lifecycle ------------------------------------------------------------------

    async def open(self, migrations: Sequence[Migrations] = ()) -> None:
        """Create the file if needed, start the writer, apply ``migrations`` in order."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smshost-commit")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(pool, partial(self._connect, readonly=False))
        except sqlite3.Error as exc:
            pool.shutdown(wait=False)
            what = f"cannot open the database {self.path}"
            raise StoreError(str(unavailable(exc, what) or f"{what}: {exc}")) from None
        self._writer = Writer(Database(conn), pool, self.settings, self.writes, self.stats)
        self._drainer = self._writer.task
        self._queue = self._writer.queue
        self._open = True
        try:
            await self._submit(upkeep.vacuum_mode, bare=True)
            for migration_set in migrations:
                await self._submit(migration_set.apply, bare=True)
            await self._probe_at_start()
        except BaseException as exc:
            await self.close()
            if isinstance(exc, StoreUnavailable):  # a step the database refused
                raise self._cannot_write(exc) if exc.kind in LASTING else StoreError(
                    f"cannot prepare the database {self.path}: {exc}") from None
            raise

    async def _probe_at_start(self) -> None:
        """A database that can never be written (read-only) stops the start, in words; one
        refused for now (a full disk) starts, with /health reporting it until it clears."""
        try:
            await self.probe()
        except StoreUnavailable as exc:
            if exc.kind in LASTING:
                raise self._cannot_write(exc) from None
            log.error("%s refuses writes at start: %s", self.path, exc)

    def _cannot_write(self, exc: StoreUnavailable) -> StoreError:
        return StoreError(f"the database {self.path} cannot be written: {exc}; smshost "
                          "writes the file, its -wal and -shm files and their directory "
                          "(server.data_dir)")

    async def close(self) -> None:
        """Commit every write already queued, then stop the writer and close readers."""
        if self._writer is None:
            return
        self._open = False
        writer, self._writer = self._writer, None
        await writer.close()
        self._drainer = None
        self._queue = _not_open
        self.readers.close()
        if self._loop_reader is not None:
            self._loop_reader.conn.close()
            self._loop_reader = None

    @property
    def where(self) -> str:
        """The database, named for logs and messages."""
        return str(self.path)

    @property
    def is_open(self) -> bool:
        return self._open

    # -- public operations ----------------------------------------------------------

    async def write(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` in the writer's next transaction; return once it is committed.

        ``fn`` runs on the event loop: keep it to SQL work. Cancelling the caller does
        not withdraw the write: once queued it runs and commits, so a caller that gave
        up may still find its row stored.
        """
        return await self.write_soon(fn)

    def write_soon(self, fn: Callable[[Database], T]) -> asyncio.Future[T]:
        """Queue ``fn`` for the writer now; the future gives its result once committed.

        Writes are committed in the order they were queued (in one transaction or in
        later ones), so a caller can queue a write and go on to queue the next one
        without waiting for the first commit: the second is never committed before it.
        """
        if not self._open:
            raise StoreClosed("the store is not open")
        if self._drainer is None or self._drainer.done():
            raise StoreError("the writer has stopped")
        return self._queue(fn)

    async def write_retrying(self, fn: Callable[[Database], T], delays: Iterable[float],
                             keep_going: Callable[[], bool], what: str,
                             outage: Outage | None = None) -> T | None:
        """``fn`` written, tried at once and again after each of ``delays`` while the
        database refuses it (``StoreError`` from BEGIN or COMMIT, ``sqlite3.Error`` from
        a statement: a lock another process holds, a full disk; the write was rolled
        back either way) and ``keep_going()``. None when it never went through. With
        ``outage`` (the caller's loop), a retry is logged there, once per failing spell,
        and not per write."""
        waits = iter(delays)
        while True:
            try:
                written = await self.write(fn)
            except (StoreError, sqlite3.Error) as exc:
                delay = next(waits, None)
                if delay is None or not keep_going():
                    log.error("%s not stored (%s); giving up", what, exc)
                    return None
                if outage is not None:
                    outage.failed(exc, what)
                else:
                    log.warning("%s not stored (%s); trying again in %.1f s", what, exc,
                                delay)
            else:
                if outage is not None:
                    outage.succeeded()
                return written
            await asyncio.sleep(delay)
            if not keep_going():
                log.error("%s not stored; stopping", what)
                return None

    async def probe(self) -> None:
        """One small write alone (a page allocated and freed again, committed): raise
        :class:`StoreUnavailable` when the database refuses it. Recorded in ``writes``."""
        if not self._open:
            raise StoreClosed("the store is not open")
        await self._submit(probe_transaction, bare=True)

    async def check_writes(self) -> None:
        """Probe when ``writes`` says one is due (see host.writepath); never raises."""
        if self._open and self.writes.probe_due():
            try:
                await self.probe()
            except StoreError:
                pass  # recorded in self.writes

    async def read(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on a read-only connection in a worker thread."""
        if not self._open:
            raise StoreClosed("the store is not open")
        return await anyio.to_thread.run_sync(partial(self._read_call, fn))

    def read_now(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` right here on the event loop, on a read-only connection of its
        own: for point lookups by key, which take microseconds, where handing over to a
        worker thread would cost far more than the query. Never for scans."""
        if not self._open:
            raise StoreClosed("the store is not open")
        if self._loop_reader is None:
            self._loop_reader = Database(self._connect(readonly=True))
        return fn(self._loop_reader)

    async def ping(self) -> bool:
        """True when a read succeeds and the writer is alive; raise with the reason if not."""
        if not self._open:
            raise StoreClosed("the store is not open")
        if self._drainer is None or self._drainer.done():
            raise StoreError("the writer has stopped")
        return await self.read(lambda db: db.execute("select 1").fetchone()[0] == 1)

    async def write_apart(self, fn: Callable[[Database], T], *,
                          transaction: bool = True) -> T:
        """Run ``fn(db)`` on the writer's thread, not the event loop, in a transaction
        of its own (none with ``transaction=False``), after the writes queued before
        it and before the ones queued meanwhile, which wait for it: for upkeep of a few
        milliseconds at a time (a purge batch, a step of the incremental vacuum).

        Its commit does not wait for the disk (``synchronous = NORMAL``): a power loss
        may undo the step, which the next purge does again, and the next commit of a
        live write makes it durable with that write anyway. The writes waiting behind
        it are spared one flush each step.
        """
        if not self._open:
            raise StoreClosed("the store is not open")
        result = await self._submit(partial(_apart, fn, transaction,
                                            self.settings.synchronous), bare=True)
        self.stats.commits += transaction
        return result

    async def purge_table(
        self, table: str, column: str, cutoff: str, *, batch_size: int, pause: float,
        dry_run: bool = False, children: Sequence[tuple[str, str]] = (),
        keep: str | None = None, walk: str | None = None,
        spare: upkeep.Spare | None = None,
    ) -> dict[str, int]:
        """Delete rows of ``table`` whose ``column`` < ``cutoff`` in bounded batches, one
        transaction each with ``pause`` seconds between them, walking the index of
        ``walk`` (default ``column``); ``children`` are ``(table, foreign key)`` pairs
        deleted with each batch, ``keep`` a query of rowids that stay however old,
        ``spare`` rows that stay by their values. Returns rows per table (counted
        only, with ``dry_run``). :func:`host.upkeep.purge_table` says more."""
        return await upkeep.purge_table(self, table, column, cutoff, batch_size=batch_size,
                                        pause=pause, dry_run=dry_run, children=children,
                                        keep=keep, walk=walk, spare=spare)

    # -- connections ----------------------------------------------------------------

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False,
            timeout=self.settings.busy_timeout_ms / 1000,
        )
        conn.execute(f"pragma busy_timeout = {int(self.settings.busy_timeout_ms)}")
        if not readonly:
            # A new file gives the space a purge frees back (upkeep.give_back); an older
            # one is switched by a VACUUM (upkeep.vacuum_mode). Set on a new file only:
            # on an existing one it is a write, refused when the file is read-only.
            if conn.execute("pragma page_count").fetchone()[0] == 0:
                conn.execute("pragma auto_vacuum = incremental")
            conn.execute("pragma journal_mode = wal")
        conn.execute(f"pragma synchronous = {self.settings.synchronous}")
        conn.execute("pragma foreign_keys = on")
        if readonly:
            conn.execute("pragma query_only = on")
        if self._prepare is not None:
            self._prepare(conn)
        return conn

    # -- the writer -----------------------------------------------------------------

    async def _submit(self, fn: Callable[[Database], T], *, bare: bool = False) -> T:
        return await self._queue(fn, bare=bare)


def _apart(fn: Callable[[Database], T], transaction: bool, synchronous: str,
           db: Database) -> T:
    conn = db.conn
    conn.execute("pragma synchronous = normal")
    try:
        if not transaction:
            return fn(db)
        conn.execute("begin immediate")
        try:
            result = fn(db)
            conn.execute("commit")
        except BaseException:
            if conn.in_transaction:
                conn.execute("rollback")
            raise
        return result
    finally:
        conn.execute(f"pragma synchronous = {synchronous}")


def make_store(settings: StoreSettings, data_dir: Path, prepare: Prepare | None = None
               ) -> Store:
    """The store ``settings`` name: PostgreSQL at ``url`` when set (``prepare``, a hook
    for SQLite connections, does not apply there), else SQLite in ``data_dir``."""
    if settings.url is None:
        return Store(data_dir / settings.filename, settings, prepare=prepare)
    try:
        from host.pg.store import PgStore
    except ImportError as exc:  # psycopg is an extra: pip install 'smshost[postgresql]'
        raise StoreError("[store] url names PostgreSQL, which needs the psycopg package: "
                         f"pip install 'smshost[postgresql]' ({exc})") from None
    return PgStore(settings.url.reveal(), settings, data_dir / settings.filename)
