"""The JSON API under ``/api``: the one place that declares its routes and the
authentication each needs (``auth="token"``: the API token, checked by
:class:`host.web.api.auth.ApiAuth`). Plugins add theirs with ``register("api", ...)``
(host.web.routes); tests/test_web_layer.py fails when a route under /api of the built
app has no declaration.
"""

from __future__ import annotations

from host.web.api import messages, people, routing, send, tokens
from host.web.api import live
from host.web.routes import ApiRoute


def routes() -> list[ApiRoute]:
    return [
        ApiRoute("/api/messages", messages.list_messages, methods=["GET"], auth="token"),
        ApiRoute("/api/messages", send.send_message, methods=["POST"], auth="token"),
        ApiRoute("/api/messages/{message_id}", messages.get_message, methods=["GET"],
                 auth="token"),
        ApiRoute("/api/segments", send.segments, methods=["POST"], auth="token"),
        ApiRoute("/api/events", send.events, methods=["GET"], auth="token"),
        ApiRoute("/api/routes", routing.list_routes, methods=["GET"], auth="token"),
        ApiRoute("/api/routes/test", routing.test_route, methods=["POST"], auth="token"),
        ApiRoute("/api/optouts", routing.list_optouts, methods=["GET"], auth="token"),
        ApiRoute("/api/handlers", routing.list_handlers, methods=["GET"], auth="token"),
        *_people(),
        ApiRoute("/api/tokens", tokens.list_tokens, methods=["GET"], auth="token"),
        ApiRoute("/api/tokens", tokens.add_token, methods=["POST"], auth="token"),
        ApiRoute("/api/tokens/{key}", tokens.revoke_token, methods=["DELETE"], auth="token"),
        *live.routes(),
    ]


def _people() -> list[ApiRoute]:
    """``/api/users`` and ``/api/workgroups`` (host.web.api.people)."""
    return [
        ApiRoute("/api/users", people.list_users, methods=["GET"], auth="token"),
        ApiRoute("/api/users", people.add_user, methods=["POST"], auth="token"),
        ApiRoute("/api/users/{login}", people.get_user, methods=["GET"], auth="token"),
        ApiRoute("/api/users/{login}", people.set_user, methods=["PATCH", "PUT"],
                 auth="token"),
        ApiRoute("/api/users/{login}", people.remove_user, methods=["DELETE"], auth="token"),
        ApiRoute("/api/workgroups", people.list_workgroups, methods=["GET"], auth="token"),
        ApiRoute("/api/workgroups", people.add_workgroup, methods=["POST"], auth="token"),
        ApiRoute("/api/workgroups/{name}", people.get_workgroup, methods=["GET"],
                 auth="token"),
        ApiRoute("/api/workgroups/{name}", people.set_workgroup, methods=["PATCH", "PUT"],
                 auth="token"),
        ApiRoute("/api/workgroups/{name}", people.remove_workgroup, methods=["DELETE"],
                 auth="token"),
    ]
