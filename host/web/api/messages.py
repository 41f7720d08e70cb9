"""The message API: list and inspect stored messages (JSON)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.errors import ApiError
from host.messages import MIN_TEXT, MessageFilter
from host.numbers import normalize
from host.models import DIRECTIONS
from host.web.context import WebHost
from host.web.params import MAX_ID, int_param, known_params, path_id, timestamp_param

MAX_LIMIT = 500
MAX_VALUE = 200
"""Characters a filter's value may have (a number, a text, a broker's name)."""
_FILTERS = ("direction", "status", "broker", "account", "number", "text", "since", "until",
            "limit", "before", "after")


def parse_filter(params: Any) -> MessageFilter:
    """The filter of ``params``; 400 ``bad_parameter`` for the first bad one."""
    known_params(params, _FILTERS)
    errors: dict[str, str] = {}
    flt = read_filter(params, errors)
    if errors:
        raise ApiError(400, "bad_parameter", next(iter(errors.values())))
    return flt


def read_filter(params: Any, errors: dict[str, str], *, limit: int = 50) -> MessageFilter:
    """The filter of ``params`` (a query's parameters: those of the API, blank ones
    ignored), each bad one's reason in ``errors`` by name (then the filter leaves it
    out). Shared by the API and the admin's message search: one rule."""
    values: dict[str, Any] = {}
    for name in _FILTERS:
        raw = params.get(name)
        if raw is None or (raw.strip() == "" and name not in ("limit", "before", "after")):
            continue
        try:
            values[name] = _value(name, raw, params)
        except ApiError as exc:
            errors[name] = exc.message
    text = values.get("text")
    if text is not None and len(text) < MIN_TEXT:
        errors["text"] = f"text: at least {MIN_TEXT} characters (a substring of the text)"
        text = None
    if "before" in values and "after" in values:
        errors["after"] = "give before or after, not both"
        del values["after"]
    return MessageFilter(
        direction=values.get("direction"), status=values.get("status"),
        broker=values.get("broker"), account=values.get("account"),
        number=values.get("number"), text=text, since=values.get("since"),
        until=values.get("until"), before_id=values.get("before"),
        after_id=values.get("after"), limit=values.get("limit") or limit)


def _value(name: str, raw: str, params: Any) -> Any:
    if name in ("since", "until"):
        return timestamp_param(params, name)
    if name == "limit":
        return int_param(params, name, 50, 1, MAX_LIMIT)
    if name in ("before", "after"):
        return int_param(params, name, None, 1, MAX_ID)
    value = raw.strip()
    if len(value) > MAX_VALUE:
        raise ApiError(400, "bad_parameter", f"{name}: at most {MAX_VALUE} characters")
    if name == "direction" and value not in DIRECTIONS:
        raise ApiError(400, "bad_parameter", "direction must be 'in' or 'out'")
    if name == "number":
        return normalize(value)
    return value


async def list_messages(request: Request) -> Response:
    host: WebHost = request.app.state.host
    flt = parse_filter(request.query_params)
    found = await host.messages.find(flt)
    body: dict[str, Any] = {"messages": [m.to_json() for m in found], "next": None}
    if len(found) == flt.limit:
        params = dict(request.query_params)
        params.pop("after", None)
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
