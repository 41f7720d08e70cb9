"""The status callbacks of the compatible send APIs (a Kannel or Jasmin ``dlr-url``):
kept in ``compat_callbacks`` (migration m016) and called from the node, with retries.

A send through host.compat.kannel or host.compat.jasmin stores what its callback needs
in the message's ``attrs.dlr`` (its kind, URL template, mask or level, method); no
other send pays anything. When such a message's status changes (the
``message_status_changed`` hook of host.defaults.compat, after the change is committed)
and the change is one the request asked for, the filled request is written as a row
here; a worker calls due rows, at most :data:`BATCH` at once: an answer 2xx is done (the
row is deleted); a network error, a timeout, a 429 or a 5xx is tried again after
``compat.callback_first_delay`` seconds, doubled each time up to
``compat.callback_max_delay``, at most ``compat.callback_attempts`` times; any other
answer, or the last attempt failed, leaves the row ``dead`` (logged; purged with the
messages). Pending rows survive a restart. A change committed but not yet written here
when the node stops is not called back (as for the webhook sink's status target).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from host.backoff import grown
from host.models import utcnow

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.config.compat import CompatSettings
    from host.store import Store

log = logging.getLogger("smshost.compat")
BATCH = 32
IDLE = 5.0  # seconds the worker sleeps at most when nothing is due


@dataclass(frozen=True, slots=True)
class Call:
    """One callback request: GET ``url``, or POST ``body`` (form-encoded) to it."""

    method: str
    url: str
    body: str | None = None


class Callbacks:
    """The callback rows of a node and their worker. ``clock``: Unix seconds."""

    def __init__(self, store: Store, settings: Callable[[], CompatSettings],
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._settings = settings
        self.clock = clock
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    async def add(self, message_id: int, calls: Iterable[Call]) -> None:
        rows = [(message_id, c.method, c.url, c.body) for c in calls]
        if not rows:
            return
        now, stamp = self.clock(), utcnow()
        await self._store.write(lambda db: db.conn.executemany(
            "insert into compat_callbacks (message_id, method, url, body, next_at, "
            "created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?)",
            [(*row, now, stamp, stamp) for row in rows]))
        self._wake.set()

    async def run_once(self) -> int:
        """Call every due row (at most :data:`BATCH`); how many were called."""
        now = self.clock()
        due = await self._store.read(lambda db: db.execute(
            "select id, method, url, body, attempts from compat_callbacks where "
            "status = 'pending' and next_at <= ? order by next_at, id limit ?",
            [now, BATCH]).fetchall())
        if not due:
            return 0
        results = await asyncio.gather(*(self._call(row[1], row[2], row[3]) for row in due))
        settings = self._settings()
        outcomes = [_outcome(row, result, settings, now) for row, result in
                    zip(due, results, strict=True)]
        await self._store.write(lambda db: _record(db, outcomes))
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        """Call due rows until ``stop`` is set."""
        while not stop.is_set():
            try:
                called = await self.run_once()
            except Exception:  # the worker outlives one bad round (BLE001)  # noqa: BLE001
                log.exception("status callbacks: a round failed")
                called = 0
            if called:
                continue
            self._wake.clear()
            wait = await self._next_wait()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _next_wait(self) -> float:
        found = await self._store.read(lambda db: db.execute(
            "select min(next_at) from compat_callbacks where status = 'pending'").fetchone())
        if found is None or found[0] is None:
            return IDLE
        return max(0.0, min(IDLE, float(found[0]) - self.clock()))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, url: str, body: str | None) -> tuple[int | None, str]:
        """(status, error): status None for a network error or a timeout. The URL is
        sent as filled, not normalised (Kannel's encoding is the application's)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=False)
        timeout = aiohttp.ClientTimeout(total=self._settings().callback_timeout)
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        try:
            async with self._session.request(method, URL(url, encoded=True), data=body,
                                             headers=headers, timeout=timeout,
                                             allow_redirects=False) as resp:
                await resp.read()
                return resp.status, "" if resp.status < 300 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]


def _outcome(row: tuple[Any, ...], result: tuple[int | None, str],
             settings: CompatSettings, now: float) -> tuple[int, str, int, float, str]:
    """(id, what, attempts, next_at, error): ``what`` is done, retry or dead."""
    status, error = result
    attempts = int(row[4]) + 1
    if status is not None and 200 <= status < 300:
        return row[0], "done", attempts, now, ""
    retryable = status is None or status == 429 or status >= 500
    if not retryable or attempts >= settings.callback_attempts:
        log.warning("status callback %s %s given up after %d attempt(s): %s", row[1],
                    row[2], attempts, error)
        return row[0], "dead", attempts, now, error
    delay = grown(settings.callback_first_delay, 2.0, attempts - 1,
                  settings.callback_max_delay)
    return row[0], "retry", attempts, now + delay, error


def _record(db: Database, outcomes: list[tuple[int, str, int, float, str]]) -> None:
    stamp = utcnow()
    for key, what, attempts, next_at, error in outcomes:
        if what == "done":
            db.execute("delete from compat_callbacks where id = ?", [key])
        else:
            db.execute("update compat_callbacks set attempts = ?, next_at = ?, "
                       "last_error = ?, status = ?, updated_at = ? where id = ?",
                       [attempts, next_at, error, "dead" if what == "dead" else "pending",
                        stamp, key])
