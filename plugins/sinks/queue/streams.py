"""Server-Sent Events of the desk: ``GET /api/agents/me/events`` (an agent's offers,
interactions, messages, status and its queues' lengths) and ``GET /api/queues/events``
(supervisors: queue lengths, longest wait, agents by status).

Both read the stored feed (host rows of ``queue_feed``) after the last id sent: with
``Last-Event-ID``, what the client missed comes first, then the live events, from the
same query; without it the stream starts at the newest event. Each event is
``id: N``, ``event: KIND``, ``data: JSON``.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlite_utils import Database
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from host.api import MAX_ID, ApiError, is_decimal

from . import directory, feed
from .callers import sink_of

KEEPALIVE = 15.0  # seconds between comments on a quiet stream
BATCH = 200  # events read at once

Select = Callable[..., list[dict[str, Any]]]  # (db, last=N)


def last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id", "").strip()
    if not raw:
        return None
    if not is_decimal(raw) or int(raw) > MAX_ID:
        raise ApiError(400, "bad_parameter", f"Last-Event-ID must be an event id (digits); "
                       f"got {raw[:40]!r}")
    return int(raw)


def for_agent(login: str) -> Select:
    def select(db: Database, last: int) -> list[dict[str, Any]]:
        queues = [*directory.workgroups_of(db, login), login]
        return feed.for_agent(db, last, login, queues, BATCH)
    return select


def for_supervisors(db: Database, last: int) -> list[dict[str, Any]]:
    return feed.for_supervisors(db, last, BATCH)


def stream(request: Request, select: Select) -> Response:
    last = last_event_id(request)
    return StreamingResponse(_events(request, select, last), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(request: Request, select: Select, last: int | None
                  ) -> AsyncIterator[bytes]:
    yield b": connected\n\n"
    try:
        if last is None:
            last = await sink_of(request).host.store.read(feed.top)
        while True:
            sink = sink_of(request)  # again each time: a reload replaces the sink
            waiter = sink.feed.waiter()
            found = await sink.host.store.read(partial(select, last=last))
            for event in found:
                last = event["id"]
                yield (f"id: {event['id']}\nevent: {event['event']}\n"
                       f"data: {json.dumps(event['data'])}\n\n").encode()
            if len(found) == BATCH:
                continue
            try:
                async with asyncio.timeout(KEEPALIVE):  # not wait_for: 3.11's may lose a cancel
                    await waiter.wait()
            except TimeoutError:
                yield b": keepalive\n\n"
    except ApiError:  # the sink went away (a reload that dropped it): the stream ends
        return
