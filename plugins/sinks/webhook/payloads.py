"""What the webhook sink sends: the JSON body and its signature (``sign``: the
host's, :func:`host.api.signature`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from host.api import signature as sign  # one scheme with the status callbacks (host)

__all__ = ["build_payload", "sign"]

if TYPE_CHECKING:
    from host.api import InboundRoute as Route
    from host.api import Message


def build_payload(message: Message, route: Route, target: str, queued_at: str) -> dict[str, Any]:
    """The JSON body, without ``delivery_id`` (added when it is sent)."""
    inbound = message.direction == "in"
    return {
        "event": "message.inbound" if inbound else "message.outbound",
        "message": {
            "id": message.id,
            "direction": message.direction,
            "from": message.remote if inbound else message.local,
            "to": message.local if inbound else message.remote,
            "body": message.body,
            "broker": message.broker,
            "account": message.account,
            "broker_message_id": message.broker_message_id,
            "encoding": message.encoding,
            "segments": message.segments,
            "created_at": message.created_at,
            "attrs": message.attrs,
        },
        "route": {"name": route.name, "target": target, "type": route.type,
                  "pattern": route.pattern, "default": route.default},
        "queued_at": queued_at,
    }
