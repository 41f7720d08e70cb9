"""Error answers of the API listener's app: JSON for the API, HTML pages elsewhere.

A request under ``/api``, or one a ``webhook`` or ``ops`` route matches (a program
calls those), is answered ``{"error": code, "message": text}``; any other path of the
API listener gets an HTML error page (host.web.ui), and every path of the other
listeners (broker ports: /health and the webhooks) JSON, as before. An unexpected
exception is logged with its request id and answered 500 without details. The database
refusing the work (a full disk, a read-only file, an I/O error: ``StoreError``, or a
``sqlite3`` error that ``host.writepath.refusal`` recognises) is answered 503
``unavailable`` with the reason, for every route, plugins' included, and logged in one
line.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from host.errors import ApiError, StoreError
from host.text import clean
from host.web.routes import is_api_path
from host.writepath import retry_later, unavailable

if TYPE_CHECKING:
    from host.outage import Refusals

log = logging.getLogger("smshost.web")
CLIENT_GONE = 499
#: ``(status, message, headers) -> an HTML answer``: the UI's error pages.
Pages = Callable[[int, str, Mapping[str, str] | None], Response]


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error answer ``{"error": code, "message": message}``: every error the
    API answers is built here. The message may quote what the client sent (a field name
    from a JSON pointer, a parameter), so host/text.py's rule applies to it: a lone
    surrogate would make the answer unencodable (a 500 in place of the 400)."""
    return JSONResponse({"error": code, "message": clean(message)}, status_code=status,
                        headers=headers)


class ErrorAnswers:
    """Picks the form of an error answer by who asked (see the module text).

    ``json_routes``: the routes answered in JSON outside /api (webhook, ops);
    ``broker_paths``: the broker webhooks of the listener (their own answers, but a body
    over the limit is refused before them, in JSON); ``pages``: the HTML error pages,
    None on a listener that answers JSON everywhere; ``refusals``: where the requests
    the database refused are logged, a line per spell.
    """

    def __init__(self, json_routes: Sequence[BaseRoute], broker_paths: Collection[str],
                 pages: Pages | None, refusals: Refusals) -> None:
        self.json_routes = json_routes
        self.broker_paths = broker_paths
        self.pages = pages
        self.refusals = refusals

    def wants_json(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if self.pages is None or is_api_path(path) or path in self.broker_paths:
            return True
        return any(route.matches(scope)[0] is not Match.NONE for route in self.json_routes)

    def answer(self, scope: Scope, status: int, code: str, message: str,
               headers: Mapping[str, str] | None = None) -> Response:
        if self.pages is None or self.wants_json(scope):
            return error_response(status, code, message, headers)
        return self.pages(status, message, headers)

    def handlers(self) -> dict[type[Exception] | int, Callable[..., object]]:
        """The app's exception handlers."""
        return {ApiError: self._api_error, HTTPException: self._http_error,
                StoreError: self._store_refused, sqlite3.Error: self._store_refused,
                ClientDisconnect: _client_gone, Exception: self._unexpected}

    async def _api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return self.answer(request.scope, exc.status, exc.code, exc.message, exc.headers)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error")
        return self.answer(request.scope, exc.status_code, code, str(exc.detail),
                           exc.headers)

    async def _store_refused(self, request: Request, exc: Exception) -> Response:
        message = refusal_message(self.refusals, exc, request.method, request.url.path)
        if message is None:
            return await self._unexpected(request, exc)
        return self.answer(request.scope, 503, "unavailable", message, retry_later())

    async def _unexpected(self, request: Request, exc: Exception) -> Response:
        log_unexpected(exc, request.method, request.url.path)
        return self.answer(request.scope, 500, "internal", INTERNAL)


INTERNAL = "internal error; see the server log"
"""The message of every unexpected 500 of the app (its details go to the log)."""


def refusal_message(refusals: Refusals, exc: Exception, method: str,
                    path: str) -> str | None:
    """The message of the 503 to a ``method path`` request the database refused with
    ``exc`` (a ``StoreError``, or an ``sqlite3`` error ``host.writepath`` recognises),
    logged a line per spell; None when ``exc`` is no refusal (then a bug: a 500)."""
    refused = unavailable(exc, "the database refused the request")
    if refused is None and not isinstance(exc, StoreError):
        return None
    refusals.refused("API requests", refused or exc, f"{method} {path}", log)
    return f"{refused or exc}; try again later"


def log_unexpected(exc: BaseException, method: str, path: str) -> None:
    log.error("unhandled error on %s %s", method, path, exc_info=exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client left before its body ended (hung up, or cut by a timeout of
    host.web.connections): nobody reads this answer; counted as 499, as nginx does."""
    return Response(status_code=CLIENT_GONE)
