"""API tokens: ``/admin/people/tokens`` (issue 15 point 5), for the ``admin`` right.

The list shows each token's id, owner (a user or an integration), scopes,
classifications, when it was made, last used and revoked; never a secret (host.tokens
keeps none). A new token is made by host.tokens, as ``POST /api/tokens`` makes it, and
shown once: in the answer to the form's post itself (``Cache-Control: no-store``), not
through a redirect and never in the session cookie; no later page can show it again.
Revoking asks first.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from host.errors import ApiError
from host.tokens import FIELDS, SCOPES
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, admin_route
from host.web.ui.admin.people import field_of, names_of

HOME = "/admin/people/tokens"
SCOPE_TEXT = {
    "send": "send messages",
    "read": "read messages, routes, handlers and the history",
    "supervise": "queues, agents, reports and history notes",
    "admin": "everything (configuration, people, tokens)",
}


def pages() -> list[AdminRoute]:
    return [
        admin_route(HOME, tokens, need="admin"),
        admin_route(HOME + "/new", add_token, need="admin", methods=["GET", "POST"]),
        admin_route(HOME + "/{key}/revoke", revoke_token, need="admin",
                    methods=["GET", "POST"]),
    ]


async def tokens(admin: Admin) -> Response:
    return admin.render("tokens.html", {"tokens": await admin.host.tokens.tokens()})


async def add_token(admin: Admin) -> Response:
    errors = FieldErrors()
    values: dict[str, Any] = {}
    scopes: list[str] = ["send"]
    if admin.request.method == "POST":
        form = await admin.form()
        values = form.values()
        scopes = [s for s in form.getlist("scopes") if s]
        data: dict[str, Any] = {"scopes": scopes}
        owner = form.get("owner")
        if owner == "integration":
            data["integration"] = form.get("integration")
        else:
            data["user"] = form.get("user")
        if form.get("classifications"):
            data["classifications"] = names_of(form.get("classifications"))
        try:
            made = await admin.host.tokens.add(data)
        except ApiError as exc:
            errors.absorb(exc, field_of(FIELDS))
        else:
            # Shown here, in this answer only (no redirect, no session): see the module text.
            return admin.render("token_made.html", {"made": made}, status=201)
    users = [u["login"] for u in await admin.host.people.users()]
    return admin.render("token_new.html", {
        "values": values, "errors": errors, "users": users, "scopes": scopes,
        "scope_text": [(s, SCOPE_TEXT[s]) for s in SCOPES]},
        status=errors.status if errors else 200)


async def revoke_token(admin: Admin) -> Response:
    key = admin.request.path_params["key"]
    try:
        token = await admin.host.tokens.token(key)
    except ApiError:
        return admin.redirect(HOME, f"There is no API token {key!r}.", "error")
    if admin.request.method == "POST":
        await admin.form()
        await admin.host.tokens.revoke(key)
        return admin.redirect(HOME, f"API token {key} revoked: it stops working at once.")
    owner = f"user {token['user']}" if token["user"] else f"integration {token['integration']}"
    return admin.render("confirm.html", {
        "title": f"Revoke API token {key}", "back": HOME,
        "what": f"Revoke API token {key} of {owner}? Whatever uses it is refused from its "
                "next request. This cannot be undone.",
        "button": "Revoke the token", "blocked": not token["live"],
        "errors": FieldErrors(general=["This token is revoked already."])
        if not token["live"] else FieldErrors()})
