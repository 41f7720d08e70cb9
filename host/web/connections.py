"""Limits at the edge (SPEC P12): timeouts and a connection limit on every listener.

:class:`GuardedProtocol` is uvicorn's httptools protocol with one deadline per
connection. Every listener uses it, through the ASGI cycle or the webhook fast path
(:class:`~host.web.fastpath.FastProtocol` is a subclass). The deadline follows what
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

A request's head is bounded too (``max_head_bytes``, ``max_header_lines``): httptools
keeps a header's name and value whole until the line ends, so without a bound one
endless header line held the client's bytes until the header timeout. Past the bound
the head is answered 414 (its URL alone is longer) or 431, in turn after the answers
to the requests before it, and the connection closes; nothing more is read. A read
longer than the bound is parsed in slices of that size, so a head is cut at most a
slice late: what a connection holds for its head stays under three times the bound.

uvicorn marks only the last request it read as disconnected when the connection is
lost; the one being answered may be an earlier one (pipelining), and woken from its
wait on a full socket it wrote to the closed transport (uvloop raises). Here every
request not yet answered is marked.

Beyond ``limit`` open connections on a listener, a new one is answered 503 (with
``Retry-After``, as every 503) and closed at once rather than left unread: its
descriptor is free again within a turn of the loop, the client gets a clear answer it
retries, and since each listener counts its own connections a flood on one leaves the
others answering.

A :class:`~host.web.sweeper.Sweeper` per listener checks the deadlines a few times per
timeout: one loop, not a timer per request, so the hot path only stores a number. Both
read the clock the protocol class is given (tests give a fake one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from host.web.answers import Refusal, error_answer
from host.writepath import retry_later

if TYPE_CHECKING:
    from host.config.connections import ConnectionSettings
    from host.config.settings import ListenerSettings
    from host.web.context import Served

log = logging.getLogger("smshost.server")

Clock = Callable[[], float]
WARN_EVERY = 60.0
"""Seconds between two warnings that a listener is at its connection limit."""

LINGER = 2.0
"""Seconds a refused connection is still read (what comes is dropped) after its answer,
so that a client still sending gets the answer rather than a reset."""

# What a connection waits for; a timeout's reason (metrics) is "<phase>_timeout".
_HEADER, _BODY, _BUSY, _IDLE, _DONE = "header", "body", "busy", "idle", "done"
_LINGER = "linger"


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's protocol with the deadlines and the limit of the module text.

    Subclassed per listener by :func:`protocol_class`, which fills the class attributes.
    A subclass that answers requests itself overrides :meth:`start_request` and
    :meth:`end_request`, not the parser callbacks, so the bookkeeping stays here.
    """

    host: ClassVar[Served]
    listener: ClassVar[str]
    limits: ClassVar[ConnectionSettings]
    warned_at: ClassVar[float] = -math.inf

    phase = _HEADER
    deadline = math.inf
    first = True  # no byte of a request came yet on this connection
    active: Any = None  # the request being answered (uvicorn's ``cycle``: the last read)
    requests = 0  # requests begun on this connection
    reading = False  # a request began and its body has not ended
    head_bytes = 0  # bytes of that request known not to be body
    header_lines = 0
    body_bytes = 0  # body bytes of the slice being parsed
    oversize: tuple[int, str] | None = None  # why a head was cut: status, what was long
    refused = False  # answered (or to be answered) with an error: nothing more is read
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
            self._over_limit()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disconnect()
        super().connection_lost(exc)

    def _disconnect(self) -> None:
        """Mark every request not answered yet as disconnected (see the module text)."""
        pending = [self.active, self.cycle, *(cycle for cycle, _ in self.pipeline)]
        for cycle in pending:
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self.active = cycle
        super()._start_asgi_task(cycle, app)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.stalled_since = self.clock()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.stalled_since = None

    # -- reading -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """uvicorn's, parsing a read longer than the head limit in slices of it."""
        if self.refused:
            return
        step = self.limits.max_head_bytes
        if len(data) <= step:
            self._parse(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), step):
            if not self._parse(view[start:start + step]):
                return

    def _parse(self, data: bytes | memoryview) -> bool:
        """Feed ``data`` to the parser; whether to go on with the rest of the read."""
        began, self.body_bytes = self.requests, 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError:
            if self.oversize is None:
                self.logger.warning("Invalid HTTP request received.")
                self._refuse(400, "bad_request", "invalid HTTP request")
            else:
                self._head_too_large()
            return False
        if self.reading and self.requests == began:  # the whole slice is this request's
            self.head_bytes += len(data) - self.body_bytes
            if self.head_bytes > self.limits.max_head_bytes:
                self.oversize = (431, "head")
                self._head_too_large()
                return False
        return not self.transport.is_closing()

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.requests += 1
        self.reading = True
        self.head_bytes = self.header_lines = 0
        if self.first:
            self.first = False  # the first head's deadline runs from the connection's start
        elif self.phase != _HEADER:
            self._expect(_HEADER, self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url), 414, "URL")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_lines += 1
        if self.header_lines > self.limits.max_header_lines:
            self.oversize = (431, "header lines")
            raise _HeadTooLarge
        self._count_head(len(name) + len(value) + 4, 431, "head")
        super().on_header(name, value)

    def _count_head(self, size: int, status: int, what: str) -> None:
        self.head_bytes += size
        if self.head_bytes > self.limits.max_head_bytes:
            self.oversize = (status, what)
            raise _HeadTooLarge  # stops the parser: feed_data raises HttpParserError

    def on_headers_complete(self) -> None:
        self._expect(_BODY, self.limits.body_timeout)
        self.start_request()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        self.take_body(body)

    def take_body(self, body: bytes) -> None:
        """A part of the body came (uvicorn's ASGI cycle)."""
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.reading = False
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
        """Act on what is overdue at ``now`` (called by the listener's sweeper)."""
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
        if phase == _LINGER:
            self.transport.close()
            return
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
        self._disconnect()  # before the transport is gone: nothing may write to it
        self.transport.abort()

    # -- refusals ------------------------------------------------------------------------

    def _head_too_large(self) -> None:
        assert self.oversize is not None
        status, what = self.oversize
        self._count("head_too_large")
        if what == "header lines":
            message = f"more than {self.limits.max_header_lines} header lines"
        else:
            message = f"request {what} over {self.limits.max_head_bytes} bytes"
        self._refuse(status, "too_large", message)

    def _refuse(self, status: int, error: str, message: str) -> None:
        """Answer ``status`` and close, after the answers to the requests before it; from
        now on nothing more is read. A request whose body was being read is not run."""
        self.refused = True
        self.flow.pause_reading()
        cycle = self.cycle
        if self.phase == _BODY and cycle is not None and not cycle.response_complete:
            # The request whose body was being read: answered in its place, unless its
            # answer began or earlier answers are still due (then only cut).
            self._disconnect()
            if cycle.response_started or self.pipeline:
                self.phase, self.deadline = _DONE, math.inf
                self.transport.close()
            else:
                self._answer_and_close(status, error, message, linger=True)
            return
        if cycle is None or cycle.response_complete:
            self._answer_and_close(status, error, message, linger=True)
            return
        self._expect(_BUSY, math.inf)
        refusal = Refusal(partial(self._answer_and_close, status, error, message,
                                  linger=True))
        self.cycle = refusal  # type: ignore[assignment]
        self.pipeline.appendleft((refusal, self.app))  # type: ignore[arg-type]

    # -- the limit -----------------------------------------------------------------------

    def _over_limit(self) -> None:
        self._count("limit")
        now = self.clock()
        cls = type(self)
        if now - cls.warned_at >= WARN_EVERY:
            cls.warned_at = now
            log.warning("listener %s: %d connections open, its limit; new ones are answered "
                        "503 (server.connections.limit)", self.listener, self.limits.limit)
        self._answer_and_close(503, "busy", "too many connections; retry later",
                               headers=retry_later())

    def _answer_and_close(self, status: int, error: str, message: str,
                          linger: bool = False, headers: dict[str, str] | None = None) -> None:
        """Answer ``status`` and close; with ``linger``, close the writing side only and
        drop what still comes for :data:`LINGER` seconds (until the client closes)."""
        self.phase, self.deadline = _DONE, math.inf
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(error_answer(status, error, message,
                                     self.server_state.default_headers, headers))
        if linger and transport.can_write_eof():
            transport.write_eof()
            self.flow.resume_reading()
            self._expect(_LINGER, LINGER)
        else:
            transport.close()

    def _count(self, reason: str) -> None:
        self.host.metrics.connection_closed(self.listener, reason)


class _HeadTooLarge(Exception):
    """Raised in a parser callback: the parser stops (see ``GuardedProtocol.oversize``)."""


def protocol_class(host: Served, listener: ListenerSettings, clock: Clock,
                   base: type[GuardedProtocol] = GuardedProtocol,
                   **attributes: Any) -> type[GuardedProtocol]:
    """``base`` for ``listener``: its limits (the server's, with the listener's own)."""
    limits = host.settings.server.connections.with_overrides(listener.connections)
    return type(f"{base.__name__}_{listener.name}", (base,), {
        "host": host, "listener": listener.name, "limits": limits,
        "clock": staticmethod(clock),
        **attributes})
