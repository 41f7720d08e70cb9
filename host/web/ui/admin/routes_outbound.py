"""Outbound routes: ``/admin/outbound`` (issue 15 point 3, SPEC O2, O3, O9).

The ordered list (first match of the destination number, whole) with move up/down,
add, edit and delete (host.web.ui.admin.routes_shared), each route's pattern, the
formatted number (``$0`` the whole number, ``$1``.. its groups), broker and account
(chosen from the configured ones) and the classifications allowed to use it; and the
``$n`` preview on the same page: a sample number (and classification) run through
the send path's own selection (host.routing.outbound.select_outbound) on the running
routes, answering the route, the number it sends to and why earlier routes did not
match.
"""

from __future__ import annotations

from typing import Any

from host.routing.outbound import RouteRefused, compile_outbound, select_outbound
from host.routing.shadows import outbound_shadows
from host.text import clean
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form
from host.web.ui.admin.routes_shared import Data, RouteKind

MAX_NUMBER = 64


def pages() -> list[AdminRoute]:
    return OUTBOUND.pages()


def _read(admin: Admin, form: Form, route: Data | None, errors: FieldErrors
          ) -> Data | None:
    """The form as the settings of an outbound route; a broker or account that is not
    configured is refused beside its field."""
    brokers = _brokers(admin)
    broker, account = form.get("broker") or None, form.get("account") or None
    if broker is not None and broker not in brokers:
        errors.add("broker", f"no broker instance named {broker!r}; brokers: "
                   f"{', '.join(brokers) or 'none'}")
    if account is not None:
        known = brokers.get(broker, []) if broker else sorted(
            {a for accounts in brokers.values() for a in accounts})
        if account not in known:
            errors.add("account", f"no account {account!r}"
                       + (f" at broker {broker!r}" if broker else "")
                       + f"; accounts: {', '.join(known) or 'none'}")
    classes = [c.strip() for c in form.get("classifications").split(",") if c.strip()]
    return {"name": form.get("name"), "pattern": form.raw("pattern"),
            "format": form.get("format") or "$0", "broker": broker, "account": account,
            "classifications": classes}


def _brokers(admin: Admin) -> dict[str, list[str]]:
    """Each configured broker instance and its account ids."""
    return {b.name: [a.id for a in b.accounts] for b in admin.host.settings.brokers}


async def _choices(admin: Admin) -> dict[str, Any]:
    return {"brokers": _brokers(admin)}


async def _extras(admin: Admin, routes: list[Data]) -> dict[str, Any]:
    running = compile_outbound(admin.host.settings.outbound)
    shadows = {s.route: s.describe("outbound route") for s in outbound_shadows(running)}
    return {"shadows": shadows, "preview": _preview(admin, running)}


def _preview(admin: Admin, running: list[Any]) -> dict[str, Any]:
    """The ``$n`` preview (query parameters to and classification)."""
    query = admin.request.query_params
    values = {k: clean(query.get(k, "")).strip()[:MAX_NUMBER]
              for k in ("to", "classification")}
    errors = FieldErrors()
    out: dict[str, Any] = {"typed": values, "errors": errors, "result": None,
                           "refused": None}
    if "to" not in query:
        return out
    if not values["to"]:
        errors.add("to", "the number to send to is required")
        return out
    try:
        out["result"] = select_outbound(running, values["to"],
                                        values["classification"] or None)
    except RouteRefused as exc:
        out["refused"] = str(exc)
    return out


OUTBOUND = RouteKind("outbound", "/admin/outbound", "outbound route", _read, _extras,
                     _choices)
