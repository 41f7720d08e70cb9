"""Reading request bodies for the API."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from host.errors import ApiError


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); 400 otherwise. NaN and
    Infinity (which Python's json reads) are refused: stored, they break SQLite's JSON."""
    try:
        data = json.loads(await request.body() or b"{}", parse_constant=_no_constant)
    except ValueError:
        raise ApiError(400, "bad_json", "the body must be a JSON object (standard JSON: "
                       "no NaN or Infinity)") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data
