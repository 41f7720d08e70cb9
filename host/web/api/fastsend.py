"""``POST /api/messages`` answered straight from the HTTP parser (host.web.fastpath).

The send API is the MT hot path: each message accepted is one request. On the ASGI path
it crosses the request context, the session and auth layers, Starlette's routing and its
exception layers before :func:`host.web.api.send.send_message` runs. Here the same
steps run in the same order, each through the function the ASGI path calls:

1. the body limit by the declared length (host.web.fastcall: 413);
2. the bearer token (:func:`host.web.api.auth.bearer_grant`: 401 as ``ApiAuth``);
3. the route's right, from its own declaration in host.web.api
   (:meth:`host.web.routes.ApiRoute.refusal`: 403);
4. the body parsed, checked and submitted (:func:`host.web.api.send.accept`: the same
   parsing, schema, rights of SPEC U3, idempotency and single write);
5. its errors answered as the app's handlers answer them (host.web.errors): ApiError
   with its status, a database refusal 503 with ``Retry-After``, a bug 500.

Steps 2 and 3 need only the head, so, as on the ASGI path, a request they refuse is
answered before its body is read and without ``100 Continue``.

The route takes only what it reproduces exactly; the ASGI path gets the rest, decided
from the head: a request with a ``Cookie`` (a browser session, with its CSRF check and
cookie refresh), a query string, a body without a ``Content-Length`` (chunked), any
other path or method, and every listener without ``api = true``.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from host.errors import ApiError, StoreError
from host.web.api import routes as api_routes
from host.web.api.auth import bearer_grant, bearer_refused
from host.web.api.send import accept
from host.web.errors import INTERNAL, error_response, log_unexpected, refusal_message
from host.web.fastcall import FastCall
from host.web.routes import ApiRoute
from host.writepath import retry_later

if TYPE_CHECKING:
    from host.web.context import WebHost
    from host.web.fastpath import FastProtocol, FastRoute

log = logging.getLogger("smshost.web")
PATH = "/api/messages"
METHOD = "POST"


def declared() -> ApiRoute:
    """The route's declaration in host.web.api (the right it needs)."""
    for route in api_routes():
        if route.path == PATH and METHOD in (getattr(route.route, "methods", None) or ()):
            return route
    raise LookupError(f"{METHOD} {PATH} is not declared in host.web.api")


def send_route(host: WebHost) -> FastRoute:
    """The fast route of ``POST /api/messages`` (see the module text)."""
    route_of = declared()

    def route(protocol: FastProtocol, method: str, path: str, query: bytes,
              keep_alive: bool) -> FastCall | None:
        if path != PATH or method != METHOD or query or not _plain(protocol.headers):
            return None
        return SendCall(protocol, host, route_of, keep_alive)

    return route


def _plain(headers: list[tuple[bytes, bytes]]) -> bool:
    """A head the fast route reproduces: a declared length, no cookie, no chunks."""
    length = False
    for name, _ in headers:
        if name == b"content-length":
            length = True
        elif name in (b"cookie", b"transfer-encoding"):
            return False
    return length


def _first(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header ``name``, as Starlette's ``Headers.get`` reads it."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class SendCall(FastCall):
    """One ``POST /api/messages`` (see the module text)."""

    route = "send_message"

    def __init__(self, protocol: FastProtocol, host: WebHost, route_of: ApiRoute,
                 keep_alive: bool) -> None:
        super().__init__(protocol, METHOD, PATH, b"", keep_alive)
        self.host = host
        self.route_of = route_of
        self.granted: dict[str, Any] = {}

    def early(self) -> Response | None:
        header = _first(self.raw_headers, b"authorization") or ""
        granted = bearer_grant(header, self.host.api_token, self.host.tokens.check)
        if granted is None:
            self.route = "unmatched"  # refused before routing, as by ApiAuth
            return bearer_refused(header)
        self.granted = granted
        return self.route_of.refusal(granted, METHOD)

    async def answer(self, body: bytes) -> Response:
        key = _first(self.raw_headers, b"idempotency-key")
        try:
            return await accept(self.host, self.granted, body, key)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        except (StoreError, sqlite3.Error) as exc:
            message = refusal_message(self.host.refusals, exc, METHOD, PATH)
            if message is None:  # not a refusal: a bug, answered by the same handler
                log_unexpected(exc, METHOD, PATH)
                return error_response(500, "internal", INTERNAL)
            return error_response(503, "unavailable", message, retry_later())

    def unexpected(self, exc: Exception) -> Response:
        """500 and close, as the ASGI path does after its server error handler."""
        log_unexpected(exc, METHOD, PATH)
        self.keep_alive = False
        return error_response(500, "internal", INTERNAL)

    def unanswered(self, exc: BaseException) -> None:
        log.error("%s %s not answered", METHOD, PATH, exc_info=exc)
