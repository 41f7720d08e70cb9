"""Build the Starlette app of one listener.

Every listener serves ``/health`` (and, with the brokers issue, the broker webhooks of
its port). The API listener also serves ``/api/...`` behind the bearer token,
``/metrics``, and the routes plugins register. Errors always come back as JSON
``{"error": code, "message": text}``; an unexpected exception is logged with its
request id and answered 500 without details. The database refusing the work (a full
disk, a read-only file, an I/O error: ``StoreError``, or a ``sqlite3`` error that
``host.writepath.refusal`` recognises) is answered 503 ``unavailable`` with the reason,
here for every route, plugins' included, and logged in one line.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from host.brokers import webhooks
from host.config.settings import ListenerSettings
from host.core import Host
from host.errors import ApiError, StoreError
from host.metrics import CONTENT_TYPE
from host.text import clean
from host.web import api, routing, send
from host.web.health import health
from host.web.middleware import ApiAuth, RequestContext
from host.writepath import retry_later, unavailable

log = logging.getLogger("smshost.web")
CLIENT_GONE = 499


async def metrics(request: Request) -> Response:
    host: Host = request.app.state.host
    await host.metrics.refresh(host.store)
    return Response(host.metrics.render(), media_type=CONTENT_TYPE)


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error answer ``{"error": code, "message": message}``: every error the
    API answers is built here. The message may quote what the client sent (a field name
    from a JSON pointer, a parameter), so host/text.py's rule applies to it: a lone
    surrogate would make the answer unencodable (a 500 in place of the 400)."""
    return JSONResponse({"error": code, "message": clean(message)}, status_code=status,
                        headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def _store_refused(request: Request, exc: Exception) -> Response:
    refused = unavailable(exc, "the database refused the request")
    if refused is None and not isinstance(exc, StoreError):
        return await _unexpected(request, exc)
    reason = str(refused or exc)
    host: Host = request.app.state.host
    host.refusals.refused("API requests", refused or exc,
                          f"{request.method} {request.url.path}", log)
    return error_response(503, "unavailable", f"{reason}; try again later", retry_later())


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client left before its body ended (hung up, or cut by a timeout of
    host.web.connections): nobody reads this answer; counted as 499, as nginx does."""
    return Response(status_code=CLIENT_GONE)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; see the server log")


def build_app(host: Host, listener: ListenerSettings) -> ASGIApp:
    host.load_plugins()
    routes: list[BaseRoute] = [Route("/health", health, methods=["GET"])]
    if listener.api:
        routes += [Route("/metrics", metrics, methods=["GET"]), *api.routes(),
                   *routing.routes(), *send.routes()]
        routes += host.hooks.register_routes(host)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with host.running():
            yield

    middleware = [Middleware(ApiAuth, host=host)] if listener.api else []
    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error,
                            StoreError: _store_refused, sqlite3.Error: _store_refused,
                            ClientDisconnect: _client_gone, Exception: _unexpected},
    )
    app.state.host = host
    app.state.listener = listener
    # Outside Starlette: the request context, then broker webhooks (the hot path,
    # answered without Starlette's routing and exception layers), then everything else.
    dispatch = webhooks.BrokerDispatch(app, host=host, port=listener.port)
    return RequestContext(dispatch, host=host, listener=listener.name,
                          limit=host.settings.api.max_body_bytes)
