"""The kinds of route the API listener serves, and the table plugins register into.

Every route of the app is one of these, and its kind says how it is answered:

- ``api``: JSON under ``/api``; each route declares the right it needs
  (:class:`ApiRoute`, ``auth="read"`` ..., host.rights), checked against what the
  request proved (a bearer token or a session cookie); errors are JSON.
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

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from host.rights import Caller, caller_of

Kind = Literal["api", "ui", "webhook", "ops"]
Auth = Literal["public", "user", "read", "send", "supervise", "admin"]
"""What a route needs (host.rights): ``admin`` (configuration, people, tokens),
``supervise`` (queues, agents, reports, history notes), ``read`` (messages, routes,
handlers, history), ``send`` (sending), ``user`` (any authenticated caller, for its own
records); ``public``: nothing (the core's login, ``POST /api/session``, and the API's
OpenAPI document, ``GET /api/openapi.json``: a plugin's route cannot be public)."""
#: What a plugin may register (``ops`` routes are the core's).
PLUGIN_KINDS: tuple[str, ...] = ("api", "ui", "webhook")
AUTHS: tuple[str, ...] = get_args(Auth)
#: The scope key where host.web.api.auth puts what the request proved: a dict with
#: ``via`` ("config", "token" or "session"), ``rights``, ``classifications`` (None: any),
#: ``user``, ``integration``, ``token`` (id), and ``scopes`` for a token (host.rights).
GRANTED = "smshost.auth"


def request_caller(request: Request) -> Caller:
    """Who an ``/api`` request proved to be and what it may do (host.rights.Caller): its
    ``user`` (None for an integration or the configured token) and ``rights``. For
    handlers that check ownership (a plugin's ``auth="user"`` routes)."""
    return caller_of(request.scope.get(GRANTED) or {})


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
    """A JSON route under ``/api`` and the right it needs (:data:`Auth`): a request
    without credentials is refused 401, one whose caller lacks the right 403 naming
    the route, the right and what the caller has."""

    kind: Kind = "api"

    def __init__(self, path: str, endpoint: Callable[..., Any], *,
                 methods: Collection[str] | None = None, auth: Auth) -> None:
        self._declare(Route(path, endpoint, methods=methods), auth)

    #: True for a plugin's plain route under /api, which declared nothing: it needs
    #: ``admin`` (the least it can be given; tests/test_authorization.py fails on one).
    defaulted = False

    @classmethod
    def wrap(cls, route: BaseRoute, auth: Auth, *, defaulted: bool = False) -> ApiRoute:
        """A plugin's route as an API route needing ``auth``."""
        declared = cls.__new__(cls)
        declared._declare(route, auth)
        declared.defaulted = defaulted
        return declared

    def _declare(self, route: BaseRoute, auth: Auth) -> None:
        if auth not in AUTHS:
            raise ValueError(f"unknown auth {auth!r}; one of {', '.join(AUTHS)}")
        super().__init__(route)
        if not is_api_path(self.path):
            raise ValueError(f"an api route's path starts with /api/; got {self.path!r}")
        self.auth: Auth = auth

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # host.web.api.auth refused the request already when its credentials were wrong
        # and put what they proved in the scope; this holds it to the route's need.
        from host.web.api.auth import unauthorized

        granted = scope.get(GRANTED)
        if self.auth == "public":
            await self.app(scope, receive, send)
            return
        if not isinstance(granted, dict):
            await unauthorized("missing bearer token")(scope, receive, send)
            return
        refused = self.refusal(granted, scope.get("method", "GET"))
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, granted: dict[str, Any], method: str) -> Response | None:
        """The 403 to a ``method`` request by a caller that proved ``granted`` without
        the right this route needs; None when it has it. Also the send API's fast path's
        check (host.web.api.fastsend)."""
        from host.web.api.auth import forbidden

        caller = caller_of(granted)
        if caller.allows(self.auth):
            return None
        return forbidden(caller.refusal(self.auth, f"{method} {self.path}"))


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
        hook): under ``/api`` they are API routes (needing the admin right unless they
        are ApiRoutes declaring less), others webhook
        routes (JSON answers, no token), which is how they were served before kinds."""
        for route in routes:
            self.register("api" if is_api_path(route_path(route)) else "webhook", [route])


def _checked(kind: str, route: BaseRoute) -> BaseRoute:
    if not isinstance(route, BaseRoute):
        raise TypeError(f"register({kind!r}, ...) takes Starlette routes; "
                        f"got {type(route).__name__}")
    inside = is_api_path(route_path(route))
    if isinstance(route, ApiRoute) and route.auth == "public":
        raise ValueError(f"a plugin's api route cannot be public: {route_path(route)!r} "
                         "(declare the right it needs)")
    if inside != (kind == "api"):
        where = "under /api" if kind == "api" else "outside /api"
        raise ValueError(f"{kind} routes are {where}; got {route_path(route)!r}")
    return route
