"""Messages (issue 15 point 4): ``/admin/messages`` searches the stored messages (by
number, text, broker, status, direction and time; pages by id; CSV export of the same
search) and ``/admin/messages/{id}`` shows one: its status timeline, the route taken
and what its handlers did (the router's events), and the exchanges with its broker
(the MO's webhook, each send's request and answer; kept masked, host.brokers.exchanges).

The search is :class:`host.messages.MessageFilter`, read from the query by the same
function as ``GET /api/messages`` (host.web.api.messages.read_filter): one rule.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

from starlette.responses import Response, StreamingResponse

from host.messages import MessageFilter
from host.models import Message, utcnow
from host.web.api.messages import read_filter
from host.web.params import bounded_int
from host.web.ui.admin.frame import NO_STORE, Admin, AdminRoute, FieldErrors, admin_route

PAGE = 50
EXPORT_BATCH = 500
SEARCH_FIELDS = ("number", "text", "broker", "status", "direction", "since", "until")
PAGING = ("before", "after")
STATUSES = ("received", "routed", "queued", "sending", "sent", "delivered", "undelivered",
            "failed", "rejected", "expired")
CSV_COLUMNS = ("id", "created_at", "updated_at", "direction", "status", "broker", "account",
               "local", "remote", "body", "segments", "route", "broker_message_id")
FORMULA = ("=", "+", "-", "@", "\t", "\r")


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
    if found and (len(found) == flt.limit or flt.after_id is not None):
        links["older"] = "/admin/messages?" + urlencode({**typed, "before": found[-1].id})
    if found and (flt.before_id is not None or
                  (flt.after_id is not None and len(found) == flt.limit)):
        links["newer"] = "/admin/messages?" + urlencode({**typed, "after": found[0].id})
    return admin.render("messages.html", {
        "messages": found, "values": values, "errors": errors, "links": links,
        "brokers": sorted(admin.host.brokers), "statuses": STATUSES,
        "searched": bool(typed)}, status=errors.status if errors else 200)


async def export(admin: Admin) -> Response:
    """The search as CSV (every page of it, newest first), read and sent in batches."""
    errors = FieldErrors()
    flt, _ = query_of(admin, errors)
    if errors:
        text = "; ".join([*errors.general, *errors.fields.values()])
        return Response(f"bad search: {text}\n", status_code=400, media_type="text/plain",
                        headers=NO_STORE)
    flt = replace(flt, before_id=None, after_id=None, limit=EXPORT_BATCH)
    stamp = utcnow()[:19].replace(":", "").replace("-", "")
    return StreamingResponse(
        _rows(admin, flt), media_type="text/csv; charset=utf-8",
        headers={**NO_STORE,
                 "Content-Disposition": f'attachment; filename="messages-{stamp}.csv"'})


async def _rows(admin: Admin, flt: MessageFilter) -> AsyncIterator[str]:
    yield _line(CSV_COLUMNS)
    while True:  # bounded: each batch is older than the one before
        batch = await admin.host.messages.find(flt)
        yield "".join(_line(_cells(m)) for m in batch)
        if len(batch) < flt.limit:
            return
        flt = replace(flt, before_id=batch[-1].id)


def _cells(message: Message) -> list[Any]:
    return [getattr(message, name) for name in CSV_COLUMNS]


def _line(cells: Any) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([safe_cell(c) for c in cells])
    return out.getvalue()


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting with ``= + - @`` (or a tab
    or carriage return) gets a leading ``'`` (OWASP's CSV injection advice)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA) else text


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
