"""Per-message status callbacks (issue 16 point 3): each status change of a message
whose send named a ``status_callback`` is queued (:mod:`host.callbacks.queue`) and
POSTed there as signed JSON (:mod:`host.signing`, as the webhook sink signs), with
retries and backoff, until delivered or dead; dead letters are replayed by the API.

The ledger hands every committed change to :meth:`Callbacks.changed`, which only
looks at the message's ``attrs.status_callback`` (no query): a message without one
costs nothing more. The queue is a table, so what is pending survives a restart.

Retries: a network error, a timeout, 5xx and 429 are tried again after
``first_delay * factor ** n`` (at most ``max_delay``; a 429's or 503's Retry-After is
honoured within it); any other answer, a redirect, an address refused or the last of
``max_attempts`` is a dead letter. The URL is checked again at each attempt: the
allowed hosts may have changed, and the addresses its name resolves to must be
public unless ``allow_private`` (:class:`GuardedResolver`).
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
from host.backoff import grown
from host.callbacks.queue import Outcome, due, enqueue, record, replay, row_of
from host.callbacks.urls import address_refusal, refusal
from host.errors import ApiError
from host.signing import DELIVERY_HEADER, SIGNATURE_HEADER, signature

if TYPE_CHECKING:
    from host.config.callbacks import CallbackSettings
    from host.ledger import Change
    from host.store import Store

log = logging.getLogger("smshost.callbacks")
ERROR_CHARS = 300


class AddressRefused(OSError):
    """A callback's host resolves to an address that is not public."""


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
    """Queues and POSTs status callbacks. ``clock`` (Unix seconds) says when an attempt
    is due: tests drive the retries with a fake one."""

    def __init__(self, settings: CallbackSettings, store: Store,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._store = store
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._running = False

    # -- queuing (after each commit, from the ledger) -----------------------------------

    def changed(self, change: Change) -> Awaitable[None] | None:
        """Queue ``change`` when its message names a status callback (None otherwise:
        no coroutine for the messages without one)."""
        url = change.message.attrs.get("status_callback")
        if not isinstance(url, str) or change.message.direction != "out":
            return None
        return self._enqueue(change, url)

    async def _enqueue(self, change: Change, url: str) -> None:
        await self._store.write(partial(_enqueue, change, url, self.clock()))
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_in_flight,
            resolver=GuardedResolver(lambda: self.settings.allow_private))
        self._session = aiohttp.ClientSession(
            connector=connector, trust_env=False,
            headers={"User-Agent": f"smshost/{__version__}"})
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
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------

    async def _loop(self) -> None:
        while self._running:
            self._wake.clear()
            free = self.settings.max_in_flight - len(self._in_flight)
            next_at: float | None = None
            try:
                rows, next_at = ([], None) if free <= 0 else await self._store.read(
                    partial(due, now=self.clock(), limit=free, skip=set(self._in_flight)))
            # The worker must outlive a failed read (a locked or full database): it
            # looks again in a second (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("status callbacks: reading the queue failed")
                rows = []
            for row in rows:
                task = asyncio.create_task(self._attempt(row))
                self._in_flight[row["id"]] = task
            if rows and len(rows) == free:
                continue
            wait = 1.0 if next_at is None else max(0.0, min(1.0, next_at - self.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _attempt(self, row: dict[str, Any]) -> None:
        try:
            outcome = await self._post(row)
            stored = await self._store.write(partial(_record, row, outcome))
            if stored and outcome.outcome == "dead":
                log.warning("status callback %d (message %d) is a dead letter after %d "
                            "attempt(s): %s", row["id"], row["message_id"],
                            row["attempts"] + 1, outcome.error)
        # One delivery must not stop the others: it stays pending and is read again
        # (BLE001).
        except Exception:  # noqa: BLE001
            log.exception("status callback %d failed unexpectedly", row["id"])
        finally:
            self._in_flight.pop(row["id"], None)
            self._wake.set()

    async def _post(self, row: dict[str, Any]) -> Outcome:
        problem = refusal(row["url"], self.settings)
        if problem:  # the allowed hosts changed since it was queued
            return Outcome("dead", None, f"refused: {problem}")
        secret = self.settings.secret
        assert self._session is not None
        body = f'{{"delivery_id":{row["id"]:d},'.encode() + row["payload"].encode()[1:]
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: str(row["id"]),
                   SIGNATURE_HEADER: signature(secret.reveal() if secret else "",
                                               int(time.time()), body)}
        status: int | None = None
        retry_after: float | None = None
        try:
            async with self._session.post(
                    row["url"], data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.settings.timeout)) as answer:
                status = answer.status
                text = (await answer.content.read(ERROR_CHARS)).decode("utf-8", "replace")
                retry_after = _seconds(answer.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                return Outcome("dead", None, f"refused: {exc.os_error}")
            error = f"cannot connect: {exc.os_error or exc}"
        except TimeoutError:
            error = f"no answer within {self.settings.timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= status < 300:
                return Outcome("delivered", status, None)
            error = f"HTTP {status}" + (f": {text.strip()}" if text.strip() else "")
        return self._retry_or_dead(row, status, error, retry_after)

    def _retry_or_dead(self, row: dict[str, Any], status: int | None, error: str,
                       retry_after: float | None) -> Outcome:
        s = self.settings
        retryable = status is None or status >= 500 or status == 429
        if status is not None and 300 <= status < 400:
            error += " (redirects are not followed)"
        if not retryable or row["attempts"] + 1 >= s.max_attempts:
            return Outcome("dead", status, error)
        delay = grown(s.first_delay, s.factor, row["attempts"], s.max_delay)
        if retry_after is not None:
            delay = max(delay, min(retry_after, s.max_delay))
        return Outcome("retry", status, error, self.clock() + delay)

    # -- dead letters ---------------------------------------------------------------------

    async def replay(self, delivery_id: int) -> dict[str, Any]:
        """Queue a dead letter again (404 unknown, 409 not dead)."""
        replayed = await self._store.write(partial(_replay, delivery_id, self.clock()))
        if replayed is None:
            found = await self._store.read(partial(_row, delivery_id))
            if found is None:
                raise ApiError(404, "not_found", f"no status callback with id {delivery_id}")
            raise ApiError(409, "not_dead", f"status callback {delivery_id} is "
                           f"{found['status']}; only dead letters are replayed")
        self._wake.set()
        return replayed


def _seconds(value: str | None) -> float | None:
    """A Retry-After of delta seconds (a date is ignored: the backoff stands)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip()[:9])


# Store functions take the database last (store.write(partial(...))).
def _enqueue(change: Change, url: str, now: float, db: Any) -> int | None:
    return enqueue(db, change, url, now)


def _record(row: dict[str, Any], outcome: Outcome, db: Any) -> bool:
    return record(db, row, outcome)


def _replay(delivery_id: int, now: float, db: Any) -> dict[str, Any] | None:
    return replay(db, delivery_id, now)


def _row(delivery_id: int, db: Any) -> dict[str, Any] | None:
    return row_of(db, delivery_id)
