"""The tools of a broker's page (issue 15 point 2): a test message through the broker
and one of its accounts, sent the way ``POST /api/messages`` sends
(host.web.api.send.submit: the same checks and rights), and the conformance kit of
the broker's definition (SPEC B9, the function ``smshost broker test`` runs), run on
demand in a worker thread; its last result per definition is kept by the app while it
runs. The kit runs on the definition's own fixtures and their test secrets: nothing of
this node's configuration goes into it, so none of its secrets can show."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from host.brokers.kit import KitUnavailable
from host.config.edits import brokers
from host.errors import ApiError
from host.models import bounded_int
from host.sends import SendRequest
from host.web.api.send import submit
from host.web.ui.admin.brokers_form import FILE, redisplay
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, admin_route

KITS = "broker_kits"
MAX_TEXT = 1600
TEST_FIELDS = (("phone number", "test.to"), ("to ", "test.to"), ("to:", "test.to"),
               ("account", "test.account"), ("text", "test.text"))
"""A refusal of the send (its message containing this) goes beside this field."""


def pages() -> list[AdminRoute]:
    one = "/admin/brokers/{name}"
    return [admin_route(one + "/test", test_message, need="admin", methods=["POST"]),
            admin_route(one + "/kit", run_kit, need="admin", methods=["POST"])]


@dataclass
class Kits:
    """The last kit result per definition, and the lock that runs one kit at a time
    (each builds a node of its own)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def _kits(admin: Admin) -> Kits:
    state = admin.request.app.state
    if not hasattr(state, KITS):
        setattr(state, KITS, Kits())
    kits: Kits = getattr(state, KITS)
    return kits


def context(admin: Admin, broker: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of the tools: the message just sent, the last kit run."""
    sent = bounded_int(admin.request.query_params.get("sent", ""))
    return {"sent": sent, "kit": _kits(admin).results.get(broker["definition"])}


async def test_message(admin: Admin) -> Response:
    from host.web.ui.admin.broker_page import render_page
    name = admin.request.path_params["name"]
    form = await admin.form()
    errors = FieldErrors()
    to, text, account = form.get("test.to"), form.raw("test.text"), form.get("test.account")
    if not to:
        errors.add("test.to", "the number to send to is required")
    if not text.strip():
        errors.add("test.text", "the text is required")
    elif len(text) > MAX_TEXT:
        errors.add("test.text", f"at most {MAX_TEXT} characters")
    if not errors:
        send = SendRequest(to=to, text=text, broker=name, account=account or None,
                           source="admin")
        try:
            queued = await submit(admin.host, admin.caller, send)
        except ApiError as exc:
            errors.absorb(exc, lambda message: next(
                (field for part, field in TEST_FIELDS if part in message), None))
        else:
            return admin.redirect(f"/admin/brokers/{name}?sent={queued.messages[0].id}#test",
                                  f"Test message {queued.messages[0].id} queued.")
    return render_page(admin, name, errors, redisplay(form))


async def run_kit(admin: Admin) -> Response:
    from host.web.ui.admin.broker_page import render_page
    name = admin.request.path_params["name"]
    await admin.form()  # read (the CSRF token was checked before)
    definition = str(brokers.one(admin.read(FILE).doc, name)["definition"])  # 404: none
    kits = _kits(admin)
    errors = FieldErrors()
    async with kits.lock:
        try:
            path, results = await asyncio.to_thread(admin.host.broker_kit, definition)
        except KitUnavailable as exc:
            errors.add(None, f"The conformance kit cannot run: {exc}")
            return render_page(admin, name, errors)
    kits.results[definition] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "file": path.name,
        "results": [{"kind": r.kind, "name": r.name, "ok": r.ok, "problems": r.problems}
                    for r in results],
        "failed": sum(1 for r in results if not r.ok), "total": len(results)}
    failed = kits.results[definition]["failed"]
    return admin.redirect(f"/admin/brokers/{name}#kit",
                          f"Conformance kit of {definition}: {len(results) - failed} passed, "
                          f"{failed} failed.", "error" if failed else "ok")

