"""The kinds of route the API listener serves, and the table plugins register into.

Every route of the app is one of these, and its kind says how it is answered:

- ``api``: JSON under ``/api``; each route declares the authentication it needs
  (:class:`ApiRoute`, ``auth="token"``: the bearer token); errors are JSON.
- ``ui``: HTML pages outside ``/api``, with cookie sessions and CSRF protection for
  unsafe methods (host.web.ui); errors are HTML pages.
- ``webhook``: called by other systems (a simulated phone, a plugin's callback), outside
  ``/api``, without the token (the plugin checks its callers); errors are JSON, as the
  caller is a program. Broker webhooks proper are answered before routing
  (host.web.webhooks, host.web.fastpath).
- ``ops``: /health and /metrics (host.web.ops): JSON or text, no token.

A route is kept whole inside its declaration (:class:`Declared` delegates matching and
handling to it), so a plugin's Route, Mount or middleware is served as it built it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, Literal, get_args

from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Kind = Literal["api", "ui", "webhook", "ops"]
Auth = Literal["token", "user", "read", "send", "supervise", "admin"]
"""What a route needs: ``admin`` (configuration, people, tokens), ``supervise`` (queues,
agents, reports, history notes), ``read`` (messages, routes, handlers), ``send`` (sending),
``user`` (any authenticated caller, for its own records). ``token`` is the old "any
valid token" (issue 13 point 3 replaces it and enforces the others; today all pass)."""
#: What a plugin may register (``ops`` routes are the core's).
PLUGIN_KINDS: tuple[str, ...] = ("api", "ui", "webhook")
AUTHS: tuple[str, ...] = get_args(Auth)
#: The scope key where host.web.api.auth puts what the request proved: a dict with
#: ``via`` ("config" or "token"), ``scopes``, ``user``, ``integration``, ``token`` (id).
GRANTED = "smshost.auth"


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def route_path(route: BaseRoute) -> str:
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        raise TypeError(f"a route needs a path; got {type(route).__name__}")
    return path


class Declared(BaseRoute):
    """A route with its kind: matching, URLs and handling are the wrapped route's."""

    kind: Kind

    def __init__(self, route: BaseRoute, app: ASGIApp | None = None) -> None:
        self.route = route
        self.path = route_path(route)
        self.app = app if app is not None else route.handle

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return self.route.matches(scope)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        return self.route.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.route!r})"


class ApiRoute(Declared):
    """A JSON route under ``/api`` and the authentication it needs. ``auth="token"``:
    the API token (every /api path needs it today; roles and scopes come later)."""

    kind: Kind = "api"

    def __init__(self, path: str, endpoint: Callable[..., Any], *,
                 methods: Collection[str] | None = None, auth: Auth) -> None:
        self._declare(Route(path, endpoint, methods=methods), auth)

    @classmethod
    def wrap(cls, route: BaseRoute, auth: Auth = "token") -> ApiRoute:
        """A plugin's route as an API route needing ``auth``."""
        declared = cls.__new__(cls)
        declared._declare(route, auth)
        return declared

    def _declare(self, route: BaseRoute, auth: Auth) -> None:
        if auth not in AUTHS:
            raise ValueError(f"unknown auth {auth!r}; one of {', '.join(AUTHS)}")
        super().__init__(route)
        if not is_api_path(self.path):
            raise ValueError(f"an api route's path starts with /api/; got {self.path!r}")
        self.auth: Auth = auth

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # host.web.api.auth refused the request already when the token was wrong; this
        # holds the route to its own declaration as well (and will check roles).
        granted = scope.get(GRANTED)
        if not isinstance(granted, dict):
            from host.web.api.auth import unauthorized

            await unauthorized("missing bearer token")(scope, receive, send)
            return
        await self.app(scope, receive, send)


class OutsideApi(Declared):
    """A route that must not be under ``/api`` (it would need the token there)."""

    def __init__(self, route: BaseRoute, app: ASGIApp | None = None) -> None:
        super().__init__(route, app)
        if is_api_path(self.path):
            raise ValueError(f"a {self.kind} route cannot be under /api: {self.path!r}")


class WebhookRoute(OutsideApi):
    kind: Kind = "webhook"


class OpsRoute(OutsideApi):
    kind: Kind = "ops"


class UiRoute(OutsideApi):
    """An HTML page; ``app`` is the route behind the session and CSRF layers
    (host.web.ui builds it)."""

    kind: Kind = "ui"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.route.matches(scope)[0] is Match.PARTIAL:  # a method it does not take
            await self.route.handle(scope, receive, send)  # 405, before any CSRF check
            return
        await self.app(scope, receive, send)


class RouteTable:
    """The routes plugins register, in order, each with its kind (the ``register``
    given to the ``register_routes`` hook). UI pages wait here undressed until the UI
    layer wraps them (it holds the session secret)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, BaseRoute]] = []

    def register(self, kind: str, routes: Iterable[BaseRoute]) -> None:
        """``register(kind, routes)``: ``kind`` is ``"api"``, ``"ui"`` or ``"webhook"``."""
        if kind not in PLUGIN_KINDS:
            raise ValueError(f"unknown route kind {kind!r}; one of {', '.join(PLUGIN_KINDS)}")
        checked = [_checked(kind, route) for route in routes]
        self.entries += [(kind, route) for route in checked]

    def returned(self, routes: Iterable[BaseRoute]) -> None:
        """Routes a plugin returned from ``register_routes`` (the first form of the
        hook): under ``/api`` they are API routes needing the token, others webhook
        routes (JSON answers, no token), which is how they were served before kinds."""
        for route in routes:
            self.register("api" if is_api_path(route_path(route)) else "webhook", [route])


def _checked(kind: str, route: BaseRoute) -> BaseRoute:
    if not isinstance(route, BaseRoute):
        raise TypeError(f"register({kind!r}, ...) takes Starlette routes; "
                        f"got {type(route).__name__}")
    inside = is_api_path(route_path(route))
    if inside != (kind == "api"):
        where = "under /api" if kind == "api" else "outside /api"
        raise ValueError(f"{kind} routes are {where}; got {route_path(route)!r}")
    return route
