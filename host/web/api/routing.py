"""Routing endpoints: the route tester, routes, opt-outs and handler status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.errors import ApiError
from host.routing.inbound import select
from host.routing.shadows import inbound_shadows
from host.routing.tester import sample_message
from host.web.bodies import json_body
from host.web.context import WebHost


async def test_route(request: Request) -> Response:
    """POST {"ani", "dnis", "body"}: the route taken, and why earlier ones were not."""
    host: WebHost = request.app.state.host
    body = await json_body(request)
    ani = body.text("ani")
    if not ani:
        raise ApiError(400, "bad_parameter", "ani (the sender's number) is required")
    message = sample_message(ani, body.text("dnis") or "", body.text("body") or "",
                             body.text("region") or "US")
    answer = select(host.router.routes, message).to_json()
    answer["normalized"] = {"ani": message.remote, "dnis": message.local}
    return JSONResponse(answer)


async def list_routes(request: Request) -> Response:
    host: WebHost = request.app.state.host
    routes = host.router.routes
    return JSONResponse({"routes": [r.to_json() for r in routes],
                         "shadowed": [s.to_json() for s in inbound_shadows(routes)]})


async def list_optouts(request: Request) -> Response:
    host: WebHost = request.app.state.host
    return JSONResponse({"optouts": await host.optouts.list(request.query_params.get("local"))})


async def list_handlers(request: Request) -> Response:
    host: WebHost = request.app.state.host
    rows = await host.store.read(lambda db: list(db.query(
        "select name, digest, status, error, at from handler_loads order by id desc limit 50")))
    return JSONResponse({**host.handlers.describe(), "history": rows})
