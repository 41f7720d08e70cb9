"""Messages (issue 15 point 4): ``/admin/messages`` searches the stored messages (by
number, text, broker, status, direction and time; pages by id; CSV export of the same
search) and ``/admin/messages/{id}`` shows one: its status timeline, the route taken
and what its handlers did (the router's events), and the exchanges with its broker
(the MO's webhook, each send's request and answer; kept masked, host.brokers.exchanges).

The search is :class:`host.messages.MessageFilter`, read from the query by the same
function as ``GET /api/messages`` (host.web.api.messages.read_filter): one rule.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote, urlencode

from starlette.responses import Response

from host.messages import MessageFilter
from host.web.api.messages import read_filter
from host.web.export import csv_response
from host.web.params import bounded_int
from host.web.ui.admin.frame import NO_STORE, Admin, AdminRoute, FieldErrors, admin_route

PAGE = 50
SEARCH_FIELDS = ("number", "text", "broker", "status", "direction", "since", "until")
PAGING = ("before", "after")
STATUSES = ("received", "routed", "queued", "sending", "sent", "delivered", "undelivered",
            "failed", "rejected", "expired")


def pages() -> list[AdminRoute]:
    return [admin_route("/admin/messages", search, need="read"),
            admin_route("/admin/messages/export", export, need="read"),
            admin_route("/admin/messages/{message_id}", message_page, need="read")]


def query_of(admin: Admin, errors: FieldErrors) -> tuple[MessageFilter, dict[str, str]]:
    """The search in the page's query (only its fields: the page ignores others), and
    the values as typed; each bad value's reason beside its field."""
    params = admin.request.query_params
    values = {name: params.get(name, "") for name in (*SEARCH_FIELDS, *PAGING)}
    found: dict[str, str] = {}
    flt = read_filter({k: v for k, v in values.items() if v != ""}, found, limit=PAGE)
    for name, message in found.items():
        errors.add(name if name in SEARCH_FIELDS else None, message)
    return flt, {k: v for k, v in values.items() if k in SEARCH_FIELDS}


async def search(admin: Admin) -> Response:
    errors = FieldErrors()
    flt, values = query_of(admin, errors)
    found = [] if errors else await admin.host.messages.find(flt)
    typed = {k: v for k, v in values.items() if v}
    links = {"export": "/admin/messages/export" + (f"?{urlencode(typed)}" if typed else "")}
    older, newer = flt.cursors([m.id for m in found])
    if older is not None:
        links["older"] = "/admin/messages?" + urlencode({**typed, "before": older})
    if newer is not None:
        links["newer"] = "/admin/messages?" + urlencode({**typed, "after": newer})
    return admin.render("messages.html", {
        "messages": found, "values": values, "errors": errors, "links": links,
        "brokers": sorted(admin.host.brokers), "statuses": STATUSES,
        "searched": bool(typed)}, status=errors.status if errors else 200)


async def export(admin: Admin) -> Response:
    """The search as CSV (every page of it, newest first; host.web.export)."""
    errors = FieldErrors()
    flt, _ = query_of(admin, errors)
    if errors:
        text = "; ".join([*errors.general, *errors.fields.values()])
        return Response(f"bad search: {text}\n", status_code=400, media_type="text/plain",
                        headers=NO_STORE)
    return csv_response(admin.host.messages.find, replace(flt, before_id=None), NO_STORE)


async def message_page(admin: Admin) -> Response:
    raw = str(admin.request.path_params["message_id"])
    message_id = bounded_int(raw)
    message = None if message_id is None else await admin.host.messages.get(message_id)
    if message is None:
        return admin.render("message-missing.html", {"shown": raw[:40]}, status=404)
    events = await admin.host.messages.events(message.id)
    exchanges = await admin.host.messages.exchanges(message.id)
    local = message.local or ""
    thread = None
    if message.remote:
        thread = f"/admin/conversations/{quote(message.remote, safe='')}" + \
            (f"?{urlencode({'local': local})}" if local else "")
    return admin.render("message.html", {
        "message": message, "events": events, "exchanges": exchanges, "thread": thread})
