"""The chat sink: one conversation per (our number, the party's number) (SPEC S2).

A route with ``destination = "chat"`` sends SMS here. An SMS joins the conversation
already open between its local address (the number texted) and its remote number (the
sender); when there is none, it opens a new one. Outbound messages between the same two
numbers while the conversation is open (replies, e.g. ``host.outbound.reply``) are
linked to it too, so a conversation reads both ways.

The route's ``target`` is optional: a **channel** label stored on the conversations the
route opens (e.g. "sales"), for filtering and, later, for agents. When
``[chat] channels`` lists labels, a route naming another one is a configuration problem.

Idle handling (EnableIdleTimeout, PartyIdleTime, PartyIdleGraceTime; :mod:`.timers`):
a conversation whose texter is silent for the idle time becomes ``idle``, and one idle
for the grace time is closed; the values come from ``[chat]``, the SMS attributes and
route overrides (:mod:`.settings`). States::

    open --no SMS from the party for PartyIdleTime--> idle
    idle --an SMS from the party--> open
    open|idle --PartyIdleGraceTime when idle / agent disconnect / close()--> closed

Any state but closed is "active": the next SMS of the pair joins it. Every change is
published on ``GET /api/events`` (``event: conversation``). See docs/sinks-queue-chat.md.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from host.api import ApiRoute, hookimpl

from .routes import get_conversation, list_conversations
from .sink import KIND, ChatSink
from .tables import migrations

if TYPE_CHECKING:
    from host.api import HostAPI, Message

__all__ = ["ChatSink", "KIND"]


@hookimpl
def register_sinks(register: Any) -> None:
    register(ChatSink)


@hookimpl
def register_migrations(register: Any) -> None:
    register(migrations)


@hookimpl
def register_routes(register: Any) -> None:
    register("api", [ApiRoute("/api/conversations", list_conversations, methods=["GET"],
                              auth="read"),
                     ApiRoute("/api/conversations/{conversation_id}", get_conversation,
                              methods=["GET"], auth="read")])


@hookimpl
def message_stored(host: HostAPI, message: Message) -> Awaitable[None] | None:
    # Synchronous for every MO and for MTs to numbers without an active conversation:
    # nothing to await on the hot path.
    sink = host.sink(KIND)
    return sink.link_outbound(message) if isinstance(sink, ChatSink) else None


@hookimpl
def messages_kept(host: HostAPI) -> str:
    """The messages of every conversation not closed: the agent's view of it."""
    return ("select l.message_id from chat_messages l join chat_conversations c "
            "on c.id = l.conversation_id where c.closed_at is null")


@hookimpl
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    """Conversations closed before the cutoff, with their message links (the messages
    themselves are the core's); active ones are kept however old (SPEC P5)."""
    return await host.store.purge_table(
        "chat_conversations", "closed_at", cutoff, batch_size=batch_size,
        pause=host.settings.purge.pause_ms / 1000, dry_run=dry_run,
        children=[("chat_messages", "conversation_id")])
