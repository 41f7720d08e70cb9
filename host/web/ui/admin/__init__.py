"""The web admin (issue 15, SPEC P9): ``/admin`` and its pages, for operators (the
``admin`` right) and, for what they may read, supervisors.

Pages are rendered on the server (Jinja2 templates under ``templates/admin``) and work
without scripts: forms post, the server validates with the same code as the API and
the configuration files, and answers the form again with each error beside its field
or redirects with a message. A few pages add a vendored script for what a form cannot
do (the dashboard's live figures). host.web.ui.admin.frame is the frame every page
uses: its declaration (:func:`~host.web.ui.admin.frame.admin_route`, the right it
needs), layout, forms and configuration edits.

Each module here owns one section of the navigation and exposes ``pages()``.
"""

from __future__ import annotations

from starlette.responses import Response

from host.web.ui.admin import dashboard, handlers
from host.web.ui.admin.frame import SECTIONS, Admin, AdminRoute, admin_route


def pages() -> list[AdminRoute]:
    """Every admin page (each an AdminRoute declaring the right it needs)."""
    built: list[AdminRoute] = [*dashboard.pages(), *handlers.pages()]
    return built + _pending(built)


def _pending(built: list[AdminRoute]) -> list[AdminRoute]:
    """A page saying so for each section not built yet (while the admin is made)."""
    paths = {route.path for route in built}

    async def pending(admin: Admin) -> Response:
        return admin.render("pending.html", status=501)

    return [admin_route(s.path, pending, need=s.need) for s in SECTIONS if s.path not in paths]
