"""Callbacks to the sender's application (issue 16 points 3-5): one queue
(:mod:`host.callbacks.queue`) and this one worker for every kind: a send's
``status_callback`` (each status change POSTed there as signed JSON, as the webhook sink
signs: :mod:`host.signing`) and a Kannel or Jasmin ``dlr-url`` (host.compat.callbacks).
A row holds what to send, built when the change was recorded; the worker sends it
with retries and backoff (:mod:`host.callbacks.attempt`) until delivered or dead;
dead letters are replayed by the API. The queue is a table, so what is pending
survives a restart.

The rows of a status change are written in the change's own transaction
(host.ledger.queue_callbacks: a committed change has its callbacks committed too);
after the commit the ledger hands the change to :meth:`Callbacks.changed`, which only
wakes the worker. A message without a callback costs a few dict lookups.

Every URL is checked again at each attempt (a ``status`` one by the ``[callbacks]``
rules, a dlr-url by ``[compat]``'s, host.callbacks.urls): the allowed hosts may have
changed, and the addresses its name resolves to must be public unless allowed
(:class:`GuardedResolver`, one HTTP session per set of rules).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from host import __version__
from host.callbacks.attempt import AddressRefused, Outcome, attempt, policy_of
from host.callbacks.queue import due, record, replay, row_of, wanted
from host.callbacks.urls import address_refusal, dlr_refusal, dlr_rules, refusal
from host.config.compat import CompatSettings
from host.errors import ApiError

if TYPE_CHECKING:
    from host.config.callbacks import CallbackSettings
    from host.ledger import Change
    from host.store import Store

log = logging.getLogger("smshost.callbacks")


class GuardedResolver(AbstractResolver):
    """Resolves as aiohttp does, then refuses a name with a non-public address."""

    def __init__(self, allow_private: Callable[[], bool]) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self._allow_private():
            for result in found:
                problem = address_refusal(result["host"])
                if problem:
                    raise AddressRefused(f"{host} resolves to {problem}")
        return found

    async def close(self) -> None:
        await self._inner.close()


class Callbacks:
    """Queues and sends callbacks. ``clock`` (Unix seconds) says when an attempt is
    due: tests drive the retries with a fake one."""

    def __init__(self, settings: CallbackSettings, store: Store,
                 clock: Callable[[], float] = time.time,
                 compat: CompatSettings | None = None) -> None:
        self.settings = settings
        self.compat = compat or CompatSettings()
        self.clock = clock
        self._store = store
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._running = False
        # Whether this node sends the callbacks now (host.cluster: the node holding the
        # "callbacks" lease; the queue is read, not claimed, so one node sends): None,
        # always. Checked each tick; another node's changes are found within a second.
        self.gate: Callable[[], Awaitable[bool]] | None = None

    # -- queuing (after each commit, from the ledger) -----------------------------------

    def changed(self, change: Change) -> Awaitable[None] | None:
        """After the commit of ``change``: its callbacks were queued in its transaction
        (host.ledger.queue_callbacks), so only wake the worker when it asked for any."""
        if wanted(change):
            self._wake.set()
        return None

    # -- lifecycle ------------------------------------------------------------------------

    def _session(self, kind: str) -> aiohttp.ClientSession:
        """The HTTP session of ``kind``'s callbacks: each set of rules has its own
        resolver guard (``[callbacks]`` for status ones, ``[compat]``'s for dlr-urls)."""
        key = "status" if kind == "status" else "dlr"
        if key not in self._sessions:
            resolver = GuardedResolver(lambda: self.settings.allow_private) if key == \
                "status" else GuardedResolver(lambda: dlr_rules(self.settings, self.compat)[1])
            connector = aiohttp.TCPConnector(limit=self.settings.max_in_flight,
                                             resolver=resolver)
            self._sessions[key] = aiohttp.ClientSession(
                connector=connector, trust_env=False,
                headers={"User-Agent": f"smshost/{__version__}"})
        return self._sessions[key]

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._running = True
        self._task = asyncio.create_task(self._loop(), name="smshost-callbacks")

    async def stop(self) -> None:
        self._running = False
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        tasks = list(self._in_flight.values())
        for task in tasks:  # their rows stay pending: tried again after the restart
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._in_flight.clear()
        await self.close()

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def wake(self) -> None:
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Send every row due now (at most ``max_in_flight``) and wait for them; how many
        (tests drive the worker with it and a fake clock)."""
        rows, _ = await self._store.read(partial(
            due, now=self.clock(), limit=self.settings.max_in_flight, skip=set()))
        await asyncio.gather(*(self._attempt(row) for row in rows))
        return len(rows)

    async def _loop(self) -> None:
        while self._running:
            self._wake.clear()
            free = self.settings.max_in_flight - len(self._in_flight)
            next_at: float | None = None
            try:
                if self.gate is not None and not await self.gate():
                    free = 0  # another node sends them: look again in a second
                rows, next_at = ([], None) if free <= 0 else await self._store.read(
                    partial(due, now=self.clock(), limit=free, skip=set(self._in_flight)))
            # The worker must outlive a failed read (a locked or full database): it
            # looks again in a second (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("callbacks: reading the queue (or the lease) failed")
                rows = []
            for row in rows:
                task = asyncio.create_task(self._attempt(row))
                self._in_flight[row["id"]] = task
            if rows and len(rows) == free:
                continue
            wait = 1.0 if next_at is None else max(0.0, min(1.0, next_at - self.clock()))
            try:
                async with asyncio.timeout(wait):  # not wait_for: 3.11's may lose a cancel
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _attempt(self, row: dict[str, Any]) -> None:
        try:
            outcome = await self._send(row)
            stored = await self._store.write(partial(_record, row, outcome))
            if stored and outcome.outcome == "dead":
                log.warning("%s callback %d (message %d) is a dead letter after %d "
                            "attempt(s): %s", row["kind"], row["id"], row["message_id"],
                            row["attempts"] + 1, outcome.error)
        # One delivery must not stop the others: it stays pending and is read again
        # (BLE001).
        except Exception:  # noqa: BLE001
            log.exception("callback %d failed unexpectedly", row["id"])
        finally:
            self._in_flight.pop(row["id"], None)
            self._wake.set()

    async def _send(self, row: dict[str, Any]) -> Outcome:
        problem = self._refusal(row)
        if problem:  # the allowed hosts changed since it was queued
            return Outcome("dead", None, f"refused: {problem}")
        secret = self.settings.secret
        policy = policy_of(row["kind"], self.settings, self.compat)
        return await attempt(self._session(row["kind"]), row, policy,
                             secret.reveal() if secret else "", self.clock())

    def _refusal(self, row: dict[str, Any]) -> str | None:
        if row["kind"] == "status":
            return refusal(row["url"], self.settings)
        return dlr_refusal(row["url"], self.settings, self.compat)

    # -- dead letters ---------------------------------------------------------------------

    async def replay(self, delivery_id: int) -> dict[str, Any]:
        """Queue a dead letter again (404 unknown, 409 not dead)."""
        replayed = await self._store.write(partial(_replay, delivery_id, self.clock()))
        if replayed is None:
            found = await self._store.read(partial(_row, delivery_id))
            if found is None:
                raise ApiError(404, "not_found", f"no callback with id {delivery_id}")
            raise ApiError(409, "not_dead", f"callback {delivery_id} is "
                           f"{found['status']}; only dead letters are replayed")
        self._wake.set()
        return replayed


# Store functions take the database last (store.write(partial(...))).
def _record(row: dict[str, Any], outcome: Outcome, db: Any) -> bool:
    return record(db, row, outcome)


def _replay(delivery_id: int, now: float, db: Any) -> dict[str, Any] | None:
    return replay(db, delivery_id, now)


def _row(delivery_id: int, db: Any) -> dict[str, Any] | None:
    return row_of(db, delivery_id)
