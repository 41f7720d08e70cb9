"""Bearer authentication of the API (P7): what a request to ``/api`` proves.

:class:`ApiAuth` checks ``Authorization: Bearer <api token>`` once per request. A path
under ``/api`` without the right token is refused 401 here, before routing, whether a
route matches or not (nothing under /api is open). What the request proved is put in
the scope (``GRANTED``), where each :class:`~host.web.routes.ApiRoute` checks the
``auth`` it declares.

Two kinds of token are taken: the configured ``api.token`` (or the generated one), an
admin token (``{"via": "config", "scopes": ["send", "read", "admin"]}``), compared
first and without any lookup; and a live API token of host.tokens (``{"via": "token",
"token": id, "scopes": [...], "user": login, "integration": name}``), checked from
its in-memory cache (no database write per request). Every valid token may call every
route today; scopes are enforced per route later (issue 13 point 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from host.config.secrets import Secret
from host.web.routes import GRANTED, is_api_path

#: What the configured (or generated) api.token proves: everything.
CONFIG_GRANT: dict[str, Any] = {"via": "config", "token": None, "scopes": ["send", "read", "admin"],
                "user": None, "integration": None}


def unauthorized(reason: str) -> JSONResponse:
    return JSONResponse(
        {"error": "unauthorized", "message": f"{reason}; send Authorization: Bearer <token>"},
        status_code=401, headers={"WWW-Authenticate": 'Bearer realm="smshost"'})


class ApiAuth:
    """Every path under ``/api`` needs the API token (``token``: read per request, as
    the host generates it on start when none is configured) or a live API token
    (``check``: host.tokens' check, None when the token is not one)."""

    def __init__(self, app: ASGIApp, token: Callable[[], Secret | None],
                 check: Callable[[str], dict[str, Any] | None] = lambda _: None) -> None:
        self.app = app
        self.token = token
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        granted = self.granted(credentials.strip()) if scheme.lower() == "bearer" else None
        if granted is not None:
            scope[GRANTED] = granted
            await self.app(scope, receive, send)
            return
        reason = "missing bearer token" if not header else "invalid bearer token"
        await unauthorized(reason)(scope, receive, send)

    def granted(self, credentials: str) -> dict[str, Any] | None:
        if not credentials:
            return None
        token = self.token()
        if token is not None and token.matches(credentials):
            return {**CONFIG_GRANT, "scopes": list(CONFIG_GRANT["scopes"])}
        return self.check(credentials)
