"""The supervisor view of the agent desk (issue 14 point 8; SPEC S6): ``GET
/desk/supervisor``, where a supervisor watches the queues and the agents and steps in.

The page is a shell rendered here (who is signed in, the places of the queues and of
the agents); ``static/supervisor.js`` fills it from the supervisors' JSON API
(``/api/queues``, ``/api/agents``, ``/api/interactions``, the stream
``/api/queues/events``) and acts through it (``POST /api/interactions/{id}/transfer``,
``PUT /api/agents/{login}/status``), with the session cookie and its CSRF token.

A visitor who is not signed in is sent to ``/login?next=/desk/supervisor``; a signed-in
user without the ``supervise`` right (host.rights) gets a 403 page that says which
right is missing and which roles give it. The API checks every call again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from host.logins import Logins

if TYPE_CHECKING:
    from host.web.ui import Ui

PATH = "/desk/supervisor"
NO_STORE = {"Cache-Control": "no-store"}


def pages() -> list[BaseRoute]:
    return [Route(PATH, supervisor_page, methods=["GET"])]


async def supervisor_page(request: Request) -> Response:
    logins: Logins = request.app.state.host.logins
    found = logins.sessions.caller(request.session)
    if found is None:
        return RedirectResponse(f"/login?next={PATH}", status_code=303, headers=NO_STORE)
    caller, user = found
    ui: Ui = request.app.state.ui
    context = {"login": user["login"], "display_name": user["display_name"] or user["login"],
               "roles": user["roles"], "agent": "agent" in user["roles"]}
    if not caller.allows("supervise"):
        return ui.render(request, "supervisor-refused.html", {
            **context, "reason": caller.refusal("supervise", "The supervisor view")},
            status=403, headers=NO_STORE)
    return ui.render(request, "supervisor.html", context, headers=NO_STORE)
