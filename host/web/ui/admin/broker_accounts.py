"""A broker's accounts: ``/admin/brokers/{name}/accounts[/{id}]`` (issue 15 point 2).

Add, edit (id, local address, login, password, region, opt-out handling, custom
attributes) and remove (a second step confirms) the ``[[brokers.accounts]]`` of a
broker, through host.config.edits.brokers as the API does. The password is
write-only (host.web.ui.admin.brokers_form).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from host.config.edits import brokers
from host.web.ui.admin.brokers_form import (FILE, attrs_of, attrs_text, index_of, picker,
                                            put_secret, redisplay, relocate, secret_state,
                                            text_or_none)
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form, admin_route

KEYS = ("id", "local_address", "login", "password", "region", "opt_out", "attrs")


def pages() -> list[AdminRoute]:
    base = "/admin/brokers/{name}/accounts"
    both = ["GET", "POST"]
    return [admin_route(base, add, need="admin", methods=both),
            admin_route(base + "/{id}", edit, need="admin", methods=both),
            admin_route(base + "/{id}/remove", remove, need="admin", methods=both)]


def fields(position: int) -> dict[str, str]:
    """Configuration keys (``accounts[I].KEY`` of the broker, or the API's message
    subject) to this form's fields."""
    return {**{f"accounts[{position}].{key}": key for key in KEYS}, **{k: k for k in KEYS}}


def account_of(form: Form, errors: FieldErrors, *, opt_out: bool | None) -> dict[str, Any]:
    """The form as the API's body. A new account (``opt_out`` None) leaves empty
    settings out; ``opt_out`` is written when it is not what it was (a new account's:
    the default, on)."""
    new = opt_out is None
    data: dict[str, Any] = {"id": form.get("id")}
    if form.checked("opt_out") != (True if opt_out is None else opt_out):
        data["opt_out"] = form.checked("opt_out")
    for key in ("local_address", "login", "region"):
        value = text_or_none(form, key)
        if value is not None or not new:
            data[key] = value
    put_secret(data, "password", form, "password", errors)
    return data


def render(admin: Admin, name: str, key: str | None, errors: FieldErrors,
           values: dict[str, Any] | None = None) -> Response:
    draft = admin.read(FILE)
    brokers.broker(draft.doc, name)  # 404 when there is none
    account = brokers.account(draft.doc, name, key) if key is not None else None
    if values is None:
        values = {"opt_out": True} if account is None else {
            **{k: account[k] or "" for k in ("id", "local_address", "login", "region")},
            "opt_out": account["opt_out"], "attrs": attrs_text(account["attrs"])}
    return admin.render("broker_account.html", {
        "name": name, "key": key, "etag": draft.etag, "errors": errors, "values": values,
        "password_state": secret_state(account["password"] if account else None)},
        status=errors.status if errors else 200)


async def add(admin: Admin) -> Response:
    name = admin.request.path_params["name"]
    errors = FieldErrors()
    if admin.request.method == "GET":
        return render(admin, name, None, errors)
    form = await admin.form()
    data = account_of(form, errors, opt_out=None)
    attrs = attrs_of(form, "attrs", errors)
    if attrs:
        data["attrs"] = attrs
    if not errors:
        doc = admin.read(FILE).doc
        position = len(brokers.account_list(doc, name))
        done = await admin.edit(FILE, lambda d: brokers.add_account(d, name, data), form,
                                errors, picker(fields(position)))
        relocate(errors, index_of(doc, name), fields(position))
        if done is not None:
            return admin.redirect(f"/admin/brokers/{name}#accounts",
                                  f"Account {data['id']} added to {name}.")
    return render(admin, name, None, errors, redisplay(form))


async def edit(admin: Admin) -> Response:
    name, key = admin.request.path_params["name"], admin.request.path_params["id"]
    errors = FieldErrors()
    if admin.request.method == "GET":
        return render(admin, name, key, errors)
    form = await admin.form()
    doc = admin.read(FILE).doc
    data = account_of(form, errors, opt_out=brokers.account(doc, name, key)["opt_out"])
    attrs = attrs_of(form, "attrs", errors)
    if not errors and attrs is not None:
        position = brokers.accounts(doc, name).index(key)

        def change(d: Any) -> dict[str, Any]:
            changed = brokers.change_account(d, name, key, data, replace=False)
            brokers.set_attrs(d, name, changed["id"], attrs, replace=True)
            return changed
        done = await admin.edit(FILE, change, form, errors, picker(fields(position or 0)))
        relocate(errors, index_of(doc, name), fields(position or 0))
        if done is not None:
            return admin.redirect(f"/admin/brokers/{name}#accounts",
                                  f"Account {done['id']} of {name} saved.")
    # changed meanwhile (409): the current version with the new ETag, as the message
    # says; the form as typed would undo the other change when posted again
    return render(admin, name, key, errors, None if errors.status == 409 else redisplay(form))


async def remove(admin: Admin) -> Response:
    """GET: the confirmation; POST with ``confirm=yes``: remove the account."""
    name, key = admin.request.path_params["name"], admin.request.path_params["id"]
    draft = admin.read(FILE)
    brokers.account(draft.doc, name, key)  # 404 when there is none
    errors = FieldErrors()
    if admin.request.method == "POST":
        form = await admin.form()
        if form.get("confirm") == "yes":
            await admin.edit(FILE, lambda d: brokers.remove_account(d, name, key), form,
                             errors)
            if not errors:
                return admin.redirect(f"/admin/brokers/{name}#accounts",
                                      f"Account {key} removed from {name}.")
    return admin.render("broker_remove.html", {
        "what": f"account {key} of broker {name}", "name": name, "account": key,
        "etag": admin.read(FILE).etag, "back": f"/admin/brokers/{name}#accounts",
        "errors": errors}, status=errors.status if errors else 200)
