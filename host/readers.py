"""The store's read-only connections, lent to one read on a worker thread at a time.

Not one per thread: anyio retires idle worker threads and starts new ones, and a
per-thread connection outlived its thread (one left open per retired thread, found by
review). WAL lets reads proceed while the writer commits.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlite_utils import Database

T = TypeVar("T")


class Readers:
    """A pool of read-only connections opened with ``connect``, as many as reads ever ran
    at once (at most anyio's thread limit)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 wrap: Callable[[sqlite3.Connection], Database] = Database,
                 usable: Callable[[Database], bool] = lambda db: True) -> None:
        self._connect = connect
        self._wrap = wrap
        self._usable = usable  # false: a connection lost (a server restarted): not lent again
        self._idle: queue.SimpleQueue[Database] = queue.SimpleQueue()
        self.conns: list[sqlite3.Connection] = []  # every reader open, idle or lent
        self._lock = threading.Lock()

    def run(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn`` (on a worker thread) on an idle reader, or a new one when all are
        lent."""
        idle = self._idle
        try:
            db = idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
            with self._lock:
                self.conns.append(conn)
            db = self._wrap(conn)
        try:
            return fn(db)
        finally:
            with self._lock:
                if idle is self._idle and self._usable(db):
                    idle.put(db)
                else:  # the store closed (or reopened) meanwhile: this reader is done
                    db.conn.close()
                    self.conns.remove(db.conn)

    def close(self) -> None:
        """Close the idle readers. One lent to a read under way (a worker thread) is
        closed by that read when it ends (closing it under the read crashes)."""
        with self._lock:
            idle, self._idle = self._idle, queue.SimpleQueue()
            while True:
                try:
                    db = idle.get_nowait()
                except queue.Empty:
                    break
                db.conn.close()
                self.conns.remove(db.conn)
