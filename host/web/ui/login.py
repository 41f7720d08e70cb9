"""The sign-in page (SPEC U2): ``GET /login`` (the form, or who is signed in),
``POST /login`` (sign in, then to ``next``), ``POST /logout``: for the agent desk and
the admin pages, which call the API with the session cookie they leave.

The forms carry the session's CSRF token (host.web.ui.sessions checks it, so another
site cannot sign a browser in or out); the password is checked and failures limited
and logged by host.logins, as for ``POST /api/session``. ``next`` is followed only to a
path of this site (``/...``, never ``//host`` or a URL): anything else goes to /login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from host.logins import Logins
from host.people_fields import MAX_PASSWORD
from host.rights import Refused
from host.web.api.session import MAX_LOGIN, client_address

if TYPE_CHECKING:
    from host.web.ui import Ui

HOME = "/login"
MAX_NEXT = 2000


def pages() -> list[BaseRoute]:
    return [Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"])]


def safe_next(value: str | None) -> str:
    """``value`` when it is a path of this site, else :data:`HOME`."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/") \
            or value.startswith("//") or any(c in value for c in "\\\r\n\t\x00"):
        return HOME
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else HOME


def _logins(request: Request) -> Logins:
    logins: Logins = request.app.state.host.logins
    return logins


def _page(request: Request, status: int = 200, headers: dict[str, str] | None = None,
          **context: Any) -> Response:
    found = _logins(request).sessions.caller(request.session)
    values = {"user": found[0].user if found else None, "error": None, "login": "",
              "next": safe_next(request.query_params.get("next")), **context}
    ui: Ui = request.app.state.ui
    return ui.render(request, "login.html", values, status, headers)


async def login_page(request: Request) -> Response:
    return _page(request)


async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    login, password = form.get("login", [""])[0], form.get("password", [""])[0]
    target = safe_next(form.get("next", [""])[0])
    if not login or not password or len(login) > MAX_LOGIN or len(password) > MAX_PASSWORD:
        return _page(request, 400, error="Give your login and password.",
                     login=login[:MAX_LOGIN], next=target)
    logins = _logins(request)
    try:
        user = await logins.sign_in(login, password, client_address(request))
    except Refused as exc:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        message = "Wrong login or password." if exc.status == 401 else \
            f"Too many failed logins: try again in {exc.retry_after} seconds."
        return _page(request, exc.status, headers, error=message, login=login, next=target)
    logins.sessions.sign_in(request.session, user)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    await _logins(request).sessions.end(request.session)
    return RedirectResponse(HOME, status_code=303)
