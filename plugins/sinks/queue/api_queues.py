"""``/api/queues``: every queue with its line's length and longest wait, one queue's
line, its ACD settings (a workgroup's overrides of the ``[queue]`` defaults), and the
supervisors' live stream."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import ApiError, int_param, json_body, known_params

from . import acd, directory, reading, streams
from .callers import read, sink_of
from .settings import ACD_FIELDS, overrides
from .tx import Tx

MAX_LIMIT = 500


async def list_queues(request: Request) -> Response:
    known_params(request.query_params, ())
    sink = sink_of(request)
    configured = list(sink.settings.queues)
    return JSONResponse({"queues": await read(sink, lambda tx: reading.summary(
        tx, configured))})


def _queue(tx: Tx, name: str, configured: dict[str, Any]) -> tuple[str, str]:
    found = directory.kind_of(tx.db, name)
    if found is not None:
        return found[1], found[0]
    if name in configured:
        return name, configured[name].kind
    raise ApiError(404, "not_found", f"no queue named {name!r}")


async def get_queue(request: Request) -> Response:
    sink = sink_of(request)
    name = request.path_params["name"]
    known_params(request.query_params, ("limit",))
    limit = int_param(request.query_params, "limit", 100, 1, MAX_LIMIT) or 100

    def view(tx: Tx) -> dict[str, Any]:
        found, kind = _queue(tx, name, sink.queues)
        return reading.line(tx, found, kind, sink.queues.get(found), limit)
    return JSONResponse(await read(sink, view))


async def get_settings(request: Request) -> Response:
    known_params(request.query_params, ())
    sink = sink_of(request)
    name = request.path_params["name"]
    return JSONResponse(await read(sink, lambda tx: _settings(tx, name)))


def _settings(tx: Tx, name: str) -> dict[str, Any]:
    found = directory.kind_of(tx.db, name)
    if found is None or found[0] != "workgroup":
        raise ApiError(404, "not_found", f"no workgroup named {name!r}")
    row = tx.db.execute("select settings from queue_settings where workgroup = ?",
                        [found[1]]).fetchone()
    return {"name": found[1], "overrides": json.loads(row[0]) if row else {},
            "effective": tx.acd(found[1]).as_json(), "defaults": tx.defaults.as_json()}


async def set_settings(request: Request) -> Response:
    """Change a workgroup's overrides: each field of the body set, or removed by null."""
    body = await json_body(request, ACD_FIELDS)
    changes = overrides(body.data)
    name = request.path_params["name"]
    sink = sink_of(request)

    def change(tx: Tx) -> dict[str, Any]:
        current = _settings(tx, name)
        merged = {k: v for k, v in {**current["overrides"], **changes}.items()
                  if v is not None}
        tx.db.conn.execute("insert into queue_settings (workgroup, settings, updated_at) "
                           "values (?, ?, ?) on conflict (workgroup) do update set "
                           "settings = excluded.settings, updated_at = excluded.updated_at",
                           [current["name"], json.dumps(merged), tx.now])
        tx.queues.add(current["name"])
        tx._acd.clear()
        acd.dispatch(tx, current["name"])
        return current
    await sink.run(change)
    return JSONResponse(await read(sink, lambda tx: _settings(tx, name)))


async def events(request: Request) -> Response:
    sink_of(request)
    return streams.stream(request, streams.for_supervisors)
