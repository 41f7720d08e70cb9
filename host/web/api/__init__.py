"""The JSON API under ``/api``: the one place that declares its routes and the right
each needs (host.rights; checked by :class:`host.web.routes.ApiRoute` against what
host.web.api.auth proved). Plugins add theirs with ``register("api", ...)``
(host.web.routes); tests/test_authorization.py lists every route of the built app with
the need it expects, and docs/administration.md ("Roles and rights") documents them.
"""

from __future__ import annotations

from host.web.api import (callbacks, cancel, config, history, live, messages, openapi, people,
                          routing, send, session, tokens)
from host.web.routes import ApiRoute


def routes() -> list[ApiRoute]:
    return [
        ApiRoute("/api/messages", messages.list_messages, methods=["GET"], auth="read"),
        ApiRoute("/api/messages", send.send_message, methods=["POST"], auth="send"),
        ApiRoute("/api/messages/{message_id}", messages.get_message, methods=["GET"],
                 auth="read"),
        ApiRoute("/api/messages/{message_id}", cancel.cancel_message, methods=["DELETE"],
                 auth="send"),
        ApiRoute("/api/messages/{message_id}/cancel", cancel.cancel_message,
                 methods=["POST"], auth="send"),
        ApiRoute("/api/segments", send.segments, methods=["POST"], auth="user"),
        ApiRoute("/api/callbacks", callbacks.list_callbacks, methods=["GET"], auth="read"),
        ApiRoute("/api/callbacks/{id}/replay", callbacks.replay_callback, methods=["POST"],
                 auth="admin"),
        ApiRoute("/api/events", send.events, methods=["GET"], auth="read"),
        ApiRoute("/api/routes", routing.list_routes, methods=["GET"], auth="read"),
        ApiRoute("/api/routes/test", routing.test_route, methods=["POST"], auth="read"),
        ApiRoute("/api/optouts", routing.list_optouts, methods=["GET"], auth="read"),
        ApiRoute("/api/handlers", routing.list_handlers, methods=["GET"], auth="read"),
        # public: the shape of the API, which docs/sending.md publishes, not its data
        ApiRoute("/api/openapi.json", openapi.openapi_json, methods=["GET"], auth="public"),
        *_people(),
        ApiRoute("/api/tokens", tokens.list_tokens, methods=["GET"], auth="admin"),
        ApiRoute("/api/tokens", tokens.add_token, methods=["POST"], auth="admin"),
        ApiRoute("/api/tokens/{key}", tokens.revoke_token, methods=["DELETE"], auth="admin"),
        *session.routes(),
        *history.routes(),
        *config.routes(),  # /api/config/...: editing the configuration files
        *live.routes(),  # /api/config/status, /api/config/reload
    ]


def _people() -> list[ApiRoute]:
    """``/api/users`` and ``/api/workgroups`` (host.web.api.people): supervisors see
    them (their agents and queues), admins change them."""
    return [
        ApiRoute("/api/users", people.list_users, methods=["GET"], auth="supervise"),
        ApiRoute("/api/users", people.add_user, methods=["POST"], auth="admin"),
        ApiRoute("/api/users/{login}", people.get_user, methods=["GET"], auth="supervise"),
        ApiRoute("/api/users/{login}", people.set_user, methods=["PATCH", "PUT"],
                 auth="admin"),
        ApiRoute("/api/users/{login}", people.remove_user, methods=["DELETE"], auth="admin"),
        ApiRoute("/api/workgroups", people.list_workgroups, methods=["GET"],
                 auth="supervise"),
        ApiRoute("/api/workgroups", people.add_workgroup, methods=["POST"], auth="admin"),
        ApiRoute("/api/workgroups/{name}", people.get_workgroup, methods=["GET"],
                 auth="supervise"),
        ApiRoute("/api/workgroups/{name}", people.set_workgroup, methods=["PATCH", "PUT"],
                 auth="admin"),
        ApiRoute("/api/workgroups/{name}", people.remove_workgroup, methods=["DELETE"],
                 auth="admin"),
    ]
