"""Requests answered straight from the HTTP parser: broker webhooks and the send API.

uvicorn turns every request into an ASGI cycle: a scope dict, an ``asyncio.Event``, a
task, and ``receive``/``send`` messages through each middleware. For a broker webhook
that costs about as much as verifying, parsing and storing the message
(docs/benchmarks.md: ~47 us per request through uvicorn and Starlette on this machine,
~5 us parsing with httptools and answering straight from the protocol); for the send
API, as much again for its middleware (sessions, auth, routing, exception handlers).

:class:`FastProtocol` is uvicorn's httptools protocol with one change: a request one
of the listener's fast routes takes is answered by a :class:`~host.web.fastcall.FastCall`
in place of the ASGI cycle. The routes, tried in order (:func:`protocol_for`):

- the broker paths of the listener's port, by a method the broker's definition
  accepts (``server.webhook_fast_path``): a :class:`WebhookCall`, which runs the same
  webhook code (:func:`host.brokers.webhooks.respond`) as the ASGI path;
- ``POST /api/messages`` on the API listener (``server.api_fast_path``), by a bearer
  token, without a cookie: host.web.api.fastsend.

Each route decides from the head alone, before any body is read; every other request
(the rest of the API, /health, upgrades, other methods, percent-encoded paths) goes to
uvicorn unchanged, on the same connection. A call keeps the request id, body limit
(413), metrics and access log of the ASGI path (host.web.middleware.RequestContext)
and takes the cycle's place in uvicorn's own bookkeeping, so keep-alive, pipelined
requests (answered in order), ``Expect: 100-continue``, HTTPS and graceful shutdown
behave as for any request.

That bookkeeping is uvicorn's internals: tests/test_fastpath.py and
tests/test_fastpath_send.py pin the behaviour through real sockets, and the two
settings turn each route off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import httptools
from starlette.responses import Response

from host.brokers.webhooks import (Endpoint, WebhookHost, log_failure, respond,
                                   unexpected)
from host.web.connections import Clock, GuardedProtocol, protocol_class
from host.web.fastcall import FastCall

if TYPE_CHECKING:
    from host.config.settings import ListenerSettings
    from host.web.context import WebHost

#: ``route(protocol, method, path, query, keep_alive)``: the call answering a request
#: (from its head: ``protocol.headers``, ``protocol.parser``), or None when the route
#: does not take it.
FastRoute = Callable[["FastProtocol", str, str, bytes, bool], FastCall | None]


class FastProtocol(GuardedProtocol):
    """uvicorn's protocol, answering its fast routes itself (see the module text), with
    the timeouts and connection limit of every listener (:class:`GuardedProtocol`).

    Subclassed per listener by :func:`protocol_for`, which fills the class attributes.
    """

    host: ClassVar[WebHost]
    routes: ClassVar[tuple[FastRoute, ...]]
    limit: ClassVar[int]  # api.max_body_bytes

    def start_request(self) -> None:
        if self.transport.is_closing():
            # Answered and closed (a 413) while more requests sat in the same read: they
            # are not run, as uvicorn does not run them either.
            self.cycle = FastCall.dropped(self)  # type: ignore[assignment]
            return
        call = self._fast_call()
        if call is None:
            super().start_request()
            return
        previous = self.cycle
        self.cycle = call  # type: ignore[assignment]
        if previous is None or previous.response_complete:
            self.active = call
            call.start()
        else:  # pipelined behind an unanswered request: uvicorn starts it in turn
            self.flow.pause_reading()
            self.pipeline.appendleft((call, self.app))  # type: ignore[arg-type]

    def _fast_call(self) -> FastCall | None:
        parser = self.parser
        if parser.should_upgrade():
            return None
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path
        if b"%" in raw_path or not raw_path.isascii():
            return None
        path = raw_path.decode("ascii")
        method = parser.get_method().decode("ascii")
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        query = url.query or b""
        for route in self.routes:
            call = route(self, method, path, query, keep_alive)
            if call is not None:
                return call
        return None

    def take_body(self, body: bytes) -> None:
        call = self.cycle
        if isinstance(call, FastCall):
            call.feed(body)
        else:
            super().take_body(body)

    def end_request(self) -> None:
        call = self.cycle
        if isinstance(call, FastCall):
            call.complete()
        else:
            super().end_request()


class WebhookCall(FastCall):
    """One broker webhook: :func:`host.brokers.webhooks.respond`, as on the ASGI path."""

    route = oversize_route = "broker_webhook"

    def __init__(self, protocol: FastProtocol, endpoint: Endpoint, method: str, path: str,
                 query: bytes, keep_alive: bool) -> None:
        super().__init__(protocol, method, path, query, keep_alive)
        self.endpoint = endpoint

    async def answer(self, body: bytes) -> Response:
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in self.raw_headers}
        return await respond(self.protocol.host, self.endpoint, self.scope, headers, body)

    def unexpected(self, exc: Exception) -> Response:
        return unexpected(self.endpoint, exc)  # a 500 the broker retries

    def unanswered(self, exc: BaseException) -> None:
        name = self.endpoint.instance.name
        log_failure(f"broker {name}: webhook not answered", exc, name, "answer")


def webhook_route(host: WebhookHost, port: int) -> FastRoute:
    """The broker paths of ``port`` (kept current by a live change), by the methods
    their definitions accept."""
    paths = host.webhook_paths

    def route(protocol: FastProtocol, method: str, path: str, query: bytes,
              keep_alive: bool) -> FastCall | None:
        found = paths.with_methods(port).get(path)
        if found is None or method not in found[1]:
            return None
        return WebhookCall(protocol, found[0], method, path, query, keep_alive)

    return route


def protocol_for(host: WebHost, listener: ListenerSettings, clock: Clock,
                 routes: tuple[FastRoute, ...]) -> type[GuardedProtocol]:
    """The protocol class for ``listener``, answering ``routes`` itself."""
    return protocol_class(host, listener, clock, FastProtocol, routes=routes,
                          limit=host.settings.api.max_body_bytes)
