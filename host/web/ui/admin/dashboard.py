"""The dashboard: ``GET /admin``, the node at a glance (issue 15 point 1)."""

from __future__ import annotations

from starlette.responses import Response

from host.web.health import health_of
from host.web.ui.admin.frame import Admin, AdminRoute, admin_route


def pages() -> list[AdminRoute]:
    return [admin_route("/admin", dashboard, need="read")]


async def dashboard(admin: Admin) -> Response:
    return admin.render("dashboard.html", {"health": await health_of(admin.host)})
