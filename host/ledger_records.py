"""The records of the ledger (:mod:`host.ledger`, which re-exports them): what a caller
knows before a message is stored, an exchange kept with it, a committed change, and the
collaborators the ledger calls (lanes, the ingest step, the hooks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from host.models import Direction, Message, StatusEvent

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["Change", "Exchange", "IngestStep", "LaneTaker", "MessageHooks", "NewMessage"]


@dataclass(slots=True)
class NewMessage:
    """What a caller knows about a message before it is stored (not frozen: see
    :class:`host.brokers.engine.MoFields`)."""

    direction: Direction
    body: str
    status: str
    broker: str | None = None
    account: str | None = None
    local: str | None = None
    remote: str | None = None
    encoding: str | None = None
    segments: int | None = None
    broker_message_id: str | None = None
    attrs: dict[str, Any] | None = None
    source: str = "system"
    detail: dict[str, Any] | None = None
    route: str | None = None
    exchange: Exchange | None = None  # what the broker sent, kept with the message


@dataclass(frozen=True, slots=True)
class Exchange:
    """An HTTP exchange with a broker kept with its message (``message_exchanges``):
    ``kind`` ``webhook`` (an MO as the broker sent it; no response) or ``mt`` (a send's
    request and the broker's answer). Each side is a JSON object (method, url, status,
    headers, body), bounded and with secrets masked by whoever builds it
    (host.brokers.exchanges)."""

    kind: str
    request: dict[str, Any]
    response: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of a message: stored (``created``, ``old`` None) or its
    status changed from ``old``; ``event`` is the status event it appended."""

    message: Message
    event: StatusEvent
    old: str | None = None
    created: bool = False


class LaneTaker(Protocol):
    """Takes the routing lane of a conversation in the write that stores its MO
    (:class:`host.routing.leases.Leases`)."""

    def claim(self, db: Database, local: str | None, remote: str | None) -> None: ...


class IngestStep(Protocol):
    """Routes an MO in the write that stores it (:class:`host.routing.ingest.Ingest`):
    ``step`` right after :func:`insert` stored it (None: the router's path), then
    ``announce`` after the commit instead of :meth:`Ledger.announce`."""

    def step(self, db: Database, message: Message) -> Any | None: ...

    async def announce(self, stored: Change, entered: Any) -> None: ...


class MessageHooks(Protocol):
    """The hooks the ledger announces through (:class:`host.plugins.Hooks`)."""

    async def message_stored(self, host: Any, message: Message) -> None: ...

    async def message_status_changed(self, host: Any, message: Message, old: str | None,
                                     new: str, event: StatusEvent) -> None: ...
