"""The dashboard: ``GET /admin``, the node at a glance (issue 15 point 1), and its live
stream ``GET /admin/live`` (host.web.ui.admin.live). The figures are read by
host.web.ui.admin.figures; the page is complete without its script
(static/dashboard.js), which keeps the figures current from the stream."""

from __future__ import annotations

from starlette.responses import Response

from host.web.ui.admin.figures import figures
from host.web.ui.admin.frame import Admin, AdminRoute, admin_route
from host.web.ui.admin.live import live


def pages() -> list[AdminRoute]:
    return [admin_route("/admin", dashboard, need="read"),
            admin_route("/admin/live", live, need="read")]


async def dashboard(admin: Admin) -> Response:
    return admin.render("dashboard.html", {"f": await figures(admin)})
