"""Reading request bodies for the API."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from host.errors import ApiError


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); 400 otherwise."""
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ApiError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data
