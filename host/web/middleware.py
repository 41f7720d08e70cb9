"""Pure ASGI middleware: request id, body limit, access log and metrics (the bearer
auth of /api is host.web.api.auth)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from host.logs import request_id
from host.models import bounded_int, is_decimal

if TYPE_CHECKING:
    from host.web.context import Served
    from host.web.errors import ErrorAnswers

access = logging.getLogger("smshost.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Request ids: a random per-process prefix and a counter. Not uuid4 per request:
# os.urandom releases the GIL, and taking it back behind the store's writer thread
# cost ~100 us per request under load (measured; see docs/benchmarks.md).
_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):08x}"


def request_id_for(incoming: str) -> str:
    """The caller's ``X-Request-Id`` when it is a sensible id, else a new one."""
    return incoming if incoming and _VALID_ID.match(incoming) else new_request_id()


def record_request(host: Served, listener: str, method: str, path: str, route: str,
                   status: int, elapsed: float) -> None:
    """Count and time one answered request; log it when the access log is on."""
    host.metrics.observe_request(listener, method, route, status, elapsed)
    if host.settings.logging.access_log:
        access.info("%s %s %d %.1fms", method, path, status, elapsed * 1000,
                    extra={"status": status, "path": path, "method": method,
                           "duration_ms": round(elapsed * 1000, 2)})


class RequestContext:
    """Give each request an id (``X-Request-Id`` in and out), refuse bodies over the
    limit with 413 (P7), time it, count it, log it.

    One middleware for all of this, reading the raw headers once: it wraps every
    request, broker webhooks included, which are the hot path.
    """

    def __init__(self, app: ASGIApp, host: Served, listener: str, limit: int,
                 answers: ErrorAnswers | None = None) -> None:
        self.app = app
        self.answers = answers
        self.host = host
        self.listener = listener
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = declared = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"content-length":
                declared = value.decode("latin-1")
        rid = request_id_for(incoming)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        started_response = False
        seen = 0
        limit = self.limit

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        try:
            if is_decimal(declared) and bounded_int(declared, limit) is None:
                await self._too_large(scope, receive, send_with_id)
            else:
                try:
                    await self.app(scope, counted_receive, send_with_id)
                except _TooLarge:
                    if started_response:
                        raise
                    await self._too_large(scope, receive, send_with_id)
        finally:
            self._done(scope, status, time.perf_counter() - started)
            request_id.reset(token)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message, headers = f"request body over {self.limit} bytes", {"Connection": "close"}
        response = JSONResponse({"error": "too_large", "message": message},
                                status_code=413, headers=headers) if self.answers is None \
            else self.answers.answer(scope, 413, "too_large", message, headers)
        await response(scope, receive, send)

    def _done(self, scope: Scope, status: int, elapsed: float) -> None:
        endpoint = scope.get("endpoint")
        route = getattr(endpoint, "__name__", None) or "unmatched"
        record_request(self.host, self.listener, scope["method"], scope["path"], route,
                       status, elapsed)


class _TooLarge(HTTPException):
    """Raised by ``receive`` past the limit; Starlette's handlers answer it 413 too."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")
