"""The operators' routes: ``/health`` on every listener, ``/metrics`` on the API
listener; neither needs the token (SPEC P6)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from host.metrics import CONTENT_TYPE
from host.web.context import WebHost
from host.web.health import health
from host.web.routes import OpsRoute


async def metrics(request: Request) -> Response:
    host: WebHost = request.app.state.host
    await host.metrics.refresh(host.store)
    return Response(host.metrics.render(), media_type=CONTENT_TYPE)


def routes(api: bool) -> list[OpsRoute]:
    found = [OpsRoute(Route("/health", health, methods=["GET"]))]
    if api:
        found.append(OpsRoute(Route("/metrics", metrics, methods=["GET"])))
    return found
