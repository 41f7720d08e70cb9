"""Sends refused where nobody is there to be told (SPEC H3, R6, S1, S2).

A handler's reply or send, a sink's reply, an opt-out confirmation: when smshost
refuses such a send at acceptance (no outbound route, the recipient opted out, no
account can send, an invalid number, an empty text...), there is no HTTP caller to
answer. It is stored as an outbound message with status ``failed``, the reason in its
history and in ``attrs.error`` / ``attrs.error_code``, so it shows where sends show
(``GET /api/messages?status=failed``, the message's history, the event stream, the
webhook sink's status target, a chat conversation). Every refusal, the API's too, is
counted in ``smshost_sends_refused{source, reason}``; the API answers its caller with
the error and stores nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from host.ledger import NewMessage
from host.optout import OptedOut
from host.sends import Queued, SendError, SendRequest

if TYPE_CHECKING:
    from host.models import Message


class Adds(Protocol):
    """Stores and announces a new message (:class:`host.ledger.Ledger`)."""

    async def add(self, new: NewMessage) -> tuple[Message, bool]: ...


def refusal_code(exc: SendError | OptedOut) -> str:
    """The reason code of a refusal, as the API names it (``no_route``, ``opted_out``)."""
    return "opted_out" if isinstance(exc, OptedOut) else exc.code


async def record_refusal(ledger: Adds, request: SendRequest, exc: SendError | OptedOut
                         ) -> Queued:
    """Store ``request``, refused by ``exc``, as a failed message (announced like any
    stored message); the result names it, with the reason code in ``error``."""
    code, reason = refusal_code(exc), str(exc)
    inbound = request.reply_to
    message, _ = await ledger.add(NewMessage(
        direction="out", body=request.text, status="failed",
        broker=request.broker or (inbound.broker if inbound else None),
        account=request.account or (inbound.account if inbound else None),
        local=inbound.local if inbound else None, remote=request.to,
        attrs={**request.attrs, "error": reason, "error_code": code},
        source=request.source, detail={"error": reason, "error_code": code}))
    return Queued([message], "", 0, error=code)
