"""Brokers and accounts: ``/admin/brokers`` (issue 15 point 2, SPEC B5).

The list of broker instances (definition, profile, switches, accounts, a problem badge
when the instance does not run), quick switches for the instance, MO and MT, adding an
instance with its first account (the way from an empty configuration to a working
deployment), and removing one (a second step confirms). Each instance's own page is
host.web.ui.admin.broker_page, its accounts host.web.ui.admin.broker_accounts. Every
change is an edit of ``brokers.toml`` through host.config.edits.brokers, as the API's.
"""

from __future__ import annotations

import re

from typing import Any

from starlette.responses import Response

from host.config.edits import brokers
from host.errors import ApiError, ConfigRefused
from host.web.ui.admin import broker_accounts, broker_page
from host.web.ui.admin.brokers_form import (ENCRYPTIONS, FILE, definitions, found_definitions,
                                            index_of, picker, problems_of, profiles,
                                            put_secret, redisplay, relocate, text_or_none)
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form, admin_route

ADD_FIELDS = {"name": "name", "definition": "definition", "profile": "profile",
              "encryption": "encryption", "region": "region", "accounts": "account.id",
              "accounts[0].id": "account.id", "id": "account.id",
              "accounts[0].local_address": "account.local_address",
              "accounts[0].login": "account.login",
              "accounts[0].password": "account.password",
              "mt.gateway": "encryption"}
SWITCHES = {"enabled": "the broker", "mo": "MO", "mt": "MT"}


def pages() -> list[AdminRoute]:
    base = "/admin/brokers"
    return [
        admin_route(base, listing, need="admin"),
        admin_route(base, add, need="admin", methods=["POST"]),
        admin_route(base + "/{name}/switch", switch, need="admin", methods=["POST"]),
        admin_route(base + "/{name}/remove", remove, need="admin", methods=["GET", "POST"]),
        *broker_page.pages(), *broker_accounts.pages(),
    ]


def rows(admin: Admin, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    running = admin.host.brokers
    return [{**b, "running": b["name"] in running,
             "problems": problems_of(admin, b["name"], b["definition"])} for b in listed]


def render_list(admin: Admin, errors: FieldErrors | None = None,
                values: dict[str, str] | None = None) -> Response:
    errors = errors or FieldErrors()
    try:
        draft = admin.read(FILE)
        listed, etag = brokers.listing(draft.doc), draft.etag
    except (ApiError, ConfigRefused) as exc:
        errors.absorb(exc)
        listed, etag = [], ""
    return admin.render("brokers.html", {
        "brokers": rows(admin, listed), "etag": etag, "definitions": definitions(admin),
        "profiles": profiles(admin), "encryptions": ENCRYPTIONS, "errors": errors,
        "values": values if values is not None else {"account.id": "default"}},
        status=errors.status if errors else 200)


async def listing(admin: Admin) -> Response:
    return render_list(admin)


def added(form: Form, errors: FieldErrors) -> dict[str, Any]:
    """The new instance and its first account, as the API's POST takes them."""
    account: dict[str, Any] = {"id": form.get("account.id")}
    for key in ("local_address", "login"):
        if form.get(f"account.{key}"):
            account[key] = form.get(f"account.{key}")
    put_secret(account, "password", form, "account.password", errors)
    data: dict[str, Any] = {"name": form.get("name"), "definition": form.get("definition"),
                            "encryption": form.get("encryption"), "accounts": [account]}
    for key in ("profile", "region"):
        if text_or_none(form, key) is not None:
            data[key] = form.get(key)
    return data


URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")


def own_paths(admin: Admin, data: dict[str, Any]) -> None:
    """A second broker of a definition (a second Twilio project, say) cannot take the
    definition's MO and receipt paths, which the first one has: it gets paths of its
    own, ``/NAME/mo`` and ``/NAME/receipt``, which its page then shows to give the
    provider. A name that a URL would have to encode gets none (the add is refused:
    the path is taken)."""
    definition = found_definitions(admin).get(str(data.get("definition")))
    if definition is None:
        return
    profile = data.get("profile")
    if profile and profile in definition.profiles:
        definition = definition.with_profile(profile)
    used = {path for i in admin.host.brokers.values() for path in (i.mo_path, i.receipt_path)
            if path}
    if {definition.defaults.incoming_path, definition.defaults.receipt_path} & used \
            and URL_SAFE.fullmatch(str(data["name"])):
        data["mo"] = {"path": f"/{data['name']}/mo",
                      "receipt_path": f"/{data['name']}/receipt"}


async def add(admin: Admin) -> Response:
    form = await admin.form()
    errors = FieldErrors()
    data = added(form, errors)
    if not errors:
        own_paths(admin, data)
        index = index_of(admin.read(FILE).doc, data["name"])
        done = await admin.edit(FILE, lambda doc: brokers.add(doc, data), form, errors,
                                picker(ADD_FIELDS))
        relocate(errors, index, ADD_FIELDS)
        if done is not None:
            return admin.redirect(f"/admin/brokers/{data['name']}",
                                  f"Broker {data['name']} added.")
    return render_list(admin, errors, redisplay(form))


async def switch(admin: Admin) -> Response:
    """A quick switch: ``what`` (enabled, mo or mt) ``to`` on or off."""
    name = admin.request.path_params["name"]
    form = await admin.form()
    what, on = form.get("what"), form.get("to") == "on"
    errors = FieldErrors()
    if what not in SWITCHES or form.get("to") not in ("on", "off"):
        errors.add(None, "choose what to switch (enabled, mo or mt) and to on or off")
        return render_list(admin, errors)
    data: dict[str, Any] = {"enabled": on} if what == "enabled" else {what: {"enabled": on}}
    done = await admin.edit(FILE, lambda doc: brokers.change(doc, name, data, replace=False),
                            form, errors)
    if done is None:
        return render_list(admin, errors)
    back = f"/admin/brokers/{name}" if form.get("back") == "broker" else "/admin/brokers"
    return admin.redirect(back, f"{SWITCHES[what]} of {name} switched {'on' if on else 'off'}.")


async def remove(admin: Admin) -> Response:
    """GET: the confirmation; POST: remove broker ``name`` (confirmed)."""
    name = admin.request.path_params["name"]
    draft = admin.read(FILE)
    brokers.broker(draft.doc, name)  # 404 when there is none
    errors = FieldErrors()
    if admin.request.method == "POST":
        form = await admin.form()
        if form.get("confirm") == "yes":
            await admin.edit(FILE, lambda doc: brokers.remove(doc, name), form, errors)
            if not errors:
                return admin.redirect("/admin/brokers", f"Broker {name} removed.")
    return admin.render("broker_remove.html", {
        "what": f"broker {name}", "name": name, "account": None, "etag": draft.etag,
        "back": f"/admin/brokers/{name}", "errors": errors},
        status=errors.status if errors else 200)
