"""Conversations (issue 15 point 4): ``/admin/conversations`` lists the pairs of numbers
that exchanged messages, the latest first (host.conversations: one of our numbers and
the other party, whatever handled their messages; not the chat sink's sessions), and
``/admin/conversations/{remote}?local=...`` shows one as a thread, oldest first, with
each message's direction and delivery status.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.responses import Response

from host.messages import MessageFilter
from host.web.params import MAX_ID, bounded_int
from host.web.ui.admin.frame import Admin, AdminRoute, admin_route

PAGE = 50
MAX_NUMBER = 200


def pages() -> list[AdminRoute]:
    return [admin_route("/admin/conversations", listing, need="read"),
            admin_route("/admin/conversations/{remote}", thread, need="read")]


def _cursor(admin: Admin, name: str) -> tuple[int | None, str | None]:
    """Query parameter ``name`` as a message id; the reason when it is not one."""
    raw = admin.request.query_params.get(name)
    if raw is None or raw == "":
        return None, None
    value = bounded_int(raw, MAX_ID)
    if value is None or value < 1:
        return None, f"{name} must be a message id (an integer from 1)"
    return value, None


def thread_path(local: str, remote: str) -> str:
    return f"/admin/conversations/{quote(remote, safe='')}" + \
        (f"?{urlencode({'local': local})}" if local else "")


async def listing(admin: Admin) -> Response:
    before, bad = _cursor(admin, "before")
    after, bad_after = _cursor(admin, "after")
    problem = bad or bad_after
    if problem:
        return admin.render("conversations.html", {"problem": problem, "rows": [],
                                                   "links": {}}, status=400)
    found = await admin.host.messages.conversations(before=before, after=after, limit=PAGE)
    links = {}
    if found and (len(found) == PAGE or after is not None):
        links["older"] = f"/admin/conversations?before={found[-1].last_id}"
    if found and (before is not None or (after is not None and len(found) == PAGE)):
        links["newer"] = f"/admin/conversations?after={found[0].last_id}"
    rows = [(c, thread_path(c.local, c.remote)) for c in found]
    return admin.render("conversations.html", {"rows": rows, "links": links,
                                               "problem": None})


async def thread(admin: Admin) -> Response:
    remote = str(admin.request.path_params["remote"])
    local = admin.request.query_params.get("local", "")
    before, problem = _cursor(admin, "before")
    if len(remote) > MAX_NUMBER or len(local) > MAX_NUMBER:
        problem = f"a number has at most {MAX_NUMBER} characters"
    if problem:
        return admin.render("conversation-missing.html", {"problem": problem}, status=400)
    found = await admin.host.messages.conversation(local, remote)
    if found is None:
        return admin.render("conversation-missing.html", {
            "remote": remote, "local": local, "problem": None}, status=404)
    page = await admin.host.messages.find(MessageFilter(
        conversation=(local, remote), before_id=before, limit=PAGE))
    links = {}
    here = thread_path(local, remote)
    joiner = "&" if "?" in here else "?"
    if len(page) == PAGE:
        links["older"] = f"{here}{joiner}before={page[-1].id}"
    if before is not None:
        links["newest"] = here
    return admin.render("conversation.html", {
        "conversation": found, "messages": page[::-1], "links": links})
