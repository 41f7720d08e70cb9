"""Cancelling a send: ``DELETE /api/messages/{id}`` and ``POST /api/messages/{id}/cancel``
(issue 16 point 2; the rule is :mod:`host.schedule`'s).

A caller with the send right may cancel; a user (its session or its token) only the
messages it sent, unless it is an admin. Integrations and the configured token may
cancel any. 200 with the message, now ``cancelled``; 409 with its status when a broker
has it or had its turn (``sending``, ``sent``, ``delivered``...); 404 when there is no
such outbound message, or it is another user's.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.errors import ApiError
from host.rights import Caller, caller_of
from host.schedule import CANCELLABLE, cancel
from host.web.context import WebHost
from host.web.params import path_id
from host.web.routes import GRANTED


def _may(caller: Caller) -> Callable[[str | None], bool]:
    """Whether ``caller`` may cancel a message sent by user ``owner`` (None: not a
    user's)."""
    def may(owner: str | None) -> bool:
        if caller.user is None or "admin" in caller.rights:
            return True
        return owner is not None and owner.lower() == caller.user.lower()
    return may


async def cancel_message(request: Request) -> Response:
    host: WebHost = request.app.state.host
    message_id = path_id(request, "message_id", "message")
    caller = caller_of(request.scope[GRANTED])
    done = await host.store.write(lambda db: cancel(db, message_id, caller.who,
                                                    _may(caller)))
    if not done.changes:
        if done.status is None or not _may(caller)(done.owner):
            raise ApiError(404, "not_found", f"no outbound message with id {message_id}"
                           + ("" if done.status is None else " sent by " + caller.who))
        return JSONResponse({
            "error": "not_cancellable", "status": done.status,
            "message": f"message {message_id} is {done.status}: only a message waiting "
            f"in the outbox ({' or '.join(CANCELLABLE)}, not being sent) can be "
            "cancelled"}, status_code=409)
    await host.ledger.announce(done.changes)
    message = done.changes[0].message.to_json()
    message["cancelled"] = [c.message.id for c in done.changes]
    return JSONResponse(message)
