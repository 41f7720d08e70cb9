"""GET /health: is this node fit to take traffic, and what failed to load (P6)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.core import Host

PING_TIMEOUT = 2.0


async def health(request: Request) -> Response:
    host: Host = request.app.state.host
    database: dict[str, Any] = {"ok": False}
    try:
        database["ok"] = await asyncio.wait_for(host.store.ping(), PING_TIMEOUT)
    # Any failure of the database means "not ok"; the reason is shown (BLE001).
    except Exception as exc:  # noqa: BLE001
        database["error"] = f"{type(exc).__name__}: {exc}"
    failures = [r.to_json() for r in host.plugins.failures]
    handlers = host.handlers.describe()
    missing = [{"route": r.name, "handler": r.target} for r in host.settings.inbound
               if r.destination == "handler" and host.handlers.get(r.target) is None]
    status = "ok" if not failures and not handlers["failures"] and not missing else "degraded"
    if not database["ok"]:
        status = "error"
    body = {
        "status": status,
        "version": host.version,
        "role": host.settings.server.role,
        "uptime_seconds": round(host.uptime, 3),
        "database": database,
        "plugins": {
            "loaded": sum(1 for r in host.plugins.records if r.ok),
            "failures": failures,
        },
        "handlers": {
            "loaded": [h["name"] for h in handlers["loaded"]],
            "failures": handlers["failures"],
            "routes_without_handler": missing,
        },
    }
    return JSONResponse(body, status_code=200 if database["ok"] else 503)
