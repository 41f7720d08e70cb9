"""Status changes as a stream (SPEC O8): subscribers get every committed change.

The default plugin ``host.defaults.events`` publishes each ``message_status_changed``
here; ``GET /api/events`` streams them as Server-Sent Events. A subscriber that does
not keep up loses the oldest events (its queue is bounded) and is told how many.
"""

from __future__ import annotations

import asyncio
from typing import Any

QUEUE_SIZE = 1000


class Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        for sub in self._subscribers:
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
