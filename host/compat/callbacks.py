"""What the status callbacks of the compatible send APIs (a Kannel or Jasmin ``dlr-url``)
ask for: a send through host.compat.kannel or host.compat.jasmin stores what its
callback needs in the message's ``attrs.dlr`` (its kind, URL template, mask or level,
method); no other send pays anything. When such a message's status changes, the
requests the change asks for (:func:`calls_for`) are written to the one callback queue
(host.callbacks: table ``callback_deliveries``, kinds ``kannel`` and ``jasmin``) in the
change's own transaction, and its worker sends them with retries: an answer 2xx is
delivered; a network error, a timeout, a 429 or a 5xx is tried again after
``compat.callback_first_delay`` seconds, doubled each time up to
``compat.callback_max_delay`` (a Retry-After honoured within it), at most
``compat.callback_attempts`` times; any other answer, or the last attempt failed, is a
dead letter (``GET /api/callbacks?status=dead``, replayed by
``POST /api/callbacks/{id}/replay``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.models import Message, StatusEvent


@dataclass(frozen=True, slots=True)
class Call:
    """One callback request: GET ``url``, or POST ``body`` (form-encoded) to it;
    ``kind`` is the gateway whose format it is (``kannel`` or ``jasmin``)."""

    method: str
    url: str
    body: str | None = None
    kind: str = "kannel"


def calls_for(message: Message, old: str | None, new: str, event: StatusEvent) -> list[Call]:
    """The callbacks a change of ``message`` to ``new`` asks for: its own ``attrs.dlr``
    and those of the sends consolidated into it (``attrs.merged``)."""
    from host.compat import jasmin, kannel

    asked: list[Any] = [message.attrs.get("dlr")]
    asked += [m.get("dlr") for m in message.attrs.get("merged", ()) if isinstance(m, dict)]
    calls: list[Call] = []
    for dlr in asked:
        if not isinstance(dlr, dict):
            continue
        if dlr.get("kind") == "kannel":
            calls += kannel.dlr_calls(dlr, message, old, new, event)
        elif dlr.get("kind") == "jasmin":
            calls += jasmin.dlr_calls(dlr, message, old, new, event)
    return calls
