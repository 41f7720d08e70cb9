"""What the other nodes committed, followed by each node (issue 17 points 2 and 3;
SPEC X3): on PostgreSQL, several nodes share one database, and what one node changes
must reach the clients and the configuration of every other.

The :class:`Follower` of a node keeps the newest id it has seen of a few tables and
looks again, in one indexed read of their ``max(id)``:

* ``message_events`` at least every ``cluster.events_poll_s`` (1 s) while someone
  streams them: the rows after the last one seen are published on the node's event bus
  (``GET /api/events``, ``/admin/live``), in id order, once each. On PostgreSQL this is
  the bus's only source: a status change made here only wakes the follower, so every
  node's clients see the same events in the same order, whoever made them
  (host.events);
* the tables plugins :meth:`follow` (the desk's ``queue_feed``): when their newest id
  moves, the plugin's wake-up is called (its streams read the rows themselves);
* ``config_history`` every ``cluster.config_poll_s`` (2 s): a newer recorded version
  whose files are not this node's is applied here (host.config.adopt), without a
  second history entry; one refused here is tried again every :data:`RETRY_REFUSED`
  seconds (a handler or secret may have been deployed meanwhile).

A notification from PostgreSQL (host.pg.listen: the writer sends one per write group
that wrote to one of these tables, naming them) wakes the follower at once; it is a
hint only, the reads are the truth, so a lost notification or a lost listening
connection costs at most one poll interval. On SQLite there is one node: nothing runs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from functools import partial
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from host.config.adopt import adopt
from host.events import committed_after
from host.history import digest
from host.jsontext import loads
from host.outage import Outage

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.config.cluster import ClusterSettings
    from host.events import EventBus
    from host.history import History
    from host.pg.listen import Listener
    from host.store import Store

log = logging.getLogger("smshost.cluster")

EVENTS = "message_events"
CONFIG = "config_history"
BATCH = 500  # events read at once
MAX_BATCHES = 20  # per round: a round ends; the next one goes on at once
RETRY_REFUSED = 30.0
STOP_WAIT = 5.0
MIN_GAP = 0.01
"""Seconds at least between two rounds: under load (a hint per write group) a round
takes every event since the last one, at most 100 rounds a second."""
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Wake = Callable[[], None]


class Follower:
    """Follows the rows other nodes commit (see the module text)."""

    def __init__(self, store: Store, history: History, events: EventBus,
                 settings: Callable[[], ClusterSettings],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._history = history
        self._events = events
        self._settings = settings
        self._clock = clock
        self._watches: dict[str, list[Wake]] = {}
        self._seen: dict[str, int] = {}  # table -> the newest id looked at
        self._marks: dict[str, int] = {}  # followed table -> the newest id its wakes saw
        self._hinted: set[str] = set()
        self._hint = asyncio.Event()
        self._retry_at: float | None = None  # a refused version is tried again then
        self.rounds = 0
        self.listener: Listener | None = None
        self._notified().update((EVENTS, CONFIG))

    def _notified(self) -> set[str]:
        """The tables the store's writer notifies (PostgreSQL; a set of nothing else)."""
        notified = getattr(self._store, "notified", None)
        return notified if isinstance(notified, set) else set()

    # -- what others ask -----------------------------------------------------------------

    def follow(self, table: str, wake: Wake) -> Callable[[], None]:
        """Call ``wake`` when rows of ``table`` (a table with an ``id`` primary key) are
        committed by any node; the answer stops it."""
        if not _NAME.match(table):
            raise ValueError(f"not a table name: {table!r}")
        self._watches.setdefault(table, []).append(wake)
        self._notified().add(table)

        def unfollow() -> None:
            wakes = self._watches.get(table, [])
            if wake in wakes:
                wakes.remove(wake)
        return unfollow

    def wake(self, *tables: str) -> None:
        """Look at ``tables`` (none: all) now (a notification, a change made here)."""
        self._hinted.update(tables or self.tables)
        self._hint.set()

    @property
    def tables(self) -> set[str]:
        return {EVENTS, CONFIG, *(t for t, wakes in self._watches.items() if wakes)}

    # -- the loop ------------------------------------------------------------------------

    async def prime(self) -> None:
        """Take the newest ids as seen (at start, before any client subscribes): the
        streams carry what is committed from now on."""
        tables = sorted(self.tables - {CONFIG})
        tops = await self._store.read(lambda db: _tops(db, tables))
        self._seen[EVENTS] = tops[EVENTS]
        self._marks.update({t: top for t, top in tops.items() if t in self._watches})

    async def run(self, url: str | None = None) -> None:
        """Rounds until cancelled: each table when its poll interval has passed or a
        hint names it; with ``url``, LISTEN there for hints (host.pg.listen)."""
        if url is None:
            await self._rounds()
            return
        from host.pg.listen import Listener  # psycopg: PostgreSQL only

        self.listener = Listener(url, self.wake)
        listening = asyncio.create_task(self.listener.run(), name="smshost-listen")
        try:
            await self._rounds()
        finally:
            listening.cancel()
            done, _ = await asyncio.wait([listening], timeout=STOP_WAIT)
            if not done:
                log.warning("the listening connection did not close within %g s", STOP_WAIT)

    async def _rounds(self) -> None:
        outage = Outage("following the other nodes", log)
        due = {"events": 0.0, "config": 0.0}
        while True:
            now = self._clock()
            await self._wait(max(0.0, min(due.values()) - now))
            now, tables = self._clock(), self._take_hints()
            settings = self._settings()
            if now >= due["events"]:
                tables |= self.tables - {CONFIG}
                due["events"] = now + settings.events_poll_s
            if now >= due["config"]:
                tables.add(CONFIG)
                due["config"] = now + settings.config_poll_s
            try:
                await self.round(tables)
            # The follower must outlive one bad round; the spell is logged (BLE001).
            except Exception as exc:  # noqa: BLE001
                outage.failed(exc)
            else:
                outage.succeeded()
            await asyncio.sleep(MIN_GAP)

    async def _wait(self, timeout: float) -> None:
        if self._hint.is_set():
            return
        try:
            async with asyncio.timeout(timeout):  # not wait_for: 3.11's may lose a cancel
                await self._hint.wait()
        except TimeoutError:
            pass

    def _take_hints(self) -> set[str]:
        tables, self._hinted = self._hinted & self.tables, set()
        self._hint.clear()
        return tables

    async def round(self, tables: Collection[str] | None = None) -> None:
        """Look at ``tables`` (default: all) once: one read of their newest ids, then
        what moved (see the module text)."""
        tables = sorted(self.tables if tables is None else set(tables) & self.tables)
        if not tables:
            return
        self.rounds += 1
        tops = await self._store.read(lambda db: _tops(db, tables))
        for table, top in tops.items():
            if table == CONFIG:
                await self._config(top)
            elif table == EVENTS:
                await self._status_events(top)
            if table in self._watches:
                self._moved(table, top)

    # -- the three kinds -----------------------------------------------------------------

    async def _status_events(self, top: int) -> None:
        last = self._seen.get(EVENTS)
        if last is None or not self._events.subscribers:  # nobody streams: keep up only
            self._seen[EVENTS] = top
            return
        if top <= last:
            return
        for _ in range(MAX_BATCHES):
            rows = await self._store.read(partial(committed_after, last_id=last, limit=BATCH))
            for row in rows:
                self._events.publish(row)
                last = row["id"]
            self._seen[EVENTS] = last
            if len(rows) < BATCH:
                return
        self.wake(EVENTS)  # more: the next round goes on at once

    def _moved(self, table: str, top: int) -> None:
        last = self._marks.get(table)
        self._marks[table] = top
        if last is None or top <= last:
            return
        for wake in list(self._watches.get(table, ())):
            try:
                wake()
            # A plugin's wake-up failing must not stop the others (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("a wake-up for new rows of %s failed", table)

    async def _config(self, top: int) -> None:
        if top == 0:
            return
        if self._retry_at is not None and self._clock() >= self._retry_at:
            self._retry_at = None
            self._seen.pop(CONFIG, None)
        if self._seen.get(CONFIG) == top:
            return
        self._seen[CONFIG] = top
        live = self._history.live
        version = await self._store.read(lambda db: _version(db, top))
        if version is None:
            return
        if digest(version) == digest(live.files):  # made here, or the files this node has
            live.applied_version = top
            if live.refused is not None and live.refused.change.source == "cluster":
                live.refused = None  # a version refused here is no longer the latest
            self._retry_at = None
            return
        done = await adopt(self._history, top, version)
        if done is None:  # a change of this node under way: look again next round
            self._seen.pop(CONFIG, None)
        elif done:
            self._retry_at = None
        else:
            self._retry_at = self._clock() + RETRY_REFUSED


def _tops(db: Database, tables: list[str]) -> dict[str, int]:
    """The newest id of each table (the newest version for the history), in one read."""
    parts = [f"(select coalesce(max(id), 0) from {t}"
             + (" where digest is not null)" if t == CONFIG else ")") for t in tables]
    row = db.execute("select " + ", ".join(parts)).fetchone()
    return {t: int(v) for t, v in zip(tables, row, strict=True)}


def _version(db: Database, version_id: int) -> dict[str, str] | None:
    row = db.execute("select files from config_history where id = ?",
                     [version_id]).fetchone()
    if row is None or row[0] is None:
        return None
    files: dict[str, Any] = loads(row[0])
    return files
