"""The conversations API: ``GET /api/conversations`` and ``/api/conversations/{id}``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import MAX_ID, ApiError, int_param, known_params, path_id

from .conversations import STATES
from .sink import KIND, ChatSink

MAX_LIMIT = 500
_FILTERS = ("state", "local", "remote", "limit", "before")


def _sink(request: Request) -> ChatSink:
    sink = request.app.state.host.sink(KIND)
    if not isinstance(sink, ChatSink):
        raise ApiError(503, "unavailable", "the chat sink did not load; run `smshost check`")
    return sink


def _number(raw: str) -> str:
    # An unencoded "+" in a query string arrives as a space: take it back.
    return "+" + raw[1:] if raw.startswith(" ") else raw


async def list_conversations(request: Request) -> Response:
    sink = _sink(request)
    params = request.query_params
    known_params(params, _FILTERS)
    state = params.get("state")
    if state is not None and state not in STATES:
        raise ApiError(400, "bad_parameter", f"state must be one of {', '.join(STATES)}")
    filters = {"state": state, "before": int_param(params, "before", None, 1, MAX_ID),
               **{c: _number(params[c]) if params.get(c) is not None else None
                  for c in ("local", "remote")}}
    limit = int_param(params, "limit", 50, 1, MAX_LIMIT) or 50
    found = await sink.find(filters, limit)
    body: dict[str, Any] = {"conversations": found, "next": None}
    if len(found) == limit:
        following = {**params, "before": str(found[-1]["id"])}
        body["next"] = f"{request.url.path}?{urlencode(following)}"
    return JSONResponse(body)


async def get_conversation(request: Request) -> Response:
    conversation_id = path_id(request, "conversation_id", "conversation")
    found = await _sink(request).get(conversation_id)
    if found is None:
        raise ApiError(404, "not_found", f"no conversation with id {conversation_id}")
    return JSONResponse(found)
