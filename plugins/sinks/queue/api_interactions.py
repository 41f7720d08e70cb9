"""``/api/interactions``: list, read, and act (accept, decline, pick up, reply,
transfer, disconnect, notes). Every route is ``auth="user"``; host handlers check that
the caller holds the interaction or has the supervise right (403 otherwise, naming the
holder; 409 naming the state when the action does not fit it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import (MAX_ID, ApiError, SendError, int_param, json_body, known_params,
                      path_id)

from . import actions, reading, rows
from .actions import Actor
from .callers import actor_of, read, sink_of
from .tx import Tx

MAX_LIMIT = 500
MAX_REPLY = 1600  # characters: ten long SMS
SENDERS = ("interaction", "workgroup", "agent")
_LIST = ("queue", "state", "agent", "limit", "before")


async def list_interactions(request: Request) -> Response:
    params = request.query_params
    known_params(params, _LIST)
    limit = int_param(params, "limit", 50, 1, MAX_LIMIT) or 50
    before = int_param(params, "before", None, 1, MAX_ID)
    state = params.get("state")
    if state is not None and state not in rows.STATES:
        raise ApiError(400, "bad_parameter", f"state must be one of {', '.join(rows.STATES)}"
                       f"; got {state!r}")
    filters = {name: params.get(name) for name in ("queue", "state", "agent")}
    actor = actor_of(request)
    found = await read(sink_of(request), lambda tx: reading.interactions(
        tx, actor, filters, limit, before))
    following = None
    if len(found) == limit:
        query = "&".join(f"{k}={v}" for k, v in filters.items() if v is not None)
        following = f"/api/interactions?{query + '&' if query else ''}limit={limit}" \
            f"&before={found[-1]['id']}"
    return JSONResponse({"interactions": found, "next": following})


async def get_interaction(request: Request) -> Response:
    known_params(request.query_params, ())
    interaction = path_id(request, "interaction_id", "interaction")
    actor = actor_of(request)

    def view(tx: Tx) -> dict[str, Any]:
        row = actions.owned(tx, interaction, actor, "read")
        return rows.detail(tx.db, row)
    return JSONResponse(await read(sink_of(request), view))


async def _act(request: Request, step: Callable[[Tx, int, Actor], Any]) -> Response:
    interaction = path_id(request, "interaction_id", "interaction")
    actor = actor_of(request)
    sink = sink_of(request)
    await sink.run(lambda tx: step(tx, interaction, actor))
    return JSONResponse(await read(sink, lambda tx: rows.detail(
        tx.db, rows.get(tx.db, interaction))))


async def accept(request: Request) -> Response:
    await json_body(request, ())
    return await _act(request, actions.accept)


async def decline(request: Request) -> Response:
    await json_body(request, ())
    return await _act(request, actions.decline)


async def pickup(request: Request) -> Response:
    await json_body(request, ())
    return await _act(request, actions.pickup)


async def transfer(request: Request) -> Response:
    body = await json_body(request, ("agent", "queue", "workgroup"))
    target = {name: body.text(name) for name in ("agent", "queue", "workgroup")}
    return await _act(request, lambda tx, i, actor: actions.transfer(tx, i, actor, target))


async def disconnect(request: Request) -> Response:
    body = await json_body(request, ("reason",))
    reason = body.text("reason") or "disconnected by agent"
    if len(reason) > 200:
        raise ApiError(400, "bad_parameter", "reason: at most 200 characters")
    return await _act(request, lambda tx, i, actor: actions.disconnect(tx, i, actor, reason))


async def add_note(request: Request) -> Response:
    body = await json_body(request, ("text",))
    text = body.required_text("text")
    interaction = path_id(request, "interaction_id", "interaction")
    actor = actor_of(request)
    note = await sink_of(request).run(lambda tx: actions.note(tx, interaction, actor, text))
    return JSONResponse({"note": note}, status_code=201)


async def reply(request: Request) -> Response:
    body = await json_body(request, ("text", "from"))
    text = body.required_text("text")
    sender = body.text("from") or "interaction"
    if sender not in SENDERS:
        raise ApiError(400, "bad_parameter", f"from must be one of {', '.join(SENDERS)}; "
                       f"got {sender!r}")
    if len(text) > MAX_REPLY:
        raise ApiError(400, "bad_parameter", f"text: at most {MAX_REPLY} characters")
    interaction = path_id(request, "interaction_id", "interaction")
    try:
        message, segments = await sink_of(request).reply(
            interaction, actor_of(request), text, sender)
    except SendError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    return JSONResponse({"message": {"id": message.id, "status": message.status,
                                     "segments": segments, "text": message.body,
                                     "at": message.created_at, "from": message.local,
                                     "to": message.remote}}, status_code=201)
