"""The message API: list and inspect stored messages (JSON)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.errors import ApiError
from host.messages import MessageFilter
from host.models import DIRECTIONS
from host.web.context import WebHost
from host.web.params import MAX_ID, int_param, known_params, path_id, timestamp_param

MAX_LIMIT = 500
_FILTERS = ("direction", "status", "broker", "since", "limit", "before")


def parse_filter(params: Any) -> MessageFilter:
    known_params(params, _FILTERS)
    direction = params.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise ApiError(400, "bad_parameter", "direction must be 'in' or 'out'")
    return MessageFilter(
        direction=direction, status=params.get("status"), broker=params.get("broker"),
        since=timestamp_param(params, "since"),
        before_id=int_param(params, "before", None, 1, MAX_ID),
        limit=int_param(params, "limit", 50, 1, MAX_LIMIT) or 50,
    )


async def list_messages(request: Request) -> Response:
    host: WebHost = request.app.state.host
    flt = parse_filter(request.query_params)
    found = await host.messages.find(flt)
    body: dict[str, Any] = {"messages": [m.to_json() for m in found], "next": None}
    if len(found) == flt.limit:
        params = dict(request.query_params)
        params["before"] = str(found[-1].id)
        body["next"] = f"{request.url.path}?{urlencode(params)}"
    return JSONResponse(body)


async def get_message(request: Request) -> Response:
    host: WebHost = request.app.state.host
    message_id = path_id(request, "message_id", "message")
    message = await host.messages.get(message_id)
    if message is None:
        raise ApiError(404, "not_found", f"no message with id {message_id}")
    body = message.to_json()
    body["events"] = [e.to_json() for e in await host.messages.events(message.id)]
    return JSONResponse(body)
