"""Limits at the edge (SPEC P12): timeouts and a connection limit on every listener.

:class:`GuardedProtocol` is uvicorn's httptools protocol with one deadline per
connection. Every listener uses it, through the ASGI cycle or the webhook fast path
(:class:`~host.web.fastpath.WebhookProtocol` is a subclass). The deadline follows what
the server waits for (``[server.connections]``, or the listener's own values):

- a request's head: ``header_timeout`` from the connection's start (its first request)
  or from the request's first byte; then 408 and close, or only close when nothing came;
- its body: ``body_timeout`` from the end of the head; then 408 and close;
- the next request on a kept-alive connection: ``idle_timeout`` from the end of the
  answer; then close;
- nothing while the app works on a request (its own limits bound that).

A read deadline waits while the server itself holds the client back (reading paused
behind a pipelined request or a full body buffer, an earlier answer still under way).
An answer waiting on a client that does not read (writes paused), or a closing
connection whose last bytes cannot leave, is cut after ``write_timeout``.

Beyond ``limit`` open connections on a listener, a new one is answered 503 and closed
at once rather than left unread: its descriptor is free again within a turn of the
loop, the client gets a clear answer it retries, and since each listener counts its
own connections a flood on one leaves the others answering.

A :class:`Sweeper` per listener checks the deadlines a few times per timeout: one loop,
not a timer per request, so the hot path only stores a number. Both read the clock the
protocol class is given (tests give a fake one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

if TYPE_CHECKING:
    from host.config.connections import ConnectionSettings
    from host.config.settings import ListenerSettings
    from host.core import Host

log = logging.getLogger("smshost.server")

Clock = Callable[[], float]
WARN_EVERY = 60.0
"""Seconds between two warnings that a listener is at its connection limit."""

# What a connection waits for; a timeout's reason (metrics) is "<phase>_timeout".
_HEADER, _BODY, _BUSY, _IDLE, _DONE = "header", "body", "busy", "idle", "done"


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's protocol with the deadlines and the limit of the module text.

    Subclassed per listener by :func:`protocol_class`, which fills the class attributes.
    A subclass that answers requests itself overrides :meth:`start_request` and
    :meth:`end_request`, not the parser callbacks, so the bookkeeping stays here.
    """

    host: ClassVar[Host]
    listener: ClassVar[str]
    limits: ClassVar[ConnectionSettings]
    warned_at: ClassVar[float] = -math.inf

    phase = _HEADER
    deadline = math.inf
    first = True  # no byte of a request came yet on this connection
    stalled_since: float | None = None  # writes paused: the client does not read
    closing_since: float | None = None  # closing, waiting for the last bytes to leave

    @staticmethod
    def clock() -> float:
        """Seconds on a monotonic clock (:func:`protocol_class` sets the listener's)."""
        return time.monotonic()

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect(_HEADER, self.limits.header_timeout)
        if len(self.connections) > self.limits.limit:
            self._refuse()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.stalled_since = self.clock()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.stalled_since = None

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.first:
            self.first = False  # the first head's deadline runs from the connection's start
        elif self.phase != _HEADER:
            self._expect(_HEADER, self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._expect(_BODY, self.limits.body_timeout)
        self.start_request()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:  # answered before the body ended
            self._expect(_IDLE, self.limits.idle_timeout)
        else:
            self._expect(_BUSY, math.inf)
        self.end_request()

    def start_request(self) -> None:
        """The head is in: start the request (uvicorn's ASGI cycle)."""
        super().on_headers_complete()

    def end_request(self) -> None:
        """The body is in."""
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, with the idle deadline in place of its keep-alive timer, and
        reading resumed only once the pipelined requests ran out: uvicorn resumes it
        after every answer, so a client pipelining without reading the answers queued
        requests without bound while the answers still fitted in the socket buffers."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        if not self.pipeline:  # the last one may still wait for its body
            self.flow.resume_reading()
        if self.phase == _BUSY and self.cycle.response_complete:
            self._expect(_IDLE, self.limits.idle_timeout)

    # -- deadlines -----------------------------------------------------------------------

    def _expect(self, phase: str, timeout: float) -> None:
        self.phase = phase
        self.deadline = self.clock() + timeout

    def check(self, now: float) -> None:
        """Act on what is overdue at ``now`` (called by the :class:`Sweeper`)."""
        if self.stalled_since is not None:
            if now - self.stalled_since >= self.limits.write_timeout:
                self._cut()
        elif self.transport.is_closing():
            if self.closing_since is None:
                self.closing_since = now
            elif now - self.closing_since >= self.limits.write_timeout:
                self._cut()
        elif now >= self.deadline:
            self._expire(now)

    def _expire(self, now: float) -> None:
        phase = self.phase
        if phase in (_HEADER, _BODY) and self._held_back():
            self.deadline = now + self._timeout(phase)  # not the client's doing
            return
        self._count(f"{phase}_timeout")
        if phase == _HEADER and not self.first or phase == _BODY and not self._answered():
            seconds = self._timeout(phase)
            self._answer_and_close(408, "timeout", f"request {phase} not received within "
                                   f"{seconds:g} s")
        else:  # nothing of a request came, or its answer went already
            self.transport.close()

    def _held_back(self) -> bool:
        """Whether the server, not the client, keeps the request from arriving."""
        if self.flow.read_paused:
            return True
        cycle = self.cycle  # while a head comes in: the previous request's
        return self.phase == _HEADER and cycle is not None and not cycle.response_complete

    def _answered(self) -> bool:
        cycle = self.cycle
        return cycle is not None and (cycle.response_complete or cycle.response_started)

    def _timeout(self, phase: str) -> float:
        limits = self.limits
        return limits.header_timeout if phase == _HEADER else limits.body_timeout

    def _cut(self) -> None:
        self._count("write_timeout")
        self.phase, self.deadline = _DONE, math.inf
        self.transport.abort()

    # -- the limit -----------------------------------------------------------------------

    def _refuse(self) -> None:
        self._count("limit")
        now = self.clock()
        cls = type(self)
        if now - cls.warned_at >= WARN_EVERY:
            cls.warned_at = now
            log.warning("listener %s: %d connections open, its limit; new ones are answered "
                        "503 (server.connections.limit)", self.listener, self.limits.limit)
        self._answer_and_close(503, "busy", "too many connections; retry later")

    def _answer_and_close(self, status: int, error: str, message: str) -> None:
        self.phase, self.deadline = _DONE, math.inf
        body = json.dumps({"error": error, "message": message}).encode()
        out = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            out += (name, b": ", value, b"\r\n")
        out += (b"content-type: application/json\r\ncontent-length: ",
                str(len(body)).encode("ascii"), b"\r\nconnection: close\r\n\r\n", body)
        self.transport.write(b"".join(out))
        self.transport.close()

    def _count(self, reason: str) -> None:
        self.host.metrics.connection_closed(self.listener, reason)


def protocol_class(host: Host, listener: ListenerSettings, clock: Clock,
                   base: type[GuardedProtocol] = GuardedProtocol,
                   **attributes: Any) -> type[GuardedProtocol]:
    """``base`` for ``listener``: its limits (the server's, with the listener's own)."""
    limits = host.settings.server.connections.with_overrides(listener.connections)
    return type(f"{base.__name__}_{listener.name}", (base,), {
        "host": host, "listener": listener.name, "limits": limits,
        "clock": staticmethod(clock),
        **attributes})


class Sweeper:
    """Checks the deadlines of one listener's connections, a few times per timeout."""

    def __init__(self, connections: set[Any], protocol: type[GuardedProtocol]) -> None:
        self.connections = connections
        self.protocol = protocol
        limits = protocol.limits
        shortest = min(limits.header_timeout, limits.body_timeout, limits.idle_timeout,
                       limits.write_timeout)
        self.interval = min(max(shortest / 4, 0.01), 1.0)

    def sweep(self) -> None:
        now = self.protocol.clock()
        for connection in list(self.connections):
            if isinstance(connection, GuardedProtocol):
                connection.check(now)
        self.protocol.host.metrics.connections_open(self.protocol.listener,
                                                    len(self.connections))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sweep()
            # One bad round must not end the timeouts for good; logged (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("listener %s: checking connection deadlines failed",
                              self.protocol.listener)
