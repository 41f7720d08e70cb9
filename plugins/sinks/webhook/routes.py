"""The webhook sink's API: list deliveries and dead letters, show one, replay one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import MAX_ID, ApiError, int_param, known_params, path_id

from .deliveries import delivery_row, list_query
from .settings import STATUSES
from .sink import WebhookSink

if TYPE_CHECKING:
    from host.api import HostAPI

# -- API --------------------------------------------------------------------------------

def _sink(request: Request) -> WebhookSink:
    host: HostAPI = request.app.state.host
    sink = host.sink(WebhookSink.kind)
    if not isinstance(sink, WebhookSink):
        raise ApiError(503, "unavailable", "the webhook sink is not running; see "
                       "`smshost check` or /health")
    return sink


async def _list(request: Request, status: str | None) -> Response:
    sink = _sink(request)
    allowed = ("before", "limit", *(("status",) if status is None else ()), "target")
    known_params(request.query_params, allowed)
    status = status or request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "bad_parameter", f"status must be one of {', '.join(STATUSES)}")
    limit = int_param(request.query_params, "limit", 50, 1, 500) or 50
    before = int_param(request.query_params, "before", None, 1, MAX_ID)
    sql, args = list_query(status, request.query_params.get("target") or None, before)
    rows = await sink.host.store.read(lambda db: list(db.query(sql, [*args, limit])))
    return JSONResponse({"deliveries": rows,
                         "next_before": rows[-1]["id"] if len(rows) == limit else None})


async def dead_letters(request: Request) -> Response:
    return await _list(request, "dead")


async def deliveries(request: Request) -> Response:
    return await _list(request, None)


def _path_id(request: Request) -> int:
    return path_id(request, "id", "webhook delivery")


async def delivery(request: Request) -> Response:
    sink = _sink(request)
    delivery_id = _path_id(request)

    def read(db: Database) -> dict[str, Any] | None:
        row = delivery_row(db, delivery_id)
        if row is not None:
            row["payload"] = json.loads(db.execute(
                "select payload from webhook_deliveries where id = ?",
                [delivery_id]).fetchone()[0])
            row["attempt_log"] = list(db.query(
                "select attempt, replay, started_at, finished_at, http_status, outcome, "
                "error, next_attempt_at from webhook_attempts where delivery_id = ? "
                "order by id", [delivery_id]))
        return row

    row = await sink.host.store.read(read)
    if row is None:
        raise ApiError(404, "not_found", f"no webhook delivery with id {delivery_id}")
    return JSONResponse(row)


async def replay_delivery(request: Request) -> Response:
    sink = _sink(request)
    return JSONResponse(await sink.replay(_path_id(request)))
