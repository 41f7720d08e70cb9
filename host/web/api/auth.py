"""Bearer authentication of the API (P7): what a request to ``/api`` proves.

:class:`ApiAuth` checks ``Authorization: Bearer <api token>`` once per request. A path
under ``/api`` without the right token is refused 401 here, before routing, whether a
route matches or not (nothing under /api is open). What the request proved is put in
the scope (``GRANTED``), where each :class:`~host.web.routes.ApiRoute` checks the
``auth`` it declares.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from host.config.secrets import Secret
from host.web.routes import GRANTED, is_api_path


def unauthorized(reason: str) -> JSONResponse:
    return JSONResponse(
        {"error": "unauthorized", "message": f"{reason}; send Authorization: Bearer <token>"},
        status_code=401, headers={"WWW-Authenticate": 'Bearer realm="smshost"'})


class ApiAuth:
    """Every path under ``/api`` needs the API token (``token``: read per request, as
    the host generates it on start when none is configured)."""

    def __init__(self, app: ASGIApp, token: Callable[[], Secret | None]) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        token = self.token()
        if scheme.lower() == "bearer" and credentials and token is not None \
                and token.matches(credentials.strip()):
            scope[GRANTED] = ("token",)
            await self.app(scope, receive, send)
            return
        reason = "missing bearer token" if not header else "invalid bearer token"
        await unauthorized(reason)(scope, receive, send)
