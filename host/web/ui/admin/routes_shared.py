"""What the inbound and the outbound route pages share (issue 15 point 3): the ordered
list with move up/down, the add and edit forms, the delete confirmation. Every change
is one edit of ``routes.toml`` through host.config.edits.routes (the API's and the
CLI's rules: the default route stays last and cannot be removed) run by
:meth:`Admin.edit` (the form's ETag, note, history source ``admin``).

A route is named in a query or form field (``name``), not in the path: a route name
may hold any printable character, ``/`` too.

Each kind of route gives a :class:`RouteKind`: where its pages are, how its form reads
into the settings the API takes, and what its list page shows beside the routes (the
tester, the preview).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.responses import Response
from tomlkit.toml_document import TOMLDocument

from host.config.edits import routes as route_edits
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form, admin_route

FILE = route_edits.FILE
Data = dict[str, Any]
# "file:line: inbound[2].target: no queue named ..." (a route's destination or target
# that cannot work, found when the whole configuration is assessed)
_ABOUT = re.compile(r"(?:[^:]+:\d+: )?(inbound|outbound)\[(\d+)\]\.(\w+): (.*)", re.S)


@dataclass(frozen=True, slots=True)
class RouteKind:
    """A kind of route and its pages (see the module text).

    ``read``: the form as the settings the API takes (errors beside fields; None then).
    ``extras``: what the list page shows beside the routes (query parameters read
    there). ``choices``: what the forms offer (targets, brokers...)."""

    kind: route_edits.Kind
    base: str
    what: str
    read: Callable[[Admin, Form, Data | None, FieldErrors], Data | None]
    extras: Callable[[Admin, list[Data]], Awaitable[dict[str, Any]]]
    choices: Callable[[Admin], Awaitable[dict[str, Any]]]

    @property
    def list_template(self) -> str:
        return f"{self.kind}_routes.html"

    @property
    def form_template(self) -> str:
        return f"{self.kind}_route_form.html"

    def pages(self) -> list[AdminRoute]:
        return [
            admin_route(self.base, lambda a: listing(a, self), need="admin"),
            admin_route(self.base + "/new", lambda a: adding(a, self), need="admin",
                        methods=["GET", "POST"]),
            admin_route(self.base + "/edit", lambda a: editing(a, self), need="admin",
                        methods=["GET", "POST"]),
            admin_route(self.base + "/move", lambda a: moving(a, self), need="admin",
                        methods=["POST"]),
            admin_route(self.base + "/delete", lambda a: deleting(a, self), need="admin",
                        methods=["GET", "POST"]),
        ]


def link(base: str, action: str, name: str) -> str:
    return f"{base}/{action}?name={quote(name, safe='')}"


# -- the list ----------------------------------------------------------------------------

async def listing(admin: Admin, kind: RouteKind, errors: FieldErrors | None = None
                  ) -> Response:
    draft = admin.read(FILE)
    routes = route_edits.listing(draft.doc, kind.kind)
    context = {"routes": routes, "etag": draft.etag, "base": kind.base, "link": link,
               **await kind.extras(admin, routes)}
    if errors:
        context["errors"] = errors
    return admin.render(kind.list_template, context,
                        status=errors.status if errors else 200)


async def moving(admin: Admin, kind: RouteKind) -> Response:
    form = await admin.form()
    name, direction = form.get("name"), form.get("direction")
    errors = FieldErrors()
    if direction not in ("up", "down"):
        errors.add(None, f"direction: up or down; got {direction!r}")
        return await listing(admin, kind, errors)
    done = await admin.edit(FILE, lambda doc: route_edits.move(
        doc, kind.kind, name, direction, None), form, errors)
    if done is None:
        return await listing(admin, kind, errors)
    return admin.redirect(kind.base, f"Moved {kind.what} {name!r} {direction}.")


# -- add and edit ------------------------------------------------------------------------

async def adding(admin: Admin, kind: RouteKind) -> Response:
    draft = admin.read(FILE)
    routes = route_edits.listing(draft.doc, kind.kind)
    errors = FieldErrors()
    if admin.request.method == "GET":
        return await _form(admin, kind, routes, None, {}, errors, draft.etag)
    form = await admin.form()
    data = kind.read(admin, form, None, errors)
    position = _position(form, routes, errors)
    if data is not None and not errors:
        first = kind.kind == "inbound" and not routes
        index = position if position is not None else \
            len(routes) - (1 if kind.kind == "inbound" and routes else 0)
        added = await admin.edit(FILE, lambda doc: _add(doc, kind, data, position, first),
                                 form, errors, _fields(kind, index, first))
        placed(errors, kind.kind, index, first)
        if added is not None:
            return admin.redirect(kind.base, f"Added {kind.what} {data['name']!r}"
                                  + (" and the default route after it." if first else "."))
    return await _form(admin, kind, _current(admin, kind, routes), None, form.values(),
                       errors, form.get("etag"))


def _add(doc: TOMLDocument, kind: RouteKind, data: Data, position: int | None,
         first: bool) -> Data:
    """Add the route; the first inbound route brings the default route with it (once
    any route exists one must be last: host.config.routes)."""
    if first:
        default = data.pop("_default")
        route_edits.add(doc, kind.kind, data, None)
        route_edits.add(doc, kind.kind, default, None)
        return data
    data.pop("_default", None)
    return route_edits.add(doc, kind.kind, data, position)


async def editing(admin: Admin, kind: RouteKind) -> Response:
    draft = admin.read(FILE)
    routes = route_edits.listing(draft.doc, kind.kind)
    errors = FieldErrors()
    if admin.request.method == "GET":
        name = admin.request.query_params.get("name", "")
        route = next((r for r in routes if r["name"] == name), None)
        if route is None:
            return admin.redirect(kind.base, f"There is no {kind.what} named {name!r}.",
                                  "error")
        return await _form(admin, kind, routes, route, _shown(route), errors, draft.etag)
    form = await admin.form()
    name = form.get("original")
    route = next((r for r in routes if r["name"] == name), None)
    if route is None:
        return admin.redirect(kind.base, f"There is no {kind.what} named {name!r} (any "
                              "more): nothing was changed.", "error")
    data = kind.read(admin, form, route, errors)
    if data is not None and not errors:
        index = next((i for i, r in enumerate(routes) if r["name"] == name), None)
        changed = await admin.edit(FILE, lambda doc: route_edits.change(
            doc, kind.kind, name, data, replace=False), form, errors,
            _fields(kind, index, False))
        placed(errors, kind.kind, index, False)
        if changed is not None:
            return admin.redirect(kind.base, f"Saved {kind.what} {data['name']!r}.")
    now = _current(admin, kind, routes)
    values: dict[str, Any] = form.values()
    if errors.status == 409:  # changed meanwhile: the route as it is now, not as typed
        found = next((r for r in now if r["name"] == name), None)
        values = _shown(found) if found is not None else values
    return await _form(admin, kind, now, route, values, errors, form.get("etag"))


async def _form(admin: Admin, kind: RouteKind, routes: list[Data], route: Data | None,
                values: dict[str, Any], errors: FieldErrors, etag: str) -> Response:
    if errors.status == 409:  # changed meanwhile: the form goes on with the new ETag
        etag = admin.read(FILE).etag
    return admin.render(kind.form_template, {
        "routes": routes, "route": route, "values": values, "errors": errors,
        "etag": etag, "base": kind.base, "first": kind.kind == "inbound" and not routes,
        **await kind.choices(admin)}, status=errors.status if errors else 200)


def _current(admin: Admin, kind: RouteKind, routes: list[Data]) -> list[Data]:
    """The routes as the file now holds them (after a refused edit: unchanged)."""
    return route_edits.listing(admin.read(FILE).doc, kind.kind) if routes else routes


def _shown(route: Data) -> dict[str, Any]:
    """A route's settings as its form's values."""
    out = {k: ("" if v is None else v) for k, v in route.items()}
    if isinstance(route.get("classifications"), list):
        out["classifications"] = ", ".join(route["classifications"])
    return out


def _position(form: Form, routes: list[Data], errors: FieldErrors) -> int | None:
    text = form.get("position")
    if not text:
        return None
    if not text.isdigit() or int(text) > len(routes):
        errors.add("position", f"a position from 0 to {len(routes)}; got {text!r}")
        return None
    return int(text)


def _fields(kind: RouteKind, index: int | None, first: bool
            ) -> Callable[[str], str | None]:
    """Which form field a refusal is about: a setting's key (``inbound[2].pattern``,
    ``pattern``), or the name the API's message starts with."""
    def pick(text: str) -> str | None:
        key = text.rsplit(".", 1)[-1].split("[")[0]
        if first and re.search(rf"{kind.kind}\[1\]", text):
            return f"default_{key}" if key in ("destination", "target") else None
        if index is not None and f"[{index}]" in text or "[" not in text:
            return key if key in FIELD_NAMES else _named(text)
        return None
    return pick


FIELD_NAMES = ("name", "type", "pattern", "destination", "target", "format", "broker",
               "account", "classifications", "position")


def _named(text: str) -> str | None:
    if " named " in text:  # already a route named ...
        return "name"
    return next((f for f in FIELD_NAMES if text.startswith(f + " ") or
                 text.startswith(f + ":") or f"'{f}'" in text), None)


def placed(errors: FieldErrors, kind: str, index: int | None, first: bool) -> None:
    """Move a general problem about the edited route's destination or target
    (``file:line: inbound[i].target: ...``, found when the node assesses the whole
    configuration) beside its field."""
    keep = []
    for text in errors.general:
        found = _ABOUT.fullmatch(text)
        if found is None or found[1] != kind:
            keep.append(text)
            continue
        at, key = int(found[2]), found[3]
        if first and at == 1 and key in ("destination", "target"):
            errors.add(f"default_{key}", found[4])
        elif at == index and key in FIELD_NAMES:
            errors.add(key, found[4])
        else:
            keep.append(text)
    errors.general = keep


# -- delete ------------------------------------------------------------------------------

async def deleting(admin: Admin, kind: RouteKind) -> Response:
    draft = admin.read(FILE)
    routes = route_edits.listing(draft.doc, kind.kind)
    errors = FieldErrors()
    if admin.request.method == "GET":
        name = admin.request.query_params.get("name", "")
        values: dict[str, Any] = {}
        etag = draft.etag
    else:
        form = await admin.form()
        name, values, etag = form.get("name"), form.values(), form.get("etag")
        if not form.checked("confirm"):
            errors.add("confirm", "tick this box to delete the route")
        else:
            await admin.edit(FILE, lambda doc: route_edits.remove(doc, kind.kind, name),
                             form, errors)
            if not errors:
                return admin.redirect(kind.base, f"Deleted {kind.what} {name!r}.")
            if errors.status == 409:
                etag = admin.read(FILE).etag
    route = next((r for r in routes if r["name"] == name), None)
    if route is None and not errors:
        return admin.redirect(kind.base, f"There is no {kind.what} named {name!r}.", "error")
    return admin.render("route_delete.html", {
        "route": route, "name": name, "what": kind.what, "base": kind.base,
        "etag": etag, "values": values, "errors": errors},
        status=errors.status if errors else 200)

