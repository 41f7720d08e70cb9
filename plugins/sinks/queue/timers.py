"""The desk's timers: one task that ticks at the next stored deadline (an offer's, a
wrap-up's, a declined offer's retry), or when woken by a change. Nothing is kept in
memory: after a restart (kill -9 included) the first tick expires what fell due while
the node was down and re-offers it, and the next deadlines come from the database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from host.api import Outage

if TYPE_CHECKING:
    from .sink import QueueSink

log = logging.getLogger("smshost.queue")
MAX_WAIT = 60.0  # seconds: a tick at least this often, whatever the deadlines say
RETRY = 1.0  # seconds before trying again when the database refused a tick


class Scheduler:
    def __init__(self, sink: QueueSink) -> None:
        self._sink = sink
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="smshost-queue-timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        outage = Outage("the queue timers", log)
        while True:
            self._wake.clear()
            try:
                due = await self._sink.tick()
                outage.succeeded()
            except Exception as exc:  # noqa: BLE001 - logged, tried again
                outage.failed(exc, "a queue tick")
                due = self._sink.clock() + RETRY
            delay = MAX_WAIT if due is None else \
                min(MAX_WAIT, max(0.0, due - self._sink.clock()))
            try:
                async with asyncio.timeout(delay):  # not wait_for: 3.11's may lose a cancel
                    await self._wake.wait()
            except TimeoutError:
                pass
