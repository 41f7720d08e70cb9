"""The configuration history: ``/api/history`` (SPEC P3; host.history).

- ``GET /api/history`` (read): entries newest first, without diffs; filters ``since``,
  ``until`` (ISO-8601), ``source``; ``limit`` and the cursor ``before`` (``next`` is the
  URL of the next page). ``current`` (and the ``ETag`` header) is the digest of the
  configuration files as they are now, for ``If-Match`` on a revert.
- ``GET /api/history/{id}`` (read): one entry with its diff, secrets masked.
- ``POST /api/history/notes`` (supervise): ``{"note": "...", "about": 12}`` adds a note,
  about the configuration or an entry; 201.
- ``POST /api/history/{id}/revert`` (admin): ``{"note": "..."}`` restores version
  ``id`` as a new change (201 with the new entry; 200 ``unchanged`` when the files are
  that version already); 404, 409 (``If-Match`` not the files' digest), 422 with
  ``errors`` (file:line) when the version no longer validates: nothing is written then.

Never the files' texts.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host import reverts
from host.config.change import ConfigChange, read_files
from host.errors import ApiError, ConfigRefused
from host.history import MAX_LIMIT, Query, digest, note_text
from host.web.bodies import json_body
from host.web.context import WebHost
from host.web.params import MAX_ID, int_param, known_params, path_id, timestamp_param
from host.web.routes import GRANTED, ApiRoute

_FILTERS = ("since", "until", "source", "before", "limit")


def routes() -> list[ApiRoute]:
    return [
        ApiRoute("/api/history", list_history, methods=["GET"], auth="supervise"),
        ApiRoute("/api/history/notes", add_note, methods=["POST"], auth="supervise"),
        ApiRoute("/api/history/{entry_id}", get_entry, methods=["GET"], auth="supervise"),
        ApiRoute("/api/history/{entry_id}/revert", revert, methods=["POST"], auth="admin"),
    ]


def actor(request: Request) -> str | None:
    """Who made the request: the user's login, the integration's name, ``token ID`` for
    a token of neither, ``api.token`` for the configured token."""
    granted: dict[str, Any] = request.scope.get(GRANTED) or {}
    if granted.get("user"):
        return str(granted["user"])
    if granted.get("integration"):
        return str(granted["integration"])
    if granted.get("token"):
        return f"token {granted['token']}"
    return "api.token" if granted.get("via") == "config" else None


def _current(host: WebHost) -> str | None:
    directory = host.history.live.config_dir
    return digest(read_files(directory)) if directory is not None else None


async def list_history(request: Request) -> Response:
    host: WebHost = request.app.state.host
    params = request.query_params
    known_params(params, _FILTERS)
    query = Query(since=timestamp_param(params, "since"),
                  until=timestamp_param(params, "until"), source=params.get("source"),
                  before=int_param(params, "before", None, 1, MAX_ID),
                  limit=int_param(params, "limit", 50, 1, MAX_LIMIT) or 50)
    found = await host.history.entries(query)
    current = _current(host)
    body: dict[str, Any] = {"entries": found, "next": None, "current": current}
    if len(found) == query.limit:
        following = {**params, "before": str(found[-1]["id"])}
        body["next"] = f"{request.url.path}?{urlencode(following)}"
    return JSONResponse(body, headers={"ETag": f'"{current}"'} if current else None)


async def get_entry(request: Request) -> Response:
    host: WebHost = request.app.state.host
    known_params(request.query_params, ())
    return JSONResponse(await host.history.entry(path_id(request, "entry_id",
                                                         "history entry")))


async def add_note(request: Request) -> Response:
    host: WebHost = request.app.state.host
    known_params(request.query_params, ())
    body = await json_body(request, ("note", "about"))
    about = body.data.get("about")
    if about is not None and (isinstance(about, bool) or not isinstance(about, int)
                              or not 1 <= about <= MAX_ID):
        raise ApiError(400, "bad_parameter", "about must be the id of a history entry")
    made = await host.history.note(body.data.get("note"), actor(request), about)
    return JSONResponse(made, status_code=201)


async def revert(request: Request) -> Response:
    host: WebHost = request.app.state.host
    known_params(request.query_params, ())
    version = path_id(request, "entry_id", "history entry")
    body = await json_body(request, ("note",))
    change = ConfigChange("revert", actor(request), note_text(body.data.get("note")))
    try:
        entry = await reverts.apply(host.history, version, change,
                                    request.headers.get("if-match"))
    except ConfigRefused as exc:
        return JSONResponse({"error": "config_refused", "message": f"version {version} "
                             "no longer validates; nothing was written",
                             "errors": [e.describe() for e in exc]}, status_code=422)
    if entry is None:
        return JSONResponse({"unchanged": True, "message": f"the configuration files are "
                             f"version {version} already"})
    return JSONResponse(entry, status_code=201)
