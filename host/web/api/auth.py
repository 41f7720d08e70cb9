"""Authentication of the API (P7, U2): what a request to ``/api`` proves.

:class:`ApiAuth` runs once per request, before routing, and puts what the request
proved in the scope (``GRANTED``), where each :class:`~host.web.routes.ApiRoute` checks
the right it declares (host.rights). A path under ``/api`` that proves nothing is
refused 401 here, whether a route matches or not (nothing under /api is open but the
login, ``POST /api/session``, and ``GET /api/openapi.json``, listed in ``public``).

A request proves who it is in one of two ways:

- ``Authorization: Bearer <token>``: the configured ``api.token`` (or the generated
  one), an admin token, compared first and without any lookup; or a live API token of
  host.tokens (its scopes cut to its user's roles), checked from its in-memory cache.
  A bearer request needs no CSRF token: a browser never adds that header by itself.
- The session cookie of a signed-in browser (host.sessions, read by the session layer
  of host.web.api.session before this one), when no Authorization header is sent. As a
  browser sends the cookie with any request to this site, an unsafe method (POST, PUT,
  PATCH, DELETE) must also carry the session's CSRF token in ``X-CSRF-Token``, or is
  refused 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from host.config.secrets import Secret
from host.rights import RIGHTS
from host.sessions import CSRF_KEY, Sessions
from host.web.routes import GRANTED, is_api_path
from host.web.ui.sessions import CSRF_HEADER, SAFE_METHODS

#: What the configured (or generated) api.token proves: everything.
CONFIG_GRANT: dict[str, Any] = {"via": "config", "token": None, "scopes": ["admin"],
                                "rights": list(RIGHTS), "classifications": None,
                                "user": None, "integration": None}
#: Where the API's session layer keeps the signed-in user's record for the route.
SIGNED_IN = "smshost.user"


def unauthorized(reason: str) -> JSONResponse:
    return JSONResponse(
        {"error": "unauthorized", "message": f"{reason}; send Authorization: Bearer <token> "
         "or sign in (POST /api/session)"},
        status_code=401, headers={"WWW-Authenticate": 'Bearer realm="smshost"'})


def forbidden(reason: str, code: str = "forbidden") -> JSONResponse:
    return JSONResponse({"error": code, "message": reason}, status_code=403)


def bearer_grant(header: str, token: Secret | None,
                 check: Callable[[str], dict[str, Any] | None]) -> dict[str, Any] | None:
    """What the ``Authorization`` header ``header`` proves: the configured ``token``
    (compared first, without any lookup) or a live API token (``check``); None when it
    proves nothing. The one bearer check of the ASGI path and of the send API's fast
    path (host.web.api.fastsend)."""
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    if token is not None and token.matches(credentials):
        return {**CONFIG_GRANT, "scopes": ["admin"], "rights": list(RIGHTS)}
    return check(credentials)


def bearer_refused(header: str) -> JSONResponse:
    """The 401 to a request whose ``Authorization`` header (``""``: none) proved
    nothing."""
    return unauthorized("missing bearer token" if not header else "invalid bearer token")


class ApiAuth:
    """Every path under ``/api`` needs the API token (``token``: read per request, as
    the host generates it on start when none is configured), a live API token
    (``check``: host.tokens' check, None when the token is not one) or a signed-in
    session (``sessions``); but for the ``public`` (method, path) pairs."""

    def __init__(self, app: ASGIApp, token: Callable[[], Secret | None],
                 check: Callable[[str], dict[str, Any] | None] = lambda _: None,
                 sessions: Sessions | None = None,
                 public: Collection[tuple[str, str]] = ()) -> None:
        self.app = app
        self.token = token
        self.check = check
        self.sessions = sessions
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        if (scope["method"], scope["path"]) in self.public:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        header = headers.get("authorization", "")
        if not header and isinstance(scope.get("session"), dict) and scope["session"]:
            await self._session(scope, receive, send, headers)
            return
        granted = bearer_grant(header, self.token(), self.check)
        if granted is not None:
            scope[GRANTED] = granted
            await self.app(scope, receive, send)
            return
        await bearer_refused(header)(scope, receive, send)

    async def _session(self, scope: Scope, receive: Receive, send: Send,
                       headers: Headers) -> None:
        session = scope["session"]
        found = self.sessions.caller(session) if self.sessions is not None else None
        if found is None:
            session.clear()  # the browser forgets it
            await unauthorized("session ended or signed out")(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS:
            expected, sent = session.get(CSRF_KEY), headers.get(CSRF_HEADER)
            if not isinstance(expected, str) or sent is None or \
                    not hmac.compare_digest(sent.encode(), expected.encode()):
                await forbidden("a request signed in by the session cookie must send the "
                                "session's CSRF token in X-CSRF-Token (GET /api/session "
                                "gives it)", "csrf")(scope, receive, send)
                return
        caller, user = found
        scope[GRANTED] = caller.granted()
        scope[SIGNED_IN] = user
        await self.app(scope, receive, send)
