"""What every desk route starts with: the running queue sink, and who calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.requests import Request

from host.api import ApiError, request_caller

from .actions import Actor
from .sink import KIND, QueueSink
from .tx import Tx

T = TypeVar("T")


def sink_of(request: Request) -> QueueSink:
    sink = request.app.state.host.sink(KIND)
    if not isinstance(sink, QueueSink):
        raise ApiError(503, "unavailable", "the queue sink did not load; run `smshost check`")
    return sink


def actor_of(request: Request) -> Actor:
    caller = request_caller(request)
    return Actor(caller.user, "supervise" in caller.rights)


async def read(sink: QueueSink, fn: Callable[[Tx], T]) -> T:
    """``fn`` on a read-only connection, with the sink's settings and clock."""
    defaults, priorities, epoch = sink.settings.acd, sink.settings.priorities, sink.clock()
    return await sink.host.store.read(lambda db: fn(Tx(db, epoch, defaults, priorities)))
