"""Settings (issue 15 point 6): ``/admin/settings`` and its sub-pages, for the ``admin``
right. Every change is a configuration edit through :meth:`Admin.edit` (the API's
editor and validation; history source ``admin``):

* the purge (``[purge]`` of smshost.toml, ``/admin/settings/purge``): enabled, days,
  time of day, with the next run and a dry-run count made by the purger itself;
* the SMS-level custom attributes (``[attrs]`` of smshost.toml): list, add, edit,
  remove (a broker's and an account's are on the brokers page);
* the chat sink's idle settings (``[chat]`` of sinks.toml: EnableIdleTimeout,
  PartyIdleTime, PartyIdleGraceTime; the same names in ``[attrs]`` win over them);
* queue notices (``/admin/settings/notices``): owned by the queue sink, edited by a
  vendored script through its API (``/api/queues/{name}/notices``).

Opt-out keywords and numbers are host.web.ui.admin.optout's.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from tomlkit.toml_document import TOMLDocument

from host.config.documents import assign, child, plain, toml_value
from host.config.edits import sections
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form, admin_route

SMSHOST, SINKS = "smshost.toml", "sinks.toml"
IDLE_ATTRS = ("EnableIdleTimeout", "PartyIdleTime", "PartyIdleGraceTime")
"""The SMS-level attributes the chat sink reads before its ``[chat]`` values."""
IDLE_FIELDS = ("party_idle_time", "party_idle_grace_time")
MAX_ATTR_NAME, MAX_ATTR_VALUE = 100, 2000


def pages() -> list[AdminRoute]:
    return [
        admin_route("/admin/settings", overview, need="admin"),
        admin_route("/admin/settings/purge", purge, need="admin", methods=["GET", "POST"]),
        admin_route("/admin/settings/attrs", attrs, need="admin", methods=["POST"]),
        admin_route("/admin/settings/attrs/remove", remove_attr, need="admin",
                    methods=["GET", "POST"]),
        admin_route("/admin/settings/chat", chat, need="admin", methods=["POST"]),
        admin_route("/admin/settings/notices", notices, need="admin"),
    ]


# -- the overview: purge at a glance, attrs, chat idle ----------------------------------

async def overview(admin: Admin, failed: str = "", errors: FieldErrors | None = None,
                   values: dict[str, str] | None = None) -> Response:
    config, sinks = admin.read(SMSHOST), admin.read(SINKS)
    attributes = sections.attrs(config.doc)
    chat_table = plain(sinks.doc.get("chat", {}))
    editing = admin.request.query_params.get("attr", "")
    return admin.render("settings.html", {
        "failed": failed, "errors": errors or FieldErrors(), "values": values or {},
        "etag": config.etag, "sinks_etag": sinks.etag,
        "purge": sections.section(config.doc, "purge"), **_schedule(admin),
        "attrs": sorted(attributes.items()),
        "editing": (editing, attributes.get(editing, "")) if editing in attributes else None,
        "chat": _chat_view(chat_table if isinstance(chat_table, dict) else {}),
        "idle_attrs": {k: attributes[k] for k in IDLE_ATTRS if k in attributes},
    }, status=errors.status if errors else 200)


def _schedule(admin: Admin) -> dict[str, Any]:
    purger = admin.host.purger
    return {"next_run": purger.next_run_at(), "last": purger.describe()}


def _chat_view(table: dict[str, Any]) -> dict[str, Any]:
    return {"enable_idle_timeout": bool(table.get("enable_idle_timeout", False)),
            "party_idle_time": table.get("party_idle_time", 300),
            "party_idle_grace_time": table.get("party_idle_grace_time", 300)}


def typed(form: Form, *boxes: str) -> dict[str, str]:
    """The form as typed, to show again: each checkbox of ``boxes`` ``on`` or ``""``."""
    return {**form.values(), **{b: "on" if form.checked(b) else "" for b in boxes}}


def beside(errors: FieldErrors, keys: dict[str, str]) -> None:
    """Move a problem a sink reported without its key (``file:line: chat.key: what``)
    beside the field of that key (``keys``: dotted key → field)."""
    for message in list(errors.general):
        for key, name in keys.items():
            head, found, what = message.partition(f"{key}: ")
            if found and (not head or head.endswith(": ")):
                errors.general.remove(message)
                errors.add(name, what)
                break


# -- purge -------------------------------------------------------------------------------

async def purge(admin: Admin) -> Response:
    """The purge's page: its settings (POST changes them), the next run, the last run,
    and on ``?count=1`` what a run now would delete (the purger's dry run)."""
    if admin.request.method == "GET":
        counted = admin.request.query_params.get("count") == "1"
        return await _purge_page(admin, counted=counted)
    form = await admin.form()
    errors = FieldErrors()
    data = _purge_data(form, errors)
    if not errors:
        await admin.edit(SMSHOST, lambda doc: sections.set_section(
            doc, "purge", data, replace=False), form, errors, {
            "days": "days", "at": "at", "enabled": "enabled"})
    if errors:
        return await _purge_page(admin, errors=errors, values=typed(form, "enabled"))
    return admin.redirect("/admin/settings/purge", "Purge settings saved.")


def _purge_data(form: Form, errors: FieldErrors) -> dict[str, Any]:
    """The form's purge settings, typed; what cannot be read goes to ``errors``. The
    range of days (greater than 1) and the time's format are the configuration's own
    checks (host.config.settings.PurgeSettings), shown beside the fields."""
    data: dict[str, Any] = {"enabled": form.checked("enabled"), "at": form.get("at")}
    days = form.get("days")
    if not days.lstrip("-").isdigit() or len(days) > 9:
        errors.add("days", f"days must be a whole number of days; got {days!r}")
    else:
        data["days"] = int(days)
    return data


async def _purge_page(admin: Admin, *, counted: bool = False,
                      errors: FieldErrors | None = None,
                      values: dict[str, str] | None = None) -> Response:
    draft = admin.read(SMSHOST)
    count: dict[str, Any] | None = None
    if counted:
        tables, problems = await admin.host.purger.would_delete()
        count = {"messages": tables.get("messages", 0),
                 "tables": sorted((t, n) for t, n in tables.items() if n), "problems": problems}
    return admin.render("settings_purge.html", {
        "purge": sections.section(draft.doc, "purge"), "etag": draft.etag,
        "count": count, "errors": errors or FieldErrors(), "values": values or {},
        **_schedule(admin)}, status=errors.status if errors else 200)


# -- SMS-level custom attributes ---------------------------------------------------------

async def attrs(admin: Admin) -> Response:
    """Add an attribute or change its value (``name``, ``value``)."""
    form = await admin.form()
    errors = FieldErrors()
    name, value = form.get("name"), form.raw("value")
    if not name:
        errors.add("name", "the attribute's name is required")
    elif len(name) > MAX_ATTR_NAME:
        errors.add("name", f"the name is longer than {MAX_ATTR_NAME} characters")
    if len(value) > MAX_ATTR_VALUE:
        errors.add("value", f"the value is longer than {MAX_ATTR_VALUE} characters")
    if not errors:
        await admin.edit(SMSHOST, lambda doc: sections.set_attrs(
            doc, {name: value}, replace=False), form, errors,
            lambda text: "value" if f"attrs.{name}" in text else
            ("name" if "attrs" in text else None))
        beside(errors, {f"attrs.{name}": "value"})
    if errors:
        return await overview(admin, "attrs", errors, form.values())
    return admin.redirect("/admin/settings#attrs", f"Attribute {name} saved.")


async def remove_attr(admin: Admin) -> Response:
    """GET: ask to confirm removing attribute ``name``; POST: remove it."""
    if admin.request.method == "GET":
        name = admin.request.query_params.get("name", "")
        draft = admin.read(SMSHOST)
        if name not in sections.attrs(draft.doc):
            return admin.redirect("/admin/settings#attrs", f"No attribute {name!r} is set.",
                                  "error")
        return admin.render("settings_confirm.html", {
            "title": "Remove an attribute", "action": "/admin/settings/attrs/remove",
            "question": f"Remove the SMS attribute {name}? Handlers and broker templates "
                        "will no longer see it.",
            "fields": {"name": name, "etag": draft.etag}, "button": "Remove",
            "back": "/admin/settings#attrs", "note": True})
    form = await admin.form()
    errors = FieldErrors()
    name = form.get("name")
    if name not in sections.attrs(admin.read(SMSHOST).doc):
        return admin.redirect("/admin/settings#attrs", f"No attribute {name!r} is set.",
                              "error")
    await admin.edit(SMSHOST, lambda doc: sections.set_attrs(doc, {name: None},
                                                             replace=False), form, errors)
    if errors:
        return await overview(admin, "attrs", errors, {})
    return admin.redirect("/admin/settings#attrs", f"Attribute {name} removed.")


# -- chat idle settings ------------------------------------------------------------------

async def chat(admin: Admin) -> Response:
    """The ``[chat]`` idle settings of sinks.toml (the chat sink checks their ranges)."""
    form = await admin.form()
    errors = FieldErrors()
    data: dict[str, Any] = {"enable_idle_timeout": form.checked("enable_idle_timeout")}
    for key in IDLE_FIELDS:
        text = form.get(key)
        if not text.isdigit() or len(text) > 9:
            errors.add(key, f"a whole number of seconds; got {text!r}")
        else:
            data[key] = int(text)
    if not errors:
        await admin.edit(SINKS, lambda doc: _set_chat(doc, data), form, errors,
                         {k: k for k in data})
        beside(errors, {f"chat.{k}": k for k in data})
    if errors:
        return await overview(admin, "chat", errors, typed(form, "enable_idle_timeout"))
    return admin.redirect("/admin/settings#chat", "Chat idle settings saved.")


def _set_chat(doc: TOMLDocument, data: dict[str, Any]) -> None:
    table = child(doc, "chat")
    for key, value in data.items():
        assign(table, key, toml_value(value, f"chat.{key}"))


# -- queue notices -----------------------------------------------------------------------

async def notices(admin: Admin) -> Response:
    """The queue sink's notices, per queue, edited by static/notices.js through the
    sink's API; the defaults are ``[queue.notices]`` of sinks.toml."""
    return admin.render("settings_notices.html")
