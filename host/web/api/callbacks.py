"""Status callbacks (issue 16 point 3; host.callbacks): ``GET /api/callbacks`` lists
their deliveries (``status`` pending, delivered or dead; ``message_id``; paged newest
first with ``before``), ``POST /api/callbacks/{id}/replay`` queues a dead letter again."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.callbacks.queue import STATUSES, listed
from host.errors import ApiError
from host.models import MAX_ID
from host.web.context import WebHost
from host.web.params import int_param, known_params, path_id


async def list_callbacks(request: Request) -> Response:
    host: WebHost = request.app.state.host
    params = request.query_params
    known_params(params, ("status", "message_id", "before", "limit"))
    status = params.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "bad_parameter", f"status must be one of {', '.join(STATUSES)}")
    message_id = int_param(params, "message_id", None, 1, MAX_ID)
    before = int_param(params, "before", None, 1, MAX_ID)
    limit = int_param(params, "limit", 50, 1, 500) or 50
    rows = await host.store.read(lambda db: listed(db, status, message_id, before, limit))
    return JSONResponse({"callbacks": rows,
                         "next_before": rows[-1]["id"] if len(rows) == limit else None})


async def replay_callback(request: Request) -> Response:
    host: WebHost = request.app.state.host
    return JSONResponse(await host.callbacks.replay(path_id(request, "id",
                                                            "status callback")))
