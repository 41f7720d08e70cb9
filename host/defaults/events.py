"""Publishes every committed status change to the host's event stream (SSE)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from host.api import hookimpl

if TYPE_CHECKING:
    from host.api import HostAPI, Message, StatusEvent


@hookimpl(trylast=True)
def message_status_changed(host: HostAPI, message: Message, old: str | None, new: str,
                           event: StatusEvent) -> None:
    host.publish({
        "id": event.id, "message_id": message.id, "direction": message.direction,
        "broker": message.broker, "local": message.local, "remote": message.remote,
        "old": old, "new": new, "at": event.at, "source": event.source,
        "detail": event.detail,
    })
