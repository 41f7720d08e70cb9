"""The lanes of routing: one per conversation (local, remote), taken by a few workers.

Messages of one conversation are routed in order (the ids submitted are hints: the
router routes the conversation's oldest message still to route, which another node
may have stored; host.routing.leases), conversations side by side
(``routing.workers`` worker tasks, each taking one conversation with messages to route at
a time: a task per conversation would cost a task per message). A message whose routing
ends in "retry" holds its lane until the retry is due; the worker goes on with another.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.routing.inbound import Route

Key = tuple[str, str]  # (local, remote)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How routing one message ended."""

    status: str  # "routed", "failed", "retry" (not final), or "elsewhere" (another
    route: Route | None  # node holds the conversation's lane: it routes them)
    detail: dict[str, Any]
    retry_after: float | None = None
    message_id: int | None = None  # the message routed (the conversation's oldest)


class Lanes:
    """Routes each message submitted with ``route`` (by id), lane by lane; its length is
    the number of conversations with messages still to route."""

    def __init__(self, route: Callable[[int, Key], Awaitable[Outcome]]) -> None:
        self._route = route
        self._lanes: dict[Key, deque[int]] = {}
        self._ready: asyncio.Queue[Key] = asyncio.Queue()  # lanes to route
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()  # lanes waiting for a retry
        self.running = False

    def __len__(self) -> int:
        return len(self._lanes)

    def __contains__(self, key: object) -> bool:
        return key in self._lanes

    def keys(self) -> list[Key]:
        return list(self._lanes)

    def start(self, workers: int) -> None:
        """Start ``workers`` worker tasks (at least one) and take messages."""
        self._ready = asyncio.Queue()
        self._workers = [asyncio.create_task(self._work(), name=f"smshost-router-{n}")
                         for n in range(max(1, workers))]
        self.running = True

    async def stop(self) -> None:
        """Stop the workers and the retry timers; forget the lanes (the messages stay
        ``received`` in the store, routed again at the next start)."""
        self.running = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        self._lanes.clear()

    def submit(self, message_id: int, local: str | None, remote: str | None) -> None:
        if not self.running:
            return  # picked up by start() from the store
        key = (local or "", remote or "")
        lane = self._lanes.get(key)
        if lane is not None:  # being routed, or waiting for a worker or a retry
            if message_id not in lane:
                lane.append(message_id)
            return
        self._lanes[key] = deque([message_id])
        self._ready.put_nowait(key)

    async def _work(self) -> None:
        """One worker: route the messages of one conversation after another."""
        while True:
            key = await self._ready.get()
            lane = self._lanes.get(key)
            while lane:
                outcome = await self._route(lane[0], key)
                if outcome.status == "retry":  # the lane waits; the worker goes on
                    self._retry_later(key, outcome.retry_after or 1.0)
                    break
                if outcome.status == "elsewhere":
                    lane.clear()
                elif outcome.message_id is None:  # nothing (more) to route
                    lane.popleft()
                elif outcome.message_id in lane:
                    lane.remove(outcome.message_id)  # lane[0] but for an older one
            else:
                self._lanes.pop(key, None)

    def _retry_later(self, key: Key, delay: float) -> None:
        def ready() -> None:
            self._timers.discard(timer)
            if self.running:
                self._ready.put_nowait(key)
        timer = asyncio.get_running_loop().call_later(delay, ready)
        self._timers.add(timer)
