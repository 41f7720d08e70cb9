"""The handlers page: ``/admin/handlers`` (issue 15 point 8): the handler scripts
loaded (version time and digest), those failing to load (file and line), their load
history, the calls that failed lately (with the traceback the router recorded), and
a dry run (H5, the function of ``smshost handler test``) on the running node: what a
handler would do with a made-up message, nothing sent or stored.

Reading needs ``read``; the dry run (``POST /admin/handlers/try``) needs ``admin``: it
runs the operator's code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from starlette.responses import Response

from host.traffic import handler_failures, handler_loads
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form, admin_route

MAX_NUMBER = 64
MAX_BODY = 1600


def pages() -> list[AdminRoute]:
    return [admin_route("/admin/handlers", handlers_page, need="read"),
            admin_route("/admin/handlers/try", try_handler, need="admin",
                        methods=["POST"])]


async def handlers_page(admin: Admin) -> Response:
    return await _render(admin)


async def try_handler(admin: Admin) -> Response:
    form = await admin.form()
    errors = FieldErrors()
    names = _names(admin)
    name = form.get("handler")
    if name not in names:
        errors.add("handler", "choose a handler" if not name else
                   f"no handler named {name!r}")
    ani, dnis, body = form.get("ani"), form.get("dnis"), form.raw("body")
    if not ani:
        errors.add("ani", "the sender's number is needed")
    for field, value in (("ani", ani), ("dnis", dnis)):
        if len(value) > MAX_NUMBER:
            errors.add(field, f"at most {MAX_NUMBER} characters")
    if len(body) > MAX_BODY:
        errors.add("body", f"at most {MAX_BODY} characters")
    if errors:
        return await _render(admin, form, errors)
    found = await admin.host.handlers.rehearse(name, ani=ani, dnis=dnis or None, body=body)
    return await _render(admin, form, result=found)


async def _render(admin: Admin, form: Form | None = None,
                  errors: FieldErrors | None = None, result: Any = None) -> Response:
    described = admin.host.handlers.describe()

    def read(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return handler_loads(db), handler_failures(db)

    loads, failed_calls = await admin.host.store.read(read)
    loaded = [{**h, "modified": _modified(h["path"])} for h in described["loaded"]]
    return admin.render("handlers.html", {
        "loaded": loaded, "failures": described["failures"], "loads": loads,
        "failed_calls": failed_calls, "names": _names(admin), "result": result,
        "values": form.values() if form else {"ani": "+15005550006"},
        "errors": errors or FieldErrors()},
        status=errors.status if errors else 200)


def _names(admin: Admin) -> list[str]:
    described = admin.host.handlers.describe()
    return sorted({h["name"] for h in described["loaded"]}
                  | {h["name"] for h in described["failures"]})


def _modified(path: str) -> str:
    """The script file's modification time (UTC), or "" when it cannot be read."""
    try:
        stamp = Path(path).stat().st_mtime
    except OSError:
        return ""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
