"""``GET /admin/live``: the dashboard's figures as server-sent events (issue 15 point 1).

The stream sends an ``event: figures`` (the JSON of host.web.ui.admin.figures) at
once, then a round at a time: a round ends when a message is stored or changes
status (the node's event bus), or after :attr:`Pace.interval` seconds, whichever
comes first, and at least :attr:`Pace.gap` seconds after the last one (a burst of
traffic is one read, not one per message). A round sends the figures when they
changed, else a comment (``: same``) that keeps the connection alive.

Bounded: ``?count=N`` (1 to :data:`MAX_COUNT`) ends the stream after N rounds (the
tests read a finite stream). Without it, a request that accepts
``text/event-stream`` (an EventSource does) streams until the browser goes away
(starlette cancels it on disconnect) or the node stops; any other request gets one
round (the figures once, then the end).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response, StreamingResponse

from host.events import Subscription
from host.web.ui.admin.figures import figures
from host.web.ui.admin.frame import NO_STORE, Admin

MAX_COUNT = 1000


@dataclass(slots=True)
class Pace:
    interval: float = 5.0
    gap: float = 1.0


PACE = Pace()
"""The stream's pace (tests set both to 0)."""


async def live(admin: Admin) -> Response:
    count = _count(admin.request.query_params.get("count"))
    if isinstance(count, str):
        return Response(count, status_code=400, media_type="text/plain", headers=NO_STORE)
    if count is None and "text/event-stream" not in admin.request.headers.get("accept", ""):
        count = 1
    bus = admin.host.events
    sub = bus.subscribe()

    async def read() -> dict[str, Any]:
        return await figures(admin)

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in rounds(read, lambda: next_round(sub, PACE), count):
                yield chunk
        finally:
            bus.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={**NO_STORE, "X-Accel-Buffering": "no"})


async def rounds(read: Callable[[], Awaitable[dict[str, Any]]],
                 wait: Callable[[], Awaitable[None]], count: int | None
                 ) -> AsyncIterator[bytes]:
    """``count`` rounds (None: until cancelled): the figures when they changed since
    the last ones sent, else a keep-alive comment; ``wait`` between rounds."""
    last = None
    done = 0
    while count is None or done < count:
        if done:
            await wait()
        data = json.dumps(await read(), sort_keys=True, separators=(",", ":"))
        if data != last:
            last = data
            yield f"event: figures\ndata: {data}\n\n".encode()
        else:
            yield b": same\n\n"
        done += 1


async def next_round(sub: Subscription, pace: Pace) -> None:
    """Until an event comes (then ``pace.gap``, the events of the burst dropped) or
    ``pace.interval`` passes."""
    try:
        await asyncio.wait_for(sub.queue.get(), pace.interval)
    except TimeoutError:
        return
    await asyncio.sleep(pace.gap)
    while not sub.queue.empty():
        sub.queue.get_nowait()


def _count(text: str | None) -> int | None | str:
    """``?count``: None when absent, the number, or why it is refused."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_COUNT):
        return f"count must be a whole number from 1 to {MAX_COUNT}"
    return int(text)
