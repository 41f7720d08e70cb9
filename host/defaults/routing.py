"""Hands every stored inbound message to the router (after its commit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from host.api import hookimpl

if TYPE_CHECKING:
    from host.api import HostAPI, Message


@hookimpl(trylast=True)
def message_stored(host: HostAPI, message: Message) -> None:
    if message.direction == "in" and message.status == "received":
        host.route(message)
