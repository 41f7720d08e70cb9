"""Sending: POST /api/messages (O1), POST /api/segments (O4), GET /api/events (O8)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from host.encoding import EncodingError, describe
from host.errors import ApiError
from host.events import stored_after
from host.models import bounded_int, from_epoch
from host.optout import OptedOut
from host.schedule import parse_send_at
from host.rights import (Caller, Refused, caller_of, check_account, check_send_as,
                         classification_for)
from host.sends import Queued, SendError, SendRequest
from host.web.bodies import Body, json_body, parse_object
from host.web.context import WebHost
from host.web.routes import GRANTED

KEEPALIVE = 15.0
_FIELDS = {"to", "text", "body", "broker", "account", "workgroup", "user", "classification",
           "metadata", "send_at", "status_callback"}


def _request(body: Body, key: str | None) -> SendRequest:
    body.only(_FIELDS)
    to = body.required_text("to")
    text = body.required_text("body" if "text" not in body and "body" in body else "text")
    if key is not None and not 0 < len(key) <= 200:
        raise ApiError(400, "bad_parameter", "Idempotency-Key must be 1 to 200 characters")
    metadata = body.object("metadata")
    if "dlr" in metadata:  # a compatible API's callback (host.compat): not a caller's to set
        raise ApiError(400, "bad_parameter", "metadata.dlr is reserved (the status callback "
                       "of Kannel's and Jasmin's send APIs); use another name")
    return SendRequest(to=to, text=text, broker=body.text("broker"),
                       account=body.text("account"), attrs=metadata,
                       workgroup=body.text("workgroup"), user=body.text("user"),
                       classification=body.text("classification"), idempotency_key=key,
                       send_at=_send_at(body), status_callback=body.text("status_callback"))


def _send_at(body: Body) -> float | None:
    raw = body.text("send_at")
    if raw is None:
        return None
    try:
        return parse_send_at(raw)
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", f"send_at: {exc}") from None


async def _authorized(host: WebHost, caller: Caller, send: SendRequest) -> SendRequest:
    """``send`` as ``caller`` may make it: its classification one the caller holds (or
    none: the route is then chosen with the caller's), as a workgroup or user only when
    the caller may (host.rights); 403 otherwise."""
    try:
        classification = classification_for(caller, send.classification)
        if send.workgroup is not None or send.user is not None:
            groups: list[str] = []
            if send.workgroup is not None and caller.user is not None:
                groups = (await host.people.user(caller.user))["workgroups"]
            check_send_as(caller, send.workgroup, send.user, groups)
        if (send.broker is not None or send.account is not None) and caller.user:
            check_account(caller, send.broker, send.account, await _own(host, caller.user))
    except Refused as exc:
        host.metrics.send_refused(send.source, exc.code)
        raise ApiError(exc.status, exc.code, str(exc)) from None
    return replace(send, classification=classification, held=caller.classifications,
                   by=caller.user)


async def _own(host: WebHost, login: str) -> list[tuple[str | None, str]]:
    """The (broker, account) pairs user ``login`` sends from: its own sender's and its
    workgroups' (host.people)."""
    groups = (await host.people.user(login))["workgroups"]
    found = [host.people.sender_for("user", login)]
    found += [host.people.sender_for("workgroup", group) for group in groups]
    return [pair for pair in found if pair is not None and pair[1]]


async def submit(host: WebHost, caller: Caller, send: SendRequest) -> Queued:
    """Send ``send`` as ``caller`` may (host.rights): the path of ``POST /api/messages``
    and of the admin's test message. ApiError when refused (403, 409 opted out, the
    send's own status)."""
    send = await _authorized(host, caller, send)
    try:
        return await host.send(send)
    except OptedOut as exc:
        raise ApiError(409, "opted_out", str(exc)) from None
    except SendError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None


async def send_message(request: Request) -> Response:
    """Send an SMS: stored as queued (with its outbox entry) before the answer, then
    sent by the outbox through its broker. ``Idempotency-Key``: a retry answers the
    first request's messages (200, ``replayed``) and sends nothing new."""
    return await accept(request.app.state.host, request.scope[GRANTED],
                        await request.body(), request.headers.get("idempotency-key"))


async def accept(host: WebHost, granted: dict[str, Any], raw: bytes,
                 key: str | None) -> JSONResponse:
    """``POST /api/messages`` once its caller proved ``granted`` (with the send right):
    the body ``raw`` parsed, checked and submitted, and the answer. ApiError when
    refused. The ASGI route and the fast path (host.web.api.fastsend) both run this."""
    send = _request(Body(parse_object(raw)), key)
    queued = await submit(host, caller_of(granted), send)
    first = queued.messages[0]
    body = {"id": first.id, "ids": [m.id for m in queued.messages], "status": first.status,
            "encoding": queued.encoding, "segments": queued.segments, "route": queued.route,
            "broker": first.broker, "account": first.account, "from": first.local,
            "to": first.remote, "replayed": queued.replayed,
            "consolidated": queued.consolidated}
    if first.status == "scheduled" and send.send_at is not None:
        body["send_at"] = from_epoch(send.send_at)
    return JSONResponse(body, status_code=200 if queued.replayed else 201)


async def segments(request: Request) -> Response:
    """How a text would be sent: its encoding, segments and the units left in the last
    one (for a composing UI); nothing is sent."""
    body = await json_body(request)
    text = body.required_text("text", empty=True)
    try:
        return JSONResponse(describe(text, body.text("encoding")))
    except EncodingError as exc:
        raise ApiError(400, "bad_parameter", str(exc)) from None


def _last_event_id(request: Request) -> int | None:
    """The stored event id a reconnecting client saw last (None: none, or not one of
    ours, e.g. the ``message-at`` ids of earlier versions)."""
    raw = request.headers.get("last-event-id", "").strip()
    return bounded_int(raw)


def _status(event: dict[str, Any]) -> bytes:
    return f"id: {event['id']}\nevent: status\ndata: {json.dumps(event)}\n\n".encode()


def _named(event: dict[str, Any]) -> bytes:
    data = {k: v for k, v in event.items() if k != "event"}
    return f"event: {event['event']}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: Request) -> Response:
    """Server-Sent Events of status changes; with Last-Event-ID, the stored events after
    it first (at most ``api.events_replay``, the newest), then the live ones."""
    host: WebHost = request.app.state.host
    last_id = _last_event_id(request)
    sub = host.events.subscribe()  # before the replay's read: nothing falls between

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            seen = 0
            if last_id is not None:
                limit = host.settings.api.events_replay
                rows, left_out, seen = await host.store.read(
                    lambda db: stored_after(db, last_id, limit))
                if left_out:
                    yield f"event: dropped\ndata: {left_out}\n\n".encode()
                for row in rows:
                    yield _status(row)
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if sub.dropped:
                    yield f"event: dropped\ndata: {sub.dropped}\n\n".encode()
                    sub.dropped = 0
                if "event" in event:  # a plugin's named event (not stored, not replayed)
                    yield _named(event)
                elif event["id"] > seen:  # not replayed already
                    yield _status(event)
        finally:
            host.events.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
