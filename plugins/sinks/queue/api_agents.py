"""``/api/agents``: an agent's own state and status (``auth="user"``: the handler
checks the caller is an agent), every agent's for supervisors, and a supervisor
setting an agent's status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import json_body, known_params

from . import acd, agents, reading, streams
from .callers import actor_of, read, sink_of
from .tx import Tx


async def me(request: Request) -> Response:
    known_params(request.query_params, ())
    sink, actor = sink_of(request), actor_of(request)

    def view(tx: Tx) -> dict[str, object]:
        return reading.me(tx, agents.require(tx, actor.login))
    return JSONResponse(await read(sink, view))


async def set_my_status(request: Request) -> Response:
    return await _set_status(request, actor_of(request).login)


async def set_status(request: Request) -> Response:
    return await _set_status(request, request.path_params["login"])


async def _set_status(request: Request, login: str | None) -> Response:
    body = await json_body(request, ("status", "reason"))
    status = body.required_text("status")
    reason = body.text("reason") or ""
    sink, actor = sink_of(request), actor_of(request)

    def change(tx: Tx) -> str:
        found = agents.require(tx, login)
        agents.set_status(tx, found, status, reason, actor.name)
        acd.dispatch(tx)
        return found
    found = await sink.run(change)
    return JSONResponse(await read(sink, lambda tx: reading.me(tx, found)))


async def every_agent(request: Request) -> Response:
    known_params(request.query_params, ())
    return JSONResponse({"agents": await read(sink_of(request), reading.every_agent)})


async def my_events(request: Request) -> Response:
    sink, actor = sink_of(request), actor_of(request)
    login = await read(sink, lambda tx: agents.require(tx, actor.login))
    return streams.stream(request, streams.for_agent(login))
