"""The agent desk (issue 14 point 8): ``GET /desk``, the page an agent works from.

The page is a shell rendered here (who is signed in, the sign-out form, the places of
the status control, the offers, the conversations and the thread); what fills it comes
from the JSON API, called by ``static/desk.js`` with the session cookie and the
session's CSRF token (host.web.ui.sessions): ``/api/agents/me``, ``/api/interactions``,
``/api/segments`` and the agent's event stream. It serves every agent, so it is the
core's page, registered beside the sign-in page (host.web.app), not a plugin's.

A visitor who is not signed in (or whose session has ended) is sent to
``/login?next=/desk``; any signed-in user sees the page, and the API decides what each
call may do (a user without the agent role is told so by the page). A user with the
``supervise`` right also gets a link to the supervisor view (host.web.ui.supervisor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from host.logins import Logins

if TYPE_CHECKING:
    from host.web.ui import Ui

PATH = "/desk"


def pages() -> list[BaseRoute]:
    return [Route(PATH, desk_page, methods=["GET"])]


async def desk_page(request: Request) -> Response:
    logins: Logins = request.app.state.host.logins
    found = logins.sessions.caller(request.session)
    if found is None:
        return RedirectResponse(f"/login?next={PATH}", status_code=303,
                                headers={"Cache-Control": "no-store"})
    caller, user = found
    ui: Ui = request.app.state.ui
    return ui.render(request, "desk.html", {
        "login": user["login"], "display_name": user["display_name"] or user["login"],
        "roles": user["roles"], "supervise": caller.allows("supervise")},
        headers={"Cache-Control": "no-store"})
