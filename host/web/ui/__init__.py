"""The HTML side of the API listener: pages, their templates and static files, the
error pages of every path outside the API, cookie sessions and CSRF protection
(host.web.ui.sessions).

The core's pages are the sign-in page (host.web.ui.login) and the agent desk
(host.web.ui.desk); plugins add theirs with ``register("ui", routes)``. A page
renders with :meth:`Ui.render`, which passes ``request`` and ``csrf_token`` to the
template; templates are Jinja2 with autoescaping on, found in
``host/web/ui/templates``. Static files (``host/web/ui/static``, vendored: nothing is
fetched at run time) are served at ``/ui/static`` with a cache header.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from host.web.routes import UiRoute
from host.web.ui.sessions import csrf_token, with_session

HERE = Path(__file__).parent
STATIC_PATH = "/ui/static"
STATIC_CACHE = "public, max-age=3600"


class CachedStatic(StaticFiles):
    """Static files with ``Cache-Control`` (ETag and Last-Modified come with them)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = STATIC_CACHE
        return response


class Lazy:
    """The app ``build()`` makes, made at the first request (so the session secret is
    only written on a node that serves a session)."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = self._build()
        await self._app(scope, receive, send)


class Ui:
    """Templates, error pages and the wrapping of pages in sessions and CSRF checks.

    ``secret``: called for the session secret when the first page is wrapped (the file
    is only created on a node that serves pages); ``secure``: the cookie only over HTTPS.
    """

    def __init__(self, secret: Callable[[], str], secure: bool) -> None:
        self.environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined)
        self.environment.globals["static"] = STATIC_PATH
        self._secret = secret
        self._kept: str | None = None
        self.secure = secure

    def secret(self) -> str:
        """The session secret, read (or made) at the first call."""
        if self._kept is None:
            self._kept = self._secret()
        return self._kept

    def with_session(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind the session cookie and the CSRF check."""
        return with_session(app, self.secret(), self.secure)

    def pages(self, routes: list[BaseRoute]) -> list[BaseRoute]:
        """The UI routes of the app: ``routes`` (pages, wrapped in sessions and CSRF
        checks, made when a page is first asked for) and the static files."""
        wrapped = [UiRoute(route, Lazy(functools.partial(self.with_session, route.handle)))
                   for route in routes]
        static = Mount(STATIC_PATH, CachedStatic(directory=HERE / "static"), name="static")
        return [*wrapped, UiRoute(static)]

    def render(self, request: Request, template: str | jinja2.Template,
               context: Mapping[str, Any] | None = None, status: int = 200,
               headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """A page: ``template`` (a name under templates/, or a Template of
        :attr:`environment`) with ``context``, ``request`` and ``csrf_token``."""
        if isinstance(template, str):
            template = self.environment.get_template(template)
        text = template.render({**(context or {}), "request": request,
                                "csrf_token": csrf_token(request)})
        return HTMLResponse(text, status_code=status, headers=headers)

    def error_page(self, status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> Response:
        """The HTML answer to an error outside the API (no session needed)."""
        title = _reason(status)
        text = self.environment.get_template("error.html").render(
            status=status, title=title, message=message)
        return HTMLResponse(text, status_code=status, headers=headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
