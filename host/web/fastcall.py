"""One request answered by the protocol itself (host.web.fastpath), in the place of
uvicorn's ``RequestResponseCycle``.

:class:`FastCall` keeps what every such request shares with the ASGI path: the request
id (``X-Request-Id`` in and out), the body limit (413 on the declared length before
anything else, or once the body grows past it), ``Expect: 100-continue`` (sent only
when the body is about to be read, as uvicorn does on the app's first ``receive``), the
metrics and access log of :func:`host.web.middleware.record_request`, and the place of
the request in uvicorn's bookkeeping (``cycle``, ``pipeline``, ``tasks``,
``on_response_complete``), so keep-alive and pipelined requests (answered in order)
behave as for any request.

A subclass is one kind of endpoint: :meth:`early` may answer from the head alone (as
the ASGI path's middleware answers a request without credentials before its body is
read), :meth:`answer` answers the whole request, :meth:`unexpected` turns a bug into
an answer. Whatever happens, the request is answered or its connection closed: it is
never left open unanswered.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from host.logs import request_id
from host.models import MAX_ID, bounded_int, is_decimal
from host.web.errors import CLIENT_GONE, error_response
from host.web.middleware import record_request, request_id_for

if TYPE_CHECKING:
    from host.web.fastpath import FastProtocol

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class FastCall:
    """One request of a fast endpoint (see the module text).

    Carries the attributes the protocol reads and sets on a cycle (``body``,
    ``more_body``, ``keep_alive``, ``disconnected``, ``response_started``,
    ``response_complete``, ``message_event``) and ``run_asgi`` for a start from
    uvicorn's pipeline.
    """

    #: The route name in metrics (what ``scope["endpoint"]`` names on the ASGI path).
    route = "unmatched"
    #: The route name of a body over the limit (refused before any route matched).
    oversize_route = "unmatched"

    def __init__(self, protocol: FastProtocol, method: str, path: str, query: bytes,
                 keep_alive: bool) -> None:
        self.protocol = protocol
        self.scope: dict[str, Any] = {
            "method": method, "path": path, "query_string": query,
            "root_path": protocol.root_path, "scheme": protocol.scheme,
            "server": protocol.server, "client": protocol.client}
        self.raw_headers: list[tuple[bytes, bytes]] = protocol.headers
        self.expect_100 = protocol.expect_100_continue
        self.keep_alive = keep_alive
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = declared_length(self.raw_headers) > protocol.limit
        self.more_body = True
        self.started = False
        self.running = False
        self.disconnected = False
        self.response_started = False  # the answer is written whole: started is complete
        self.response_complete = False
        self.message_event = self  # connection_lost calls message_event.set()
        self.began = time.perf_counter()
        self.rid = ""
        self.gone = False  # the client left while the body was being read

    @classmethod
    def dropped(cls, protocol: FastProtocol) -> FastCall:
        """A request that is not run: its body is ignored, nothing is answered."""
        call = cls(protocol, "", "", b"", False)
        call.response_started = call.response_complete = True
        return call

    # -- what a kind of endpoint does ------------------------------------------------------

    def early(self) -> Response | None:
        """The answer from the head alone, before the body is read; None: read it."""
        return None

    async def answer(self, body: bytes) -> Response:
        """The answer to the whole request."""
        raise NotImplementedError

    def unexpected(self, exc: Exception) -> Response:
        """The answer when :meth:`early` or :meth:`answer` raised ``exc`` (a bug)."""
        raise NotImplementedError

    def unanswered(self, exc: BaseException) -> None:
        """Log that the answer could not be written (``exc``); the connection closes."""

    # -- uvicorn's side ------------------------------------------------------------------

    def set(self) -> None:
        """The connection is gone. A call already running still stores and settles; one
        waiting for its body is counted as the ASGI path counts it (499)."""
        if self.started and not self.running and not self.response_complete \
                and not self.gone:
            self.gone = True  # never runs; what the protocol does next is its own
            self._record(CLIENT_GONE)

    async def run_asgi(self, app: Any) -> None:
        """Started from uvicorn's pipeline, in turn."""
        self.start()

    def start(self) -> None:
        self.started = True
        self.rid = request_id_for(header(self.raw_headers, b"x-request-id"))
        if self.too_large:
            self._too_large()
            return
        try:
            early = self.early()
        # A bug must not leave the request unanswered (BLE001).
        except Exception as exc:  # noqa: BLE001
            early = self.unexpected(exc)
        if early is not None:
            self._write(early)
            return
        transport = self.protocol.transport
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
        if self.running or self.response_complete or self.gone:
            return
        self.running = True
        protocol = self.protocol
        task = protocol.loop.create_task(self._answer())
        protocol.tasks.add(task)
        task.add_done_callback(protocol.tasks.discard)

    async def _answer(self) -> None:
        protocol = self.protocol
        request_id.set(self.rid)  # this task's own context
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        try:
            try:
                response = await self.answer(body)
            # A bug must not leave the caller unanswered (BLE001).
            except Exception as exc:  # noqa: BLE001
                response = self.unexpected(exc)
            if protocol.flow.write_paused and not self.disconnected:
                await protocol.flow.drain()  # a client that does not read: wait, as uvicorn
            self._write(response)
        # Cancelled (shutdown past its grace time) or a failure while answering: the
        # connection must not stay open unanswered. As uvicorn's own cycle does.
        except BaseException as exc:  # noqa: BLE001
            self.unanswered(exc)
            self._abort()

    def _too_large(self) -> None:
        self.route = self.oversize_route
        self.keep_alive = False  # the rest of the body is still on its way
        self._write(error_response(413, "too_large",
                                   f"request body over {self.protocol.limit} bytes"))

    def _write(self, response: Response) -> None:
        protocol = self.protocol
        transport = protocol.transport
        status = response.status_code
        if not self.disconnected and not transport.is_closing():
            out = [STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status]
            for name, value in protocol.server_state.default_headers:
                out += (name, b": ", value, b"\r\n")
            for name, value in response.raw_headers:
                out += (name, b": ", value, b"\r\n")
            out += (b"x-request-id: ", self.rid.encode("ascii"), b"\r\n")
            if not self.keep_alive:
                out.append(b"connection: close\r\n")
            out += (b"\r\n", bytes(response.body))
            transport.write(b"".join(out))
        self.response_started = self.response_complete = True
        if not self.keep_alive:
            transport.close()
        try:
            self._record(status)
        finally:
            protocol.on_response_complete()

    def _record(self, status: int) -> None:
        record_request(self.protocol.host, self.protocol.listener, self.scope["method"],
                       self.scope["path"], self.route, status,
                       time.perf_counter() - self.began)

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


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    """The last value of header ``name`` (as a dict of the headers keeps it)."""
    found = ""
    for key, value in headers:
        if key == name:
            found = value.decode("latin-1")
    return found


def declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    declared = header(headers, b"content-length")
    if not is_decimal(declared):
        return 0
    length = bounded_int(declared)
    return MAX_ID if length is None else length  # longer than any limit
