"""One broker instance: ``/admin/brokers/{name}`` (issue 15 point 2, SPEC B5).

Every setting of the instance in one form (switches, definition and profile,
encryption, MO paths, MT gateway and sending, the definition's declared options with
their defaults, proxy, custom attributes), its accounts, the MO and delivery-receipt
URLs to give the broker, a test message and the conformance kit
(host.web.ui.admin.broker_tools). Saving is one edit of ``brokers.toml``
(host.config.edits.brokers, PATCH semantics: what the form does not hold stays).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from host.brokers.instances import public_base
from host.brokers.specs import BrokerDefinition
from host.config.edits import brokers
from host.config.views import masked
from host.web.ui.admin import broker_tools
from host.web.ui.admin.brokers_form import (ENCRYPTIONS, FILE, PARSINGS, attrs_of, attrs_text,
                                            definitions, found_definitions, index_of, number,
                                            picker, problems_of, profiles, put_secret,
                                            raw_options, redisplay, relocate, secret_state,
                                            text_or_none)
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form, admin_route

SETTINGS = ("definition", "profile", "encryption", "region", "enabled", "mo.enabled",
            "mo.port", "mo.path", "mo.receipt_path", "mo.concat_timeout", "mt.enabled",
            "mt.gateway", "mt.path", "mt.timeout", "mt.internationalize", "mt.parsing",
            "mt.rate", "mt.consolidate", "proxy.address", "proxy.login", "proxy.password",
            "proxy.ssl", "attrs")
FIELDS = {key: key for key in SETTINGS}


def pages() -> list[AdminRoute]:
    one = "/admin/brokers/{name}"
    return [admin_route(one, page, need="admin"),
            admin_route(one, save, need="admin", methods=["POST"]),
            *broker_tools.pages()]


def options_of(definition: BrokerDefinition | None, written: dict[str, Any]
               ) -> list[dict[str, Any]]:
    """The declared options (then the undeclared ones written in the file): a secret one,
    or one given by reference, is write-only; the others show their value."""
    declared = definition.options if definition is not None else {}
    shown = []
    for name in [*declared, *[k for k in written if k not in declared]]:
        spec = declared.get(name)
        value = written.get(name)
        secret = spec is None or spec.secret or not isinstance(value, str | None)
        shown.append({"name": name, "secret": secret, "declared": spec is not None,
                      "default": spec.default if spec else "", "help": spec.help if spec else
                      "not declared by the definition", "value": "" if secret else value or "",
                      "state": secret_state(masked(value)) if secret else ""})
    return shown


def urls(admin: Admin, broker: dict[str, Any], definition: BrokerDefinition | None
         ) -> dict[str, str | None]:
    """The MO and delivery-receipt URLs to give the broker: the running instance's, or
    else what its settings and definition give."""
    instance = admin.host.brokers.get(broker["name"])
    if instance is not None:
        port, mo, receipt = instance.port, instance.mo_path, instance.receipt_path
    else:
        settings = admin.host.settings
        port = broker["mo"]["port"] or settings.api_listener.port
        defaults = definition.defaults if definition is not None else None
        mo = broker["mo"]["path"] or (defaults.incoming_path if defaults else None)
        receipt = broker["mo"]["receipt_path"] or (defaults.receipt_path if defaults else None)
        if definition is not None:
            mo = mo if definition.mo is not None else None
            receipt = receipt if definition.receipt is not None else None
    base = public_base(admin.host.settings, port)
    return {"mo": base + mo if mo else None, "receipt": base + receipt if receipt else None}


def render_page(admin: Admin, name: str, errors: FieldErrors | None = None,
                values: dict[str, str] | None = None, **extra: Any) -> Response:
    errors = errors or FieldErrors()
    draft = admin.read(FILE)
    broker = brokers.one(draft.doc, name)  # 404 when there is none
    definition = found_definitions(admin).get(broker["definition"])
    accounts = [{**a, "password_state": secret_state(a["password"])}
                for a in broker["accounts"]]
    return admin.render("broker.html", {
        "broker": broker, "etag": draft.etag, "errors": errors,
        "values": values if values is not None else current(broker),
        "definition": definition, "definitions": definitions(admin),
        "profiles": profiles(admin), "encryptions": ENCRYPTIONS, "parsings": PARSINGS,
        "options": options_of(definition, raw_options(draft.doc, name)),
        "proxy_state": secret_state(broker["proxy"]["password"]), "accounts": accounts,
        "running": name in admin.host.brokers,
        "problems": problems_of(admin, name, broker["definition"]),
        "urls": urls(admin, broker, definition), **broker_tools.context(admin, broker),
        **extra}, status=errors.status if errors else 200)


def current(broker: dict[str, Any]) -> dict[str, Any]:
    """The form's values from the settings as written (defaults shown as such)."""
    values: dict[str, Any] = {}
    for key in SETTINGS:
        section, _, sub = key.partition(".")
        value = broker[section][sub] if sub else broker[section]
        values[key] = "" if value is None or isinstance(value, dict) else value
    values["attrs"] = attrs_text(broker["attrs"])
    values["profile"] = broker["profile"] or ""
    return values


async def page(admin: Admin) -> Response:
    return render_page(admin, admin.request.path_params["name"])


CHECKS = {"enabled", "mo.enabled", "mt.enabled", "mt.internationalize", "mt.consolidate",
          "proxy.ssl"}
NUMBERS: dict[str, Callable[[str], int | float]] = {
    "mo.port": int, "mo.concat_timeout": float, "mt.timeout": float, "mt.rate": float}
CHOSEN = {"definition", "encryption", "mt.parsing"}


def value_of(form: Form, key: str) -> Any:
    """Setting ``key`` as the form gives it (empty: the default)."""
    if key in CHECKS:
        return form.checked(key)
    if key in NUMBERS:
        return number(form, key, NUMBERS[key])
    return form.get(key) if key in CHOSEN else text_or_none(form, key)


def settings_of(form: Form, errors: FieldErrors, before: dict[str, Any],
                options: list[dict[str, Any]], keep: set[str]) -> dict[str, Any]:
    """The settings the form changes (from ``before``, as the page showed them), as the
    API's PATCH body: a default left as it was is not written into the file. Options not
    in ``keep`` (not declared by the definition chosen) are removed."""
    data: dict[str, Any] = {}
    for key in SETTINGS:
        if key in ("attrs", "proxy.password"):
            continue
        shown = before.get(key)
        same = form.checked(key) == bool(shown) if key in CHECKS else \
            form.get(key) == ("" if shown is None else str(shown))
        if not same:
            section, _, sub = key.partition(".")
            (data.setdefault(section, {}) if sub else data)[sub or section] = \
                value_of(form, key)
    proxy: dict[str, Any] = {}
    put_secret(proxy, "password", form, "proxy.password", errors)
    if proxy:
        data.setdefault("proxy", {}).update(proxy)
    chosen: dict[str, Any] = {}
    for option in options:
        field = f"options.{option['name']}"
        if option["name"] not in keep:
            chosen[option["name"]] = None
        elif option["secret"]:
            put_secret(chosen, option["name"], form, field, errors)
        elif form.get(field) != option["value"]:
            chosen[option["name"]] = form.get(field) or None
    if chosen:
        data["options"] = chosen
    return data


async def save(admin: Admin) -> Response:
    name = admin.request.path_params["name"]
    form = await admin.form()
    errors = FieldErrors()
    draft = admin.read(FILE)
    broker = brokers.one(draft.doc, name)
    old = found_definitions(admin).get(broker["definition"])
    new = found_definitions(admin).get(form.get("definition"))
    options = options_of(old, raw_options(draft.doc, name))
    keep = set(new.options) if new is not None else {o["name"] for o in options}
    data = settings_of(form, errors, current(broker), options, keep)
    attrs = attrs_of(form, "attrs", errors)
    if not errors and attrs is not None:
        def change(doc: Any) -> dict[str, Any]:
            brokers.change(doc, name, data, replace=False)
            return brokers.set_attrs(doc, name, None, attrs, replace=True)
        done = await admin.edit(FILE, change, form, errors, picker(FIELDS))
        relocate(errors, index_of(draft.doc, name), FIELDS)
        if done is not None:
            return admin.redirect(f"/admin/brokers/{name}", f"Broker {name} saved.")
    # changed meanwhile (409): the current version (see broker_accounts.edit)
    return render_page(admin, name, errors, None if errors.status == 409 else redisplay(form))
