"""GET /health: is this node fit to take traffic, and what failed to load (P6, P12).

``status`` is ``ok``; ``degraded`` when something failed to load (the node serves what
did: 200), when the last edit of the configuration was refused (200: the node runs
with the configuration before it; ``config.refused`` names file and line), when the
last purge was incomplete (200; ``purge`` says why) or when the
database refuses writes (a full disk: 503, so a load balancer
takes the node out until writes go through again); ``error`` when the database cannot
be read (503); ``stopping`` from SIGTERM on (503: the load balancer moves traffic
away while the node drains, ``server.drain_seconds``, before its listeners close).
While writes fail, or after a long time without any, the request runs a write probe
first (rate-limited: host.writepath), so the node comes back by itself once
space returns, with no traffic needed.

``process`` names the answering process (its pid, and its worker number under ``serve
--workers``, host.workers), so a load balancer's or an operator's probes show which one
answered.

Only the API listener, which operators keep internal, shows what failed (each item's
file, line and error, which name paths and environment variables, and what the database
said). Every other listener, a broker port open to the internet, answers the same status
with counts only: anyone who can reach it may read it.

``node`` is this node (its id, a fresh uuid4 per start, and name, host/pid);
``cluster.nodes`` every node sharing the database (host.cluster: one on SQLite), alive
or not, with its heartbeat's age and the configuration version it applied, so that a
stale node is visible.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.web.context import WebHost

PING_TIMEOUT = 2.0


async def _database(host: WebHost) -> dict[str, Any]:
    database: dict[str, Any] = {"ok": False}
    try:  # the probe's outcome lands in host.store.writes, now or (if slow) later
        await asyncio.wait_for(host.store.check_writes(), PING_TIMEOUT)
    except TimeoutError:
        pass
    try:
        database["ok"] = await asyncio.wait_for(host.store.ping(), PING_TIMEOUT)
    # Any failure of the database means "not ok"; the reason is shown (BLE001).
    except Exception as exc:  # noqa: BLE001
        database["error"] = f"{type(exc).__name__}: {exc}"
    writes = host.store.writes
    database["writes"] = writes.to_json()
    database["readable"], database["ok"] = database["ok"], database["ok"] and writes.ok
    return database


async def health(request: Request) -> Response:
    body = await health_of(request.app.state.host)
    ok = body["database"]["ok"] and body["status"] != "stopping"
    if not request.app.state.listener.api:
        body = _counts_only(body)
    return JSONResponse(body, status_code=200 if ok else 503)


async def health_of(host: WebHost) -> dict[str, Any]:
    """The API listener's /health body (the admin dashboard shows it too)."""
    database = await _database(host)
    failures = [r.to_json() for r in host.plugins.failures]
    handlers = host.handlers.describe()
    missing = [{"route": r.name, "handler": r.target} for r in host.settings.inbound
               if r.destination == "handler" and host.handlers.get(r.target) is None]
    purge = host.purger.describe()
    config = host.live.describe()
    nodes = await _nodes(host)
    status = "ok" if not failures and not handlers["failures"] and not missing else "degraded"
    if not database["writes"]["ok"] or not purge["ok"] or config["refused"]:
        status = "degraded"
    if not database["readable"]:
        status = "error"
    if host.stopping:
        status = "stopping"
    body: dict[str, Any] = {
        "status": status,
        "version": host.version,
        "role": host.settings.server.role,
        "uptime_seconds": round(host.uptime, 3),
        "process": {"pid": os.getpid(), "worker": host.worker},
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
        "purge": purge,
        "config": config,
        "node": host.cluster.describe(),
        "cluster": {"nodes": nodes},
    }
    return body


async def _nodes(host: WebHost) -> list[dict[str, Any]]:
    """Every node of the cluster (one read of ``nodes``): alive or not, the age of its
    heartbeat, its configuration version; empty when the database cannot be read."""
    try:
        return await asyncio.wait_for(host.cluster.nodes(), PING_TIMEOUT)
    # /health answers whatever the database does; "database" says why (BLE001).
    except Exception:  # noqa: BLE001
        return []


def _counts_only(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as a listener other than the API's shows it: no names, paths or errors."""
    database, plugins, handlers = body["database"], body["plugins"], body["handlers"]
    return {
        **{key: body[key] for key in ("status", "version", "role", "uptime_seconds",
                                      "process")},
        "database": {"ok": database["ok"], "readable": database["readable"],
                     "writes": {"ok": database["writes"]["ok"]}},
        "plugins": {"loaded": plugins["loaded"], "failed": len(plugins["failures"])},
        "handlers": {"loaded": len(handlers["loaded"]), "failed": len(handlers["failures"]),
                     "routes_without_handler": len(handlers["routes_without_handler"])},
        "purge": {"ok": body["purge"]["ok"]},
        "config": {"version": body["config"]["version"],
                   "applied_version": body["config"]["applied_version"],
                   "refused": body["config"]["refused"] is not None,
                   "restart_needed": bool(body["config"]["restart_needed"])},
        "cluster": {"nodes": len(body["cluster"]["nodes"]),
                    "alive": sum(1 for n in body["cluster"]["nodes"] if n["alive"])},
    }
