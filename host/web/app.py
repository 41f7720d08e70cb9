"""Build the Starlette app of one listener: the assembler of the web layer.

Every listener serves ``/health`` and the broker webhooks of its port (host.web.ops,
host.web.webhooks, host.web.fastpath). The API listener also serves, each kind from its
place (host.web.routes):

- ``api``: host.web.api, the JSON API under ``/api`` behind a bearer token or a
  browser session (host.web.api.auth, host.web.api.session; each route checks the right
  it needs), and the API routes plugins register (a plain route needs ``admin``);
  ``POST /api/messages`` by a bearer token is answered before this app, from the HTTP
  parser, through the same functions (host.web.api.fastsend, ``server.api_fast_path``);
- ``ops``: ``/metrics``;
- ``webhook``: routes plugins register for other programs to call;
- ``ui``: host.web.ui, the sign-in page (host.web.ui.login), the agent desk
  (host.web.ui.desk) and its supervisor view (host.web.ui.supervisor), the web admin
  (host.web.ui.admin), the HTML pages plugins register (sessions, CSRF) and the static
  files.

Errors are JSON for the API and the routes programs call, HTML pages for any other
path of the API listener (host.web.errors).

The app sees the node as host.web.context.WebHost; ``Host.app_for`` (the composition
root) builds it and passes the ``register_routes`` hook: nothing here imports host.core.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp


from host.config.settings import ListenerSettings
from host import compat
from host.web import api, ops
from host.web.api.auth import ApiAuth
from host.web.api.session import ApiSessions
from host.web.context import WebHost
from host.web.errors import ErrorAnswers
from host.web.middleware import RequestContext
from host.web.routes import ApiRoute, OpsRoute, RouteTable, WebhookRoute
from host.web.ui import Ui, admin, desk, login, supervisor
from host.web.ui.sessions import session_layer, session_secret
from host.web.webhooks import BrokerDispatch

#: ``register_routes(register)``: the ``register_routes`` hook of every plugin, which
#: passes ``register`` on and returns the routes plugins returned (the first form).
RegisterRoutes = Callable[[Callable[[str, Sequence[BaseRoute]], None]], list[BaseRoute]]


def plugin_routes(register_routes: RegisterRoutes) -> RouteTable:
    """The routes plugins register through the ``register_routes`` hook."""
    table = RouteTable()
    table.returned(register_routes(table.register))
    return table


def _ui(host: WebHost, listener: ListenerSettings) -> Ui:
    public = host.settings.server.public_url or ""
    secure = listener.certfile is not None or public.startswith("https://")
    return Ui(lambda: session_secret(host.data_dir / "session-secret"), secure)


def _routes(host: WebHost, register_routes: RegisterRoutes, listener: ListenerSettings,
            ui: Ui | None) -> list[BaseRoute]:
    routes: list[BaseRoute] = [*ops.routes(listener.api)]
    # Kannel's and Jasmin's send APIs (host.compat), on the listener configured for them.
    routes += [WebhookRoute(route) for route in compat.routes(host.settings, listener)]
    if ui is None:
        return routes
    routes += api.routes()
    pages: list[BaseRoute] = [*login.pages(), *desk.pages(), *supervisor.pages(),
                              *admin.pages()]
    for kind, route in plugin_routes(register_routes).entries:
        if kind == "api":
            routes.append(route if isinstance(route, ApiRoute)
                          else ApiRoute.wrap(route, "admin", defaulted=True))
        elif kind == "webhook":
            routes.append(WebhookRoute(route))
        else:
            pages.append(route)
    return routes + ui.pages(pages)


def _api_layers(host: WebHost, ui: Ui, routes: list[BaseRoute]) -> list[Middleware]:
    """The session cookie of /api, then the authentication of its requests."""
    public = {(method, route.path) for route in routes
              if isinstance(route, ApiRoute) and route.auth == "public"
              for method in getattr(route.route, "methods", None) or ()}
    return [Middleware(ApiSessions, build=lambda app: session_layer(app, ui.secret(), ui.secure)),
            Middleware(ApiAuth, token=lambda: host.api_token, check=host.tokens.check,
                       sessions=host.logins.sessions, public=public)]


def build_app(host: WebHost, listener: ListenerSettings,
              register_routes: RegisterRoutes) -> ASGIApp:
    """The app of ``listener``; ``host`` has loaded its plugins (``Host.app_for``)."""
    ui = _ui(host, listener) if listener.api else None
    routes = _routes(host, register_routes, listener, ui)
    programs = [r for r in routes if isinstance(r, (OpsRoute, WebhookRoute))]
    brokers = host.webhook_paths.names(listener.port)
    answers = ErrorAnswers(programs, brokers, ui.error_page if ui is not None else None,
                           host.refusals)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with host.running():
            yield

    middleware = _api_layers(host, ui, routes) if ui is not None else []
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers=answers.handlers())  # type: ignore[arg-type]
    app.state.host = host
    app.state.listener = listener
    app.state.ui = ui
    # Outside Starlette: the request context, then broker webhooks (the hot path,
    # answered without Starlette's routing and exception layers), then everything else.
    dispatch = BrokerDispatch(app, host=host, port=listener.port)
    return RequestContext(dispatch, host=host, listener=listener.name,
                          limit=host.settings.api.max_body_bytes, answers=answers)
