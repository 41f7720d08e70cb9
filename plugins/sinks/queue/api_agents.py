"""``/api/agents``: an agent's own state and status (``auth="user"``: the handler
checks the caller is an agent), every agent's for supervisors, and a supervisor
setting an agent's status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import ApiError, json_body, known_params

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


MAX_CAPACITY = 1000


async def set_capacity(request: Request) -> Response:
    """``PUT /api/agents/{login}/capacity`` {capacity: N | null}: the agent's own number
    of concurrent interactions (null: its workgroup's again). Offers above a lowered
    capacity are not withdrawn; no new one comes until the load is under it."""
    body = await json_body(request, ("capacity",))
    if "capacity" not in body.data:
        raise ApiError(400, "bad_parameter", "capacity is required: an integer, or null "
                       "for the workgroup's")
    value = body.data["capacity"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 1 <= value <= MAX_CAPACITY):
        raise ApiError(400, "bad_parameter", f"capacity must be an integer from 1 to "
                       f"{MAX_CAPACITY}, or null for the workgroup's; got {value!r}")
    login, sink = request.path_params["login"], sink_of(request)

    def change(tx: Tx) -> str:
        found = agents.require(tx, login)
        agents.ensure(tx, found)
        tx.db.conn.execute("update queue_agents set capacity = ?, updated_at = ? "
                           "where login = ?", [value, tx.now, found])
        tx.agents.add(found)
        acd.dispatch(tx)  # a raised capacity may take a waiting interaction at once
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
