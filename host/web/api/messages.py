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
from host.web.export import csv_response
from host.web.params import MAX_ID, int_param, known_params, path_id, timestamp_param

MAX_LIMIT = 500
MAX_VALUE = 200
"""Characters a filter's value may have (a number, a text, a broker's name)."""
FILTERS = ("direction", "status", "broker", "account", "number", "text", "since", "until",
            "conversation", "limit", "before", "after")
_PAGING = ("limit", "before", "after")
FORMATS = ("json", "csv")


def parse_filter(params: Any) -> MessageFilter:
    """The filter of ``params``; 400 ``bad_parameter`` for the first bad one."""
    known_params(params, (*FILTERS, "format"))
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
    for name in FILTERS:
        raw = params.get(name)
        if raw is None or (raw.strip() == "" and name not in _PAGING):
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
        until=values.get("until"), conversation=values.get("conversation"),
        before_id=values.get("before"), after_id=values.get("after"),
        limit=values.get("limit") or limit)


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
    if name == "conversation":
        return _conversation(value)
    return value


def _conversation(value: str) -> tuple[str, str]:
    """``local,remote`` (our number, then theirs; ``,remote`` for messages without
    ours) as the filter's pair, each number normalised as ``number`` is."""
    local, comma, remote = value.partition(",")
    if not comma or not remote.strip():
        raise ApiError(400, "bad_parameter", "conversation: our number and theirs, comma "
                       "separated (local,remote; ,remote for messages without ours)")
    return (normalize(local) if local.strip() else "", normalize(remote))


async def list_messages(request: Request) -> Response:
    """Search the stored messages, newest first: every filter given must hold. A page
    of ``limit`` messages with the links of the pages around it (``next``: older,
    ``prev``: newer), or every match as CSV (``Accept: text/csv`` or ``format=csv``)."""
    host: WebHost = request.app.state.host
    flt = parse_filter(request.query_params)
    if wants_csv(request):
        return csv_response(host.messages.find, flt, {"Cache-Control": "no-store"})
    found = await host.messages.find(flt)
    older, newer = flt.cursors([m.id for m in found])
    return JSONResponse({"messages": [m.to_json() for m in found],
                         "next": _link(request, "before", older),
                         "prev": _link(request, "after", newer)})


def _link(request: Request, cursor: str, value: int | None) -> str | None:
    """This search's page at ``cursor=value`` (None: no such page)."""
    if value is None:
        return None
    params = {k: v for k, v in request.query_params.items() if k not in ("before", "after")}
    return f"{request.url.path}?{urlencode({**params, cursor: value})}"


def wants_csv(request: Request) -> bool:
    """Whether the search is asked as CSV: ``format=csv``, or no ``format`` and an
    Accept header preferring ``text/csv`` to JSON. A CSV export lists every match:
    ``limit`` and ``after`` are refused with it (``before`` starts it below an id)."""
    asked = request.query_params.get("format")
    if asked is not None and asked not in FORMATS:
        raise ApiError(400, "bad_parameter", f"format must be one of {', '.join(FORMATS)}")
    csv = asked == "csv" if asked is not None else _prefers_csv(
        request.headers.get("accept", ""))
    for name in ("limit", "after") if csv else ():
        if name in request.query_params:
            raise ApiError(400, "bad_parameter", f"{name}: not with CSV (the export lists "
                           "every match, newest first; before= starts it below an id)")
    return csv


def _prefers_csv(accept: str) -> bool:
    """``text/csv`` ranks above every type JSON answers in ``accept``: a higher quality
    than ``application/json`` (which wins a tie), or at least that of ``*/*`` and
    ``application/*``."""
    csv_q, json_q = 0.0, 0.0
    for item in accept.split(",")[:50]:
        kind, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        kind = kind.lower()
        if kind == "text/csv":
            csv_q = max(csv_q, q)
        elif kind in ("application/json", "application/*", "*/*"):
            json_q = max(json_q, q - (0.0 if kind == "application/json" else 0.001))
    return csv_q > 0 and csv_q > json_q


async def get_message(request: Request) -> Response:
    """One message and its status history (``events``, oldest first)."""
    host: WebHost = request.app.state.host
    message_id = path_id(request, "message_id", "message")
    message = await host.messages.get(message_id)
    if message is None:
        raise ApiError(404, "not_found", f"no message with id {message_id}")
    body = message.to_json()
    body["events"] = [e.to_json() for e in await host.messages.events(message.id)]
    return JSONResponse(body)
