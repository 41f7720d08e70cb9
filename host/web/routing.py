"""Routing endpoints: the route tester, routes, opt-outs and handler status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from host.core import Host
from host.errors import ApiError
from host.routing.inbound import select
from host.routing.shadows import inbound_shadows
from host.routing.tester import sample_message
from host.web.bodies import json_object


async def test_route(request: Request) -> Response:
    """POST {"ani", "dnis", "body"}: the route taken, and why earlier ones were not."""
    host: Host = request.app.state.host
    data = await json_object(request)
    for key in ("ani", "dnis", "body"):
        if key in data and not isinstance(data[key], str):
            raise ApiError(400, "bad_parameter", f"{key} must be a string")
    if not data.get("ani"):
        raise ApiError(400, "bad_parameter", "ani (the sender's number) is required")
    message = sample_message(data["ani"], data.get("dnis", ""), data.get("body", ""),
                             str(data.get("region", "US")))
    decision = select(host.router.routes, message)
    body = decision.to_json()
    body["normalized"] = {"ani": message.remote, "dnis": message.local}
    return JSONResponse(body)


async def list_routes(request: Request) -> Response:
    host: Host = request.app.state.host
    routes = host.router.routes
    return JSONResponse({"routes": [r.to_json() for r in routes],
                         "shadowed": [s.to_json() for s in inbound_shadows(routes)]})


async def list_optouts(request: Request) -> Response:
    host: Host = request.app.state.host
    return JSONResponse({"optouts": await host.optouts.list(request.query_params.get("local"))})


async def list_handlers(request: Request) -> Response:
    host: Host = request.app.state.host
    rows = await host.store.read(lambda db: list(db.query(
        "select name, digest, status, error, at from handler_loads order by id desc limit 50")))
    return JSONResponse({**host.handlers.describe(), "history": rows})


def routes() -> list[BaseRoute]:
    return [
        Route("/api/routes", list_routes, methods=["GET"]),
        Route("/api/routes/test", test_route, methods=["POST"]),
        Route("/api/optouts", list_optouts, methods=["GET"]),
        Route("/api/handlers", list_handlers, methods=["GET"]),
    ]
