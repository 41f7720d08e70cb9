"""Reading request bodies for the API."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from host import jsontext
from host.errors import ApiError


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); 400 otherwise. NaN and
    Infinity (which Python's json reads) are refused: stored, they break SQLite's JSON.
    Nesting is bounded and text that cannot round-trip replaced, as for webhooks
    (:func:`host.jsontext.loads`)."""
    try:
        data = jsontext.loads(await request.body() or b"{}", constants=False)
    except jsontext.JsonError as exc:
        raise ApiError(400, "bad_json", "the body must be a JSON object (standard JSON: "
                       f"no NaN or Infinity, at most {jsontext.MAX_DEPTH} levels deep): "
                       f"{exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data
