"""The running configuration: ``GET /api/config/status`` and ``POST /api/config/reload``
(P11; host.config.change).

The status is the ``config`` block of /health: the version (a digest of the applied
files), when and by what it was applied, the settings that need a restart and the last
refused change (its errors naming file and line) until a good change clears it. The
reload applies the configuration directory now, as a saved edit does: 200 with what it
did (``changed`` false when the files are the ones applied), 422 with the errors when
the configuration is refused (the running one stays), 409 on a node started without a
configuration directory.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.config.change import ConfigChange
from host.errors import ConfigRefused
from host.web.bodies import json_body
from host.web.context import WebHost
from host.web.params import known_params
from host.web.routes import GRANTED, ApiRoute


def routes() -> list[ApiRoute]:
    return [
        ApiRoute("/api/config/status", status, methods=["GET"], auth="admin"),
        ApiRoute("/api/config/reload", reload, methods=["POST"], auth="admin"),
    ]


def _host(request: Request) -> WebHost:
    known_params(request.query_params, ())
    host: WebHost = request.app.state.host
    return host


async def status(request: Request) -> Response:
    return JSONResponse(_host(request).live.describe())


async def reload(request: Request) -> Response:
    host = _host(request)
    note = await _note(request)
    if host.live.config_dir is None:
        return JSONResponse({"error": "no_config_dir", "message": "this node runs without "
                             "a configuration directory: nothing to reload"}, status_code=409)
    try:
        applied = await host.live.apply(ConfigChange("api", _actor(request), note))
    except ConfigRefused as exc:
        errors = [e.describe() for e in exc]
        return JSONResponse({"error": "config_refused",
                             "message": "the configuration is refused; the running one stays",
                             "errors": errors}, status_code=422)
    return JSONResponse({"changed": applied.changed,
                         "restart_needed": list(applied.restart_needed),
                         **host.live.describe()})


async def _note(request: Request) -> str | None:
    """The optional ``{"note": "..."}`` body (for the history)."""
    if not await request.body():
        return None
    return (await json_body(request, ("note",))).text("note")


def _actor(request: Request) -> str | None:
    granted: dict[str, Any] = request.scope.get(GRANTED) or {}
    actor = granted.get("user") or granted.get("integration")
    return str(actor) if actor else None
