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

from host.web.ui.admin import (brokers, conversations, dashboard, handlers, history, messages,
                               optout, people, routes, routes_outbound, settings, simulator,
                               tokens)
from host.web.ui.admin.frame import AdminRoute


def pages() -> list[AdminRoute]:
    """Every admin page (each an AdminRoute declaring the right it needs)."""
    return [*dashboard.pages(), *brokers.pages(), *routes.pages(), *routes_outbound.pages(),
            *messages.pages(), *conversations.pages(), *people.pages(), *tokens.pages(),
            *settings.pages(), *optout.pages(), *history.pages(), *handlers.pages(),
            *simulator.pages()]
