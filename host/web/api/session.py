"""Browser sessions through the API (SPEC U2): ``POST /api/session`` signs in,
``GET /api/session`` says who the caller is (and the session's CSRF token),
``DELETE /api/session`` signs out.

``POST /api/session`` is the one route under /api reachable without credentials. A
page of another site cannot make a browser sign in with it (login CSRF): it must be
sent as ``application/json`` (which a cross-site form cannot send, and a cross-site
script cannot without a CORS preflight this server never allows), and a request with an
``Origin`` header must come from this site. Failed logins are limited and logged by
host.logins. The session cookie is the pages' one (host.web.ui.sessions), read for
``/api`` by :class:`ApiSessions` before host.web.api.auth checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from host.errors import ApiError
from host.logins import Logins
from host.people_fields import MAX_PASSWORD
from host.rights import Refused, caller_of
from host.sessions import CSRF_KEY
from host.web.api.auth import SIGNED_IN
from host.web.bodies import json_body
from host.web.routes import GRANTED, ApiRoute, is_api_path
from host.web.ui.sessions import COOKIE

PATH = "/api/session"
MAX_LOGIN = 1024


class ApiSessions:
    """The session cookie for ``/api`` (``scope["session"]``): the layer ``build(app)``
    makes, made at the first request that needs it (one to the login, or one carrying
    the cookie), so a node whose API no browser signs in to writes no session secret."""

    def __init__(self, app: ASGIApp, build: Callable[[ASGIApp], ASGIApp]) -> None:
        self.app = app
        self._build = build
        self._layer: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope.get("path", "")) \
                or not _needs_session(scope):
            await self.app(scope, receive, send)
            return
        if self._layer is None:
            self._layer = self._build(self.app)
        await self._layer(scope, receive, send)


def _needs_session(scope: Scope) -> bool:
    if scope["path"] == PATH:
        return True
    for name, value in scope.get("headers", ()):
        if name == b"cookie" and COOKIE.encode() + b"=" in value:
            return True
    return False


def routes() -> list[ApiRoute]:
    return [
        ApiRoute(PATH, sign_in, methods=["POST"], auth="public"),
        ApiRoute(PATH, who_am_i, methods=["GET"], auth="user"),
        ApiRoute(PATH, sign_out, methods=["DELETE"], auth="user"),
    ]


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def same_site(request: Request) -> bool:
    """True unless the request has an ``Origin`` header naming another site."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


async def sign_in(request: Request) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       "POST /api/session takes a JSON body (Content-Type: application/json)")
    if not same_site(request):
        raise ApiError(403, "forbidden", "a login must come from a page of this site "
                       "(the Origin header names another)")
    body = await json_body(request, ("login", "password"))
    login, password = body.required_text("login"), body.required_text("password")
    if len(login) > MAX_LOGIN or len(password) > MAX_PASSWORD:
        raise ApiError(400, "bad_parameter", f"login, password: at most {MAX_LOGIN} and "
                       f"{MAX_PASSWORD} characters")
    logins: Logins = request.app.state.host.logins
    try:
        user = await logins.sign_in(login, password, client_address(request))
    except Refused as exc:
        raise _refusal(exc) from None
    csrf = logins.sessions.sign_in(request.session, user)
    return JSONResponse(_who(user, csrf))


def _refusal(exc: Refused) -> ApiError:
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return ApiError(exc.status, exc.code, str(exc), headers)


def _who(user: dict[str, Any], csrf: str | None) -> dict[str, Any]:
    return {"user": user["login"], "display_name": user["display_name"],
            "roles": user["roles"], "csrf_token": csrf}


async def who_am_i(request: Request) -> Response:
    """The signed-in user and its CSRF token; for a bearer request, what its token is."""
    caller = caller_of(request.scope[GRANTED])
    user = request.scope.get(SIGNED_IN)
    if user is not None:
        csrf = request.session.get(CSRF_KEY)
        return JSONResponse({**_who(user, csrf if isinstance(csrf, str) else None),
                             **caller.granted()})
    return JSONResponse({"user": caller.user, "display_name": None, "roles": None,
                         "csrf_token": None, **caller.granted()})


async def sign_out(request: Request) -> Response:
    if request.scope.get(SIGNED_IN) is None:
        raise ApiError(400, "not_a_session", "DELETE /api/session signs a browser out; this "
                       "request carries a token (revoke one with DELETE /api/tokens/{id})")
    logins: Logins = request.app.state.host.logins
    await logins.sessions.end(request.session)
    return Response(status_code=204)
