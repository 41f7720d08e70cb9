"""The simulator phone (issue 15 point 8): ``/admin/simulator``, for the ``admin`` right.
A phone texts the server through a ``simulator`` broker (host.defaults.simulator, the
function ``POST /api/simulator/mo`` calls) and shows the conversation as a thread: its
texts, the server's replies with their status (the simulator's delivery receipts).

The send form posts to the page (post, redirect, get); static/simulator.js reads the
thread again every few seconds (``/admin/simulator/thread``, JSON) while the page is
open and visible, so replies and receipts appear without reloading.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, Response

from host.defaults.simulator import send_mo, simulator_instances
from host.errors import ApiError
from host.web.ui.admin.frame import NO_STORE, Admin, AdminRoute, FieldErrors, admin_route

HOME = "/admin/simulator"
THREAD = 50  # messages of the thread shown, the newest
MAX_NUMBER, MAX_TEXT = 32, 1600
DEFAULT_PHONE = "+14155550123"


def pages() -> list[AdminRoute]:
    return [
        admin_route(HOME, phone, need="admin", methods=["GET", "POST"]),
        admin_route(HOME + "/thread", thread, need="admin"),
    ]


def _locals(admin: Admin) -> list[tuple[str, str]]:
    """(value, label) of each simulator account's number: ``broker|local``."""
    found = []
    for instance in simulator_instances(admin.host):
        for account in instance.accounts.values():
            if account.local_address:
                found.append((f"{instance.name}|{account.local_address}",
                              f"{account.local_address} ({instance.name}, {account.id})"))
    return found


async def phone(admin: Admin) -> Response:
    """GET: the phone (``?from=`` the phone's number, ``?to=`` the number texted);
    POST: send its text, then back to the phone."""
    if admin.request.method == "GET":
        query = admin.request.query_params
        return await _page(admin, {"from": query.get("from", "")[:MAX_NUMBER] or DEFAULT_PHONE,
                                   "to": query.get("to", "")})
    form = await admin.form()
    errors = FieldErrors()
    sender, to, text = form.get("from"), form.get("to"), form.raw("text")
    targets = dict(_locals(admin))
    if not sender:
        errors.add("from", "the phone's number is required")
    elif len(sender) > MAX_NUMBER:
        errors.add("from", f"at most {MAX_NUMBER} characters")
    if to not in targets:
        errors.add("to", "choose one of the simulator's numbers")
    if not text.strip():
        errors.add("text", "type the text to send")
    elif len(text) > MAX_TEXT:
        errors.add("text", f"at most {MAX_TEXT} characters")
    if not errors:
        broker, local = to.split("|", 1)
        try:
            await send_mo(admin.host, sender, local, text, broker)
        except ApiError as exc:
            errors.absorb(exc, {"from": "from"})
    if errors:
        return await _page(admin, form.values(), errors)
    return admin.redirect(f"{HOME}?{urlencode({'from': sender, 'to': to})}",
                          f"Sent from {sender}.")


async def _page(admin: Admin, values: dict[str, str],
                errors: FieldErrors | None = None) -> Response:
    targets = _locals(admin)
    return admin.render("simulator.html", {
        "targets": targets, "values": values, "errors": errors or FieldErrors(),
        "messages": await _thread(admin, values.get("from", "")),
        "has_simulator": bool(simulator_instances(admin.host)),
    }, status=errors.status if errors else 200)


async def thread(admin: Admin) -> Response:
    """The thread of ``?from=`` as JSON (the script's live update)."""
    number = admin.request.query_params.get("from", "")[:MAX_NUMBER]
    return JSONResponse({"messages": await _thread(admin, number)}, headers=NO_STORE)


async def _thread(admin: Admin, number: str) -> list[dict[str, Any]]:
    """The newest messages between the phone ``number`` and the simulator brokers,
    oldest first (one bounded read through the messages_broker index)."""
    names = [i.name for i in simulator_instances(admin.host)]
    if not number or not names:
        return []
    marks = ", ".join("?" for _ in names)
    sql = (f"select id, direction, local, body, status, created_at, updated_at "
           f"from messages where broker in ({marks}) and remote = ? order by id desc limit ?")
    rows = await admin.host.store.read(
        lambda db: list(db.query(sql, [*names, number, THREAD])))
    return list(reversed(rows))
