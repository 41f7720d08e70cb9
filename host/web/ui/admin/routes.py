"""Inbound routes: ``/admin/routes`` (issue 15 point 3, SPEC R1-R5).

The ordered list (first match wins) with move up/down, add, edit and delete
(host.web.ui.admin.routes_shared: the default route stays last and cannot be deleted),
each shadowed route's warning beside it (host.routing.shadows), and the route tester
on the same page: a GET form (the result is a link) running the same selection as
``POST /api/routes/test`` on the running routes, with the normalized numbers and why
each earlier route did not match.

With no routes every message goes to email (R3); the page says so, and the first
route added brings the default route (the catch-all, last) with it.
"""

from __future__ import annotations

from typing import Any

from host.config.routes import DESTINATIONS
from host.routing.inbound import select
from host.routing.shadows import inbound_shadows
from host.routing.tester import sample_message
from host.text import clean
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form
from host.web.ui.admin.routes_shared import Data, RouteKind

TYPES = (("body", "Body (the text)"), ("ani", "ANI (the sender's number)"),
         ("dnis", "DNIS (the number texted)"))
MAX_TEST = 2000  # characters of a tested body


def pages() -> list[AdminRoute]:
    return INBOUND.pages()


def _read(admin: Admin, form: Form, route: Data | None, errors: FieldErrors
          ) -> Data | None:
    """The form as the settings of an inbound route (the default route: its name,
    destination and target alone)."""
    data: Data = {"name": form.get("name"), "destination": form.get("destination"),
                  "target": form.get("target") or None}
    if not data["destination"]:
        errors.add("destination", "choose where the messages go")
    if route is None or not route.get("default"):
        kind = form.get("type")
        if kind not in dict(TYPES):
            errors.add("type", f"one of {', '.join(dict(TYPES))}; got {kind!r}")
        data.update(type=kind, pattern=form.raw("pattern"))
    if route is None:
        data["_default"] = {
            "name": "other" if data["name"] == "default" else "default",
            "destination": form.get("default_destination") or "email",
            "target": form.get("default_target") or None, "default": True}
    return data


async def _choices(admin: Admin) -> dict[str, Any]:
    """The destinations and the targets known for each (the configuration's checks
    decide; these are what the form offers)."""
    sinks: dict[str, Any] = {k: dict(v) for k, v in admin.host.settings.sinks.items()}
    queues = [str(q.get("name")) for q in sinks.get("queue", {}).get("queues", [])
              if isinstance(q, dict)]
    groups = [str(g["name"]) for g in await admin.host.people.workgroups()]
    users = [str(u["login"]) for u in await admin.host.people.users()]
    targets = {
        "handler": [str(e["name"]) for e in admin.host.handlers.describe()["loaded"]],
        "queue": sorted({*queues, *groups}) + sorted(users),
        "webhook": sorted(sinks.get("webhook", {}).get("targets", {})),
        "chat": [str(c) for c in sinks.get("chat", {}).get("channels", [])],
    }
    used = {r.destination for r in admin.host.router.routes}
    return {"destinations": [*DESTINATIONS, *sorted(used - set(DESTINATIONS))],
            "targets": targets, "types": TYPES}


async def _extras(admin: Admin, routes: list[Data]) -> dict[str, Any]:
    running = admin.host.router.routes
    shadows = {s.route: s.describe() for s in inbound_shadows(running)}
    return {"shadows": shadows, "tester": _tester(admin)}


def _tester(admin: Admin) -> dict[str, Any]:
    """The route tester's form and result (query parameters ani, dnis, body, region)."""
    query = admin.request.query_params
    values = {k: clean(query.get(k, ""))[:MAX_TEST] for k in ("ani", "dnis", "body")}
    values["region"] = clean(query.get("region", "")).strip()[:2].upper() or "US"
    errors = FieldErrors()
    out: dict[str, Any] = {"typed": values, "errors": errors, "result": None}
    if "ani" not in query:
        return out
    if not values["ani"].strip():
        errors.add("ani", "the sender's number is required")
        return out
    message = sample_message(values["ani"].strip(), values["dnis"].strip(), values["body"],
                             values["region"])
    decision = select(admin.host.router.routes, message)
    out["result"] = {"route": decision.route, "tried": decision.tried,
                     "ani": message.remote, "dnis": message.local}
    return out


INBOUND = RouteKind("inbound", "/admin/routes", "inbound route", _read, _extras, _choices)
