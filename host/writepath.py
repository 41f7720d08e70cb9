"""Whether the database takes writes (SPEC P12): what refused the last one, and a probe.

The store tells :class:`WritePath` the outcome of every transaction it runs: committed,
or refused by the database for a reason outside the write itself (:func:`refusal`: the
disk or the database's size limit is full, the file is read-only, an I/O error, a lock
another process held past ``busy_timeout``). ``/health`` reports the path as failing
from the first refusal until a later write commits, and answers 503 meanwhile so a load
balancer takes the node out.

Noticing recovery without traffic: a node taken out of service gets no writes, so
``/health`` itself asks the store for a probe (a small transaction, run alone, that
needs the file to grow unless ``PROBE_PAGES`` pages are free) when one is due: every
``PROBE_EVERY`` seconds while the path is failing, and after ``IDLE_PROBE_AFTER``
seconds without any write while it is fine (an idle node whose disk filled up is taken
out before the first message meets the full disk). A load balancer polling /health
is what drives the probe, so a node nobody polls costs no writes; real writes count as
probes too, so a busy node is never probed. Probes are timed on a monotonic clock
(``clock``, set by tests).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from host.errors import StoreUnavailable

if TYPE_CHECKING:
    from sqlite_utils import Database
from host.models import utcnow

PROBE_EVERY = 2.0  # seconds between two probes while writes fail
IDLE_PROBE_AFTER = 60.0  # seconds without any write before an idle node is probed
PROBE_PAGES = 16  # a probe passes when this many pages are free, or the file can grow
RETRY_AFTER = 5
"""Seconds in the ``Retry-After`` of every answer refused because of the database."""

# Primary result codes of SQLite meaning "the database refuses": not the statement's
# fault (a constraint, a SQL error), and the same write may go through later.
_REFUSALS = {3: "perm", 5: "busy", 6: "locked", 7: "nomem", 8: "readonly", 10: "ioerr",
             11: "corrupt", 13: "full", 14: "cantopen", 15: "protocol", 26: "notadb"}
# The same, read from the message when an error carries no code (one built by hand).
_MESSAGES = {"database or disk is full": "full", "readonly database": "readonly",
             "disk i/o error": "ioerr", "database is locked": "busy",
             "unable to open database file": "cantopen"}
# Refusals that do not go away by themselves: the start stops on them.
LASTING = frozenset({"perm", "readonly", "cantopen", "corrupt", "notadb"})

_WORDS = {
    "full": "the disk or the database's size limit is full",
    "readonly": "the database file or its directory is read-only",
    "ioerr": "the disk reported an I/O error",
    "busy": "another process held the database lock too long",
    "locked": "another process held the database lock too long",
    "cantopen": "the database file (or its -wal or -shm file) cannot be opened",
}


def refusal(exc: BaseException) -> str | None:
    """The kind of refusal (``full``, ``readonly``, ``ioerr``, ``busy``...) when ``exc`` is
    the database refusing work for a reason outside it; None for anything else."""
    if isinstance(exc, StoreUnavailable):
        return exc.kind
    if not isinstance(exc, sqlite3.DatabaseError) or \
            isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return _REFUSALS.get(code & 0xFF)
    text = str(exc).lower()
    return next((kind for words, kind in _MESSAGES.items() if words in text), None)


def unavailable(exc: BaseException, what: str) -> StoreUnavailable | None:
    """``exc`` as a :class:`StoreUnavailable` saying ``what`` failed and why, when it is a
    refusal; None otherwise."""
    if isinstance(exc, StoreUnavailable):
        return exc
    kind = refusal(exc)
    if kind is None:
        return None
    why = _WORDS.get(kind)
    error = StoreUnavailable(f"{what}: {exc}" + (f" ({why})" if why else ""), kind)
    error.__cause__ = exc
    return error


def retry_later() -> dict[str, str]:
    """The headers of every 503 answered because the database refused the work (the
    API's, broker webhooks', plugins' routes): one place for them."""
    return {"Retry-After": str(RETRY_AFTER)}


@dataclass
class WritePath:
    """The outcome of the last transaction, and when the next probe is due."""

    clock: Callable[[], float] = field(default=time.monotonic)
    error: str | None = None
    failing_since: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    _last_try: float | None = None
    on_recovery: list[Callable[[], None]] = field(default_factory=list)
    """Called when a write commits after refusals (host.outage.Refusals.recovered)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def succeeded(self) -> None:
        if self.error is not None:
            for recovered in self.on_recovery:
                recovered()
        self.error = self.failing_since = None
        self.last_success = utcnow()
        self._last_try = self.clock()

    def failed(self, reason: str) -> None:
        now = utcnow()
        if self.error is None:
            self.failing_since = now
        self.error = reason
        self.last_failure = now
        self._last_try = self.clock()

    def probe_due(self) -> bool:
        """True (and the probe counted as started) when a probe is due."""
        now = self.clock()
        wait = PROBE_EVERY if self.error is not None else IDLE_PROBE_AFTER
        if self._last_try is not None and now - self._last_try < wait:
            return False
        self._last_try = now
        return True

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "failing_since": self.failing_since,
                "last_success": self.last_success, "last_failure": self.last_failure}


def probe_transaction(db: Database) -> None:
    """The probe, run alone on the writer's connection: a row needing more pages than
    the database has free (at most ``PROBE_PAGES``), so the file must grow unless that
    much room is free, inserted and deleted again in one committed transaction (the
    WAL takes new frames). Its own pages are free afterwards: sizing it by the free
    pages keeps one probe's leftovers from passing the next."""
    conn = db.conn
    conn.execute("begin immediate")
    try:
        conn.execute("create table if not exists _smshost_probe (pad blob)")
        (free, ), = conn.execute("pragma freelist_count").fetchall()
        (page, ), = conn.execute("pragma page_size").fetchall()
        conn.execute("insert into _smshost_probe values (zeroblob(?))",
                     [min(free + 1, PROBE_PAGES) * page])
        conn.execute("delete from _smshost_probe")
        conn.execute("commit")
    except BaseException:
        if conn.in_transaction:
            conn.execute("rollback")
        raise
