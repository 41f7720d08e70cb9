"""Hands every stored inbound message to the router (after its commit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from host import hookimpl

if TYPE_CHECKING:
    from host.core import Host
    from host.models import Message


@hookimpl(trylast=True)
def message_stored(host: Host, message: Message) -> None:
    if message.direction == "in" and message.status == "received":
        host.router.submit(message.id, message.local, message.remote)
