"""LISTEN for the notifications the writers of every node send (host.pg.writer): a
wake-up hint for the node's follower (host.follow), never the truth.

The writer sends one ``NOTIFY smshost_changes`` per write group that wrote to a
followed table, in that group's transaction (so it is delivered after the commit, and
only if it commits), its payload the tables' names (``message_events,queue_feed``:
far under PostgreSQL's 8000-byte limit). :class:`Listener` holds one connection of its
own in autocommit, LISTENs, and hands each payload to ``hint``. A lost connection is
opened again after 1, 2, 4 ... 30 s; after :data:`MAX_RETRIES` failures in a row it
gives up (logged as an error): the follower's polling goes on alone, and a successful
LISTEN resets the count. After each (re)connection ``hint`` is called with no table
(look at everything: what was notified meanwhile was lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from host.pg.database import mask_url

log = logging.getLogger("smshost.cluster")

CHANNEL = "smshost_changes"
MAX_RETRIES = 10
MAX_DELAY = 30.0

Hint = Callable[..., None]  # hint(*tables); no table: all


class Listener:
    """LISTENs on :data:`CHANNEL` at ``url`` until cancelled (see the module text)."""

    def __init__(self, url: str, hint: Hint, *, retries: int = MAX_RETRIES,
                 delay: float = 1.0) -> None:
        self._url = url
        self._hint = hint
        self._retries = retries
        self._delay = delay
        self.connections = 0  # LISTENs that succeeded (tests, /health)
        self.listening = False
        self.backend_pid: int | None = None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                error: BaseException = ConnectionError("the server closed it")
            except (psycopg.Error, OSError) as exc:
                _cancelled(exc)  # psycopg may answer a cancellation with its own error
                error = exc
            self.listening = False
            failures = 0 if self._fresh else failures + 1
            self._fresh = False
            if failures > self._retries:
                log.error("listening for the other nodes' changes failed %d times in a row "
                          "(%s); giving up: changes are seen by polling alone", failures - 1,
                          error)
                return
            wait = min(self._delay * 2 ** max(failures - 1, 0), MAX_DELAY)
            log.warning("listening for the other nodes' changes at %s stopped (%s); again "
                        "in %g s (polling meanwhile)", mask_url(self._url), error, wait)
            await asyncio.sleep(wait)

    _fresh = False  # the last connection LISTENed before it was lost

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True,
                                                     connect_timeout=10)
        async with conn:
            await conn.execute(f"listen {CHANNEL}")
            self.connections += 1
            self.listening, self._fresh = True, True
            self.backend_pid = conn.info.backend_pid
            if self.connections > 1:
                log.info("listening for the other nodes' changes again")
            self._hint()
            async for note in conn.notifies():
                self._hint(*(t for t in note.payload.split(",") if t))


def _cancelled(exc: BaseException) -> None:
    """Raise CancelledError when the running task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
