"""``/api/queues/{name}/notices``: a workgroup's queue notice settings (its overrides of
``[queue.notices]``, stored under ``"notices"`` in its ``queue_settings`` row, beside
the ACD overrides) and its average handle time."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import ApiError, json_body, known_params

from . import directory, handle_time
from .callers import read, sink_of
from .notice_settings import NOTICE_FIELDS, NoticeSettings, overrides
from .notice_texts import effective
from .tx import Tx


async def get_notices(request: Request) -> Response:
    known_params(request.query_params, ())
    sink = sink_of(request)
    name, defaults = request.path_params["name"], sink.settings.notices
    return JSONResponse(await read(sink, lambda tx: _view(tx, name, defaults)))


def _workgroup(tx: Tx, name: str) -> str:
    found = directory.kind_of(tx.db, name)
    if found is None or found[0] != "workgroup":
        raise ApiError(404, "not_found", f"no workgroup named {name!r}")
    return found[1]


def _stored(tx: Tx, name: str) -> dict[str, Any]:
    row = tx.db.execute("select settings from queue_settings where workgroup = ?",
                        [name]).fetchone()
    return json.loads(row[0]) if row is not None else {}


def _view(tx: Tx, name: str, defaults: NoticeSettings) -> dict[str, Any]:
    found = _workgroup(tx, name)
    settings = effective(tx, defaults, found)
    return {"name": found, "overrides": _stored(tx, found).get("notices", {}),
            "effective": settings.as_json(), "defaults": defaults.as_json(),
            "handle_time": {"seconds": round(handle_time.current(
                tx.db, found, settings.initial_handle_minutes * 60), 3),
                "closes": handle_time.closes(tx.db, found)},
            "open_now": settings.is_open(tx.epoch)}


async def set_notices(request: Request) -> Response:
    """Change a workgroup's notice overrides: each field set, or removed by null."""
    body = await json_body(request, NOTICE_FIELDS)
    changes = overrides(body.data)
    sink = sink_of(request)
    name, defaults = request.path_params["name"], sink.settings.notices

    def change(tx: Tx) -> None:
        found = _workgroup(tx, name)
        stored = _stored(tx, found)
        merged = {k: v for k, v in {**stored.get("notices", {}), **changes}.items()
                  if v is not None}
        stored["notices"] = merged
        tx.db.conn.execute("insert into queue_settings (workgroup, settings, updated_at) "
                           "values (?, ?, ?) on conflict (workgroup) do update set "
                           "settings = excluded.settings, updated_at = excluded.updated_at",
                           [found, json.dumps(stored), tx.now])
    await sink.run(change, wake=False)
    return JSONResponse(await read(sink, lambda tx: _view(tx, name, defaults)))
