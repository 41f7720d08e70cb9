"""Broker webhooks answered straight from the HTTP parser: the MO hot path.

uvicorn turns every request into an ASGI cycle: a scope dict, an ``asyncio.Event``, a
task, and ``receive``/``send`` messages through each middleware. For a broker webhook
that costs about as much as verifying, parsing and storing the message
(docs/benchmarks.md: ~47 us per request through uvicorn and Starlette on this machine,
~5 us parsing with httptools and answering straight from the protocol).

:class:`WebhookProtocol` is uvicorn's httptools protocol with one change: a request for
one of the listener's broker paths, by a method the broker's definition accepts, is
answered by a :class:`WebhookCall` in place of the ASGI cycle. It runs the same webhook
code (:func:`host.brokers.webhooks.respond`) with the same request id, body limit (413),
metrics and access log as the ASGI path (:class:`host.web.middleware.RequestContext`).
Every other request (the API, /health, upgrades, other methods, percent-encoded paths)
goes to uvicorn unchanged, on the same connection. The call takes the cycle's place in
uvicorn's own bookkeeping (``cycle``, ``pipeline``, ``tasks``, ``on_response_complete``),
so keep-alive, pipelined requests (answered in order), ``Expect: 100-continue``, HTTPS
and graceful shutdown behave as for any request.

That bookkeeping is uvicorn's internals: tests/test_fastpath.py pins the behaviour
through real sockets, and ``server.webhook_fast_path = false`` turns this off.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

import httptools
from starlette.responses import JSONResponse, Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from host.brokers.webhooks import (Endpoint, WebhookHost, log_failure, respond,
                                   unexpected)
from host.logs import request_id
from host.models import MAX_ID, bounded_int, is_decimal
from host.web.connections import Clock, GuardedProtocol, protocol_class
from host.web.middleware import record_request, request_id_for

if TYPE_CHECKING:
    from host.brokers.paths import WebhookPaths
    from host.config.settings import ListenerSettings


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class WebhookProtocol(GuardedProtocol):
    """uvicorn's protocol, answering broker webhooks itself (see the module text), with
    the timeouts and connection limit of every listener (:class:`GuardedProtocol`).

    Subclassed per listener by :func:`protocol_for`, which fills the class attributes.
    """

    host: ClassVar[WebhookHost]  # the broker webhooks store with it
    paths: ClassVar[WebhookPaths]  # the broker paths, kept current by a live change
    webhook_port: ClassVar[int]
    limit: ClassVar[int]

    def start_request(self) -> None:
        if self.transport.is_closing():
            # Answered and closed (a 413) while more requests sat in the same read: they
            # are not run, as uvicorn does not run them either.
            self.cycle = WebhookCall.dropped(self)  # type: ignore[assignment]
            return
        call = self._webhook_call()
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

    def _webhook_call(self) -> WebhookCall | None:
        parser = self.parser
        if parser.should_upgrade():
            return None
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path
        if b"%" in raw_path or not raw_path.isascii():
            return None
        path = raw_path.decode("ascii")
        found = self.paths.with_methods(self.webhook_port).get(path)
        if found is None:
            return None
        endpoint, methods = found
        method = parser.get_method().decode("ascii")
        if method not in methods:
            return None
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return WebhookCall(self, endpoint, method, path, url.query or b"", keep_alive)

    def take_body(self, body: bytes) -> None:
        call = self.cycle
        if isinstance(call, WebhookCall):
            call.feed(body)
        else:
            super().take_body(body)

    def end_request(self) -> None:
        call = self.cycle
        if isinstance(call, WebhookCall):
            call.complete()
        else:
            super().end_request()


class WebhookCall:
    """One broker webhook, in the place of uvicorn's ``RequestResponseCycle``.

    Carries the attributes the protocol reads and sets on a cycle (``body``,
    ``more_body``, ``keep_alive``, ``disconnected``, ``response_started``,
    ``response_complete``, ``message_event``) and ``run_asgi`` for a start from
    uvicorn's pipeline.
    """

    def __init__(self, protocol: WebhookProtocol, endpoint: Endpoint | None, method: str,
                 path: str, query: bytes, keep_alive: bool) -> None:
        self.protocol = protocol
        self.endpoint = endpoint
        self.scope: dict[str, Any] = {
            "method": method, "path": path, "query_string": query,
            "root_path": protocol.root_path, "scheme": protocol.scheme,
            "server": protocol.server, "client": protocol.client}
        self.raw_headers: list[tuple[bytes, bytes]] = protocol.headers
        self.expect_100 = protocol.expect_100_continue
        self.keep_alive = keep_alive
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = _declared_length(self.raw_headers) > protocol.limit
        self.more_body = True
        self.started = False
        self.running = False
        self.disconnected = False
        self.response_started = False  # the answer is written whole: started is complete
        self.response_complete = False
        self.message_event = self  # connection_lost calls message_event.set()
        self.began = time.perf_counter()

    @classmethod
    def dropped(cls, protocol: WebhookProtocol) -> WebhookCall:
        """A request that is not run: its body is ignored, nothing is answered."""
        call = cls(protocol, None, "", "", b"", False)
        call.response_started = call.response_complete = True
        return call

    def set(self) -> None:
        """The connection is gone: a call already running still stores and settles."""

    async def run_asgi(self, app: Any) -> None:
        """Started from uvicorn's pipeline, in turn."""
        self.start()

    def start(self) -> None:
        self.started = True
        transport = self.protocol.transport
        if self.too_large:
            self._too_large()
            return
        if self.expect_100 and self.more_body and not transport.is_closing():
            transport.write(_CONTINUE)
        if not self.more_body:
            self._run()

    def feed(self, body: bytes) -> None:
        if self.too_large or self.response_complete:
            return
        self.size += len(body)
        if self.size > self.protocol.limit:
            self.too_large = True
            self.chunks.clear()
            if self.started:
                self._too_large()
            return
        self.chunks.append(body)

    def complete(self) -> None:
        self.more_body = False
        if self.started and not self.too_large:
            self._run()

    def _run(self) -> None:
        if self.running:
            return
        self.running = True
        protocol = self.protocol
        task = protocol.loop.create_task(self._answer())
        protocol.tasks.add(task)
        task.add_done_callback(protocol.tasks.discard)

    async def _answer(self) -> None:
        protocol, endpoint = self.protocol, self.endpoint
        assert endpoint is not None  # only a dropped call has none, and it never runs
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in self.raw_headers}
        rid = request_id_for(headers.get("x-request-id", ""))
        request_id.set(rid)  # this task's own context
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        try:
            try:
                response = await respond(protocol.host, endpoint, self.scope, headers, body)
            # A bug must not leave the broker unanswered; it retries the 500 (BLE001).
            except Exception as exc:  # noqa: BLE001
                response = unexpected(endpoint, exc)
            if protocol.flow.write_paused and not self.disconnected:
                await protocol.flow.drain()  # a client that does not read: wait, as uvicorn
            self._write(response, rid)
        # Cancelled (shutdown past its grace time) or a failure while answering: the
        # connection must not stay open unanswered. As uvicorn's own cycle does.
        except BaseException as exc:  # noqa: BLE001
            name = endpoint.instance.name
            log_failure(f"broker {name}: webhook not answered", exc, name, "answer")
            self._abort()

    def _too_large(self) -> None:
        response = JSONResponse(
            {"error": "too_large",
             "message": f"request body over {self.protocol.limit} bytes"}, status_code=413)
        self.keep_alive = False  # the rest of the body is still on its way
        self._write(response, request_id_for(_header(self.raw_headers, b"x-request-id")))

    def _write(self, response: Response, rid: str) -> None:
        protocol = self.protocol
        transport = protocol.transport
        status = response.status_code
        if not self.disconnected and not transport.is_closing():
            out = [STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status]
            for name, value in protocol.server_state.default_headers:
                out += (name, b": ", value, b"\r\n")
            for name, value in response.raw_headers:
                out += (name, b": ", value, b"\r\n")
            out += (b"x-request-id: ", rid.encode("ascii"), b"\r\n")
            if not self.keep_alive:
                out.append(b"connection: close\r\n")
            out += (b"\r\n", bytes(response.body))
            transport.write(b"".join(out))
        self.response_started = self.response_complete = True
        if not self.keep_alive:
            transport.close()
        try:
            record_request(protocol.host, protocol.listener, self.scope["method"],
                           self.scope["path"], "broker_webhook", status,
                           time.perf_counter() - self.began)
        finally:
            protocol.on_response_complete()

    def _abort(self) -> None:
        """Answer 500 and close when nothing was sent yet; close in any case."""
        transport = self.protocol.transport
        if not self.response_complete and not transport.is_closing():
            transport.write(b"HTTP/1.1 500 Internal Server Error\r\n"
                            b"content-type: text/plain; charset=utf-8\r\n"
                            b"content-length: 21\r\nconnection: close\r\n\r\n"
                            b"Internal Server Error")
        self.response_started = self.response_complete = True
        transport.close()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    """The last value of header ``name`` (as a dict of the headers keeps it)."""
    found = ""
    for key, value in headers:
        if key == name:
            found = value.decode("latin-1")
    return found


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    declared = _header(headers, b"content-length")
    if not is_decimal(declared):
        return 0
    length = bounded_int(declared)
    return MAX_ID if length is None else length  # longer than any limit


def protocol_for(host: WebhookHost, listener: ListenerSettings,
                 clock: Clock) -> type[GuardedProtocol]:
    """The protocol class for ``listener``: its broker paths and their methods."""
    return protocol_class(host, listener, clock, WebhookProtocol, paths=host.webhook_paths,
                          webhook_port=listener.port,
                          limit=host.settings.api.max_body_bytes)
