"""Opt-out settings (issue 15 point 6): ``/admin/settings/optout``, for the ``admin``
right: the keywords and replies (``[optout]`` of routes.toml, through
:meth:`Admin.edit`), the accounts that do not handle them (their ``opt_out``, on the
brokers page), and the opted-out numbers: searched, paged, one removed after a
confirmation (host.optout.OptOuts.remove)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from host.config.edits import sections
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form, admin_route
from host.web.ui.admin.settings import typed

ROUTES = "routes.toml"
PAGE_SIZE = 50
MAX_OFFSET = 1_000_000
WORDS = ("stop_words", "start_words", "help_words")
REPLIES = ("stop_reply", "start_reply", "help_reply")
HOME = "/admin/settings/optout"


def pages() -> list[AdminRoute]:
    return [
        admin_route(HOME, optout, need="admin", methods=["GET", "POST"]),
        admin_route(HOME + "/remove", remove, need="admin", methods=["GET", "POST"]),
    ]


async def optout(admin: Admin) -> Response:
    """GET: the keywords and the numbers (``?q=`` searches, ``?offset=`` pages); POST:
    change the keywords and replies."""
    if admin.request.method == "GET":
        return await _page(admin)
    form = await admin.form()
    errors = FieldErrors()
    data = _keywords(form)
    await admin.edit(ROUTES, lambda doc: sections.set_section(
        doc, "optout", data, replace=False), form, errors, {k: k for k in data})
    if errors:
        return await _page(admin, errors, typed(form, "enabled"))
    return admin.redirect(HOME, "Opt-out keywords saved.")


def _keywords(form: Form) -> dict[str, Any]:
    """The form's settings: words one per line or comma-separated (empty lines left
    out), replies as typed but trimmed."""
    data: dict[str, Any] = {"enabled": form.checked("enabled")}
    for key in WORDS:
        text = form.raw(key).replace(",", "\n")
        data[key] = [w.strip() for w in text.splitlines() if w.strip()]
    for key in REPLIES:
        data[key] = form.get(key)
    return data


async def _page(admin: Admin, errors: FieldErrors | None = None,
                values: dict[str, str] | None = None) -> Response:
    draft = admin.read(ROUTES)
    shown = sections.section(draft.doc, "optout")
    query = admin.request.query_params
    text = query.get("q", "").strip()[:100]
    offset = _offset(query.get("offset", "0"))
    rows, more = await admin.host.optouts.search(text, limit=PAGE_SIZE, offset=offset)
    settings = admin.host.settings
    exempt = [(b.name, a.id, a.local_address or "") for b in settings.brokers
              for a in b.accounts if not a.opt_out]
    return admin.render("settings_optout.html", {
        "optout": {**shown, **{k: "\n".join(shown[k]) for k in WORDS}},
        "etag": draft.etag, "errors": errors or FieldErrors(), "values": values or {},
        "rows": rows, "q": text, "offset": offset, "exempt": exempt,
        "newer": _link(text, max(offset - PAGE_SIZE, 0)) if offset else None,
        "older": _link(text, offset + PAGE_SIZE) if more else None,
    }, status=errors.status if errors else 200)


def _offset(text: str) -> int:
    return min(int(text), MAX_OFFSET) if text.isdigit() and len(text) < 10 else 0


def _link(text: str, offset: int) -> str:
    params = {k: v for k, v in (("q", text), ("offset", str(offset))) if v and v != "0"}
    return HOME + ("?" + urlencode(params) if params else "")


async def remove(admin: Admin) -> Response:
    """GET ``?local=&remote=``: ask to confirm; POST: opt the number back in."""
    if admin.request.method == "GET":
        local = admin.request.query_params.get("local", "")
        remote = admin.request.query_params.get("remote", "")
        if not await admin.host.optouts.is_opted_out(local, remote):
            return admin.redirect(HOME, f"{remote} is not opted out of {local}.", "error")
        return admin.render("settings_confirm.html", {
            "title": "Remove an opt-out", "action": HOME + "/remove",
            "question": f"Remove the opt-out of {remote} from {local}? Messages from "
                        f"{local} to {remote} will be sent again, as if they had texted a "
                        "start word (no confirmation SMS is sent).",
            "fields": {"local": local, "remote": remote}, "button": "Remove the opt-out",
            "back": HOME, "note": False})
    form = await admin.form()
    local, remote = form.get("local"), form.get("remote")
    if not await admin.host.optouts.remove(local, remote):
        return admin.redirect(HOME, f"{remote} was not opted out of {local}.", "error")
    return admin.redirect(HOME, f"{remote} may receive messages from {local} again.")
