"""The simulator's phones: the far end of the ``simulator`` broker (SPEC B4).

* ``POST /simulator/phone``: the simulator broker's MT endpoint. The message lands in
  the phone inbox and a delivery receipt comes back shortly after, through the broker's
  receipt webhook path, exactly as a real broker's would.
* ``GET /api/simulator/inbox``: what the phones received, newest first (``?number=`` to
  filter, ``?limit=`` up to 500, 200 by default).
* ``POST /api/simulator/mo``: a phone sends an SMS: ``{"from", "to", "text"}``. It goes
  through the simulator broker's MO webhook handling and is stored like any MO.

Only served when a broker instance uses the ``simulator`` definition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlite_utils import Database, Migrations
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.api import (ApiError, ApiRoute, BrokerInstance, InboundRequest, hookimpl, int_param,
                      json_body, known_params, utcnow)

if TYPE_CHECKING:
    from host.api import HostAPI

log = logging.getLogger("smshost.simulator")
RECEIPT_DELAY = 0.05
INBOX_PARAMS = ("number", "limit")
INBOX_LIMIT, MAX_INBOX_LIMIT = 200, 500  # messages of the inbox listed: default, most
migrations = Migrations("smshost-simulator")
_pending: set[asyncio.Task[None]] = set()


@migrations()
def m001_inbox(db: Database) -> None:
    db.execute("""
        create table simulator_inbox (
            id text primary key,
            broker text not null,
            ref text,
            sender text,
            recipient text not null,
            text text not null,
            received_at text not null
        )""")
    db.execute("create index simulator_inbox_recipient on simulator_inbox (recipient, received_at)")
    db.execute("create index simulator_inbox_received on simulator_inbox (received_at)")


@hookimpl
def register_migrations(register: Any) -> None:
    register(migrations)


def simulator_instances(host: HostAPI) -> list[BrokerInstance]:
    """The broker instances that use the simulator definition."""
    return [i for i in host.brokers.values() if i.definition.name == "simulator"]


@hookimpl
def register_routes(host: HostAPI, register: Any) -> None:
    # Always: a simulator broker added while the node runs (the admin's brokers page,
    # /api/config/brokers) needs its phone at once; without one the phone answers 404.
    # The phone is called by the host's own sender, as a broker's API would be.
    register("webhook", [Route("/simulator/phone", _phone, methods=["POST"])])
    # The phone's inbox is read like messages; injecting an MO fakes inbound traffic.
    register("api", [ApiRoute("/api/simulator/inbox", _inbox, methods=["GET"], auth="read"),
                     ApiRoute("/api/simulator/mo", _inject, methods=["POST"], auth="admin")])


@hookimpl(trylast=True)
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    return await host.store.purge_table(
        "simulator_inbox", "received_at", cutoff, batch_size=batch_size,
        pause=host.settings.purge.pause_ms / 1000, dry_run=dry_run)


async def _phone(request: Request) -> Response:
    host: HostAPI = request.app.state.host
    if not simulator_instances(host):
        raise ApiError(404, "not_found", "no broker instance uses the simulator definition")
    body = await json_body(request)
    to, text = body.required_text("to"), body.required_text("text", empty=True)
    ref, sender, callback = body.text("ref"), body.text("from"), body.text("callback") or ""
    status = body.text("status") or "delivered"
    sim_id = "SIM" + uuid.uuid4().hex[:20]
    instance = _by_receipt_path(host, urlsplit(callback).path) if callback else None
    broker = instance.name if instance else "simulator"
    await host.store.write(lambda db: db.execute(
        "insert into simulator_inbox values (?, ?, ?, ?, ?, ?, ?)",
        [sim_id, broker, ref, sender, to, text, utcnow()]))
    if instance is not None:
        task = asyncio.create_task(_send_receipt(host, instance, sim_id, status))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
    return JSONResponse({"id": sim_id}, status_code=201)


def _by_receipt_path(host: HostAPI, path: str) -> BrokerInstance | None:
    return next((i for i in simulator_instances(host) if i.receipt_path == path), None)


async def _send_receipt(host: HostAPI, instance: BrokerInstance, sim_id: str, status: str) -> None:
    await asyncio.sleep(RECEIPT_DELAY)
    inbound = InboundRequest("POST", instance.broker.broker_values["receipt_url"],
                             {"content-type": "application/json"},
                             json.dumps({"id": sim_id, "status": status}).encode())
    try:
        await host.broker_webhook(instance.name, instance.receipt_path or "", inbound)
    except Exception:  # noqa: BLE001 - a lost simulated receipt is logged, not raised
        log.exception("simulated receipt for %s failed", sim_id)


async def _inbox(request: Request) -> Response:
    host: HostAPI = request.app.state.host
    params = request.query_params
    known_params(params, INBOX_PARAMS)
    limit = int_param(params, "limit", INBOX_LIMIT, 1, MAX_INBOX_LIMIT) or INBOX_LIMIT
    number = params.get("number")
    sql = "select * from simulator_inbox"
    args: list[Any] = []
    if number:
        sql += " where recipient = ?"
        args.append(number)
    sql += " order by received_at desc, rowid desc limit ?"
    rows = await host.store.read(lambda db: list(db.query(sql, [*args, limit])))
    return JSONResponse({"messages": [
        {"id": r["id"], "broker": r["broker"], "ref": r["ref"], "from": r["sender"],
         "to": r["recipient"], "text": r["text"], "received_at": r["received_at"]}
        for r in rows]})


async def _inject(request: Request) -> Response:
    body = await json_body(request)
    sent = await send_mo(request.app.state.host, body.text("from"), body.text("to"),
                         body.text("text") or "", body.text("broker"))
    return JSONResponse(sent, status_code=201)


async def send_mo(host: HostAPI, sender: str | None, to: str | None, text: str,
                  broker: str | None = None) -> dict[str, Any]:
    """A phone texts the server: the MO goes through simulator broker ``broker``'s (the
    first one by default) MO webhook handling and is stored like any MO. Answers the
    stored message's id, the broker and the simulated broker id (``POST
    /api/simulator/mo``, the admin's simulator page)."""
    instances = simulator_instances(host)
    instance = next((i for i in instances if i.name == broker), None) if broker else \
        next(iter(instances), None)
    if instance is None:
        raise ApiError(404, "not_found", f"no simulator broker named {broker!r}" if broker
                       else "no broker instance uses the simulator definition")
    if sender is None or not sender.strip():
        raise ApiError(400, "bad_parameter", "from (the phone's number) is required")
    sim_id = "SIM" + uuid.uuid4().hex[:20]
    payload = {"id": sim_id, "from": sender, "text": text}
    if to:
        payload["to"] = to
    inbound = InboundRequest("POST", instance.broker.broker_values["mo_url"],
                             {"content-type": "application/json"}, json.dumps(payload).encode())
    response = await host.broker_webhook(instance.name, instance.mo_path or "", inbound)
    if response.status_code != 200:
        retry = response.headers.get("retry-after")  # the database refused it: as told
        raise ApiError(response.status_code, "refused", bytes(response.body).decode(),
                       headers={"Retry-After": retry} if retry else None)
    rows = await host.store.read(lambda db: list(db.query(
        "select id from messages where broker = ? and broker_message_id = ?",
        [instance.name, sim_id])))
    return {"id": rows[0]["id"] if rows else None, "broker": instance.name,
            "broker_message_id": sim_id}
