"""The context a handler script gets: ``handle(ctx)`` (SPEC H3).

The context records what the handler wants (replies, sends, a new destination) and
lets it read the message, custom attributes and per-conversation state. Nothing
happens while the handler runs: smshost carries out the recorded actions after it
returns (so a sync handler in a thread and an async one behave the same, a handler
that fails sends nothing, and ``smshost handler test`` shows the actions without
sending them). A reply or send smshost refuses (no outbound route, opted out...) does
not stop the others: it is stored as a ``failed`` message with the reason, and the
message's routing event lists what each became.

Use in a handler script::

    def handle(ctx):
        if "hours" in ctx.body.lower():
            ctx.reply("We are open 9-17, Monday to Friday.")
        else:
            ctx.route_to("queue", "support")
        ctx.state["messages"] = ctx.state.get("messages", 0) + 1
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from host.models import Message
from host.text import clean


@dataclass(frozen=True, slots=True)
class Reply:
    text: str


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    text: str
    account: str | None = None
    broker: str | None = None


@dataclass(frozen=True, slots=True)
class RouteTo:
    destination: str
    target: str = ""


@dataclass
class Context:
    """What ``handle(ctx)`` receives."""

    message: Message
    handler: str
    attrs: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    actions: list[Reply | Send | RouteTo] = field(default_factory=list)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("smshost.handler"))
    state_saved_at: str | None = None
    """When the conversation's state was last saved (None: it has none yet). A state
    unused for ``purge.days`` is purged (docs/handlers.md)."""

    # -- reading ----------------------------------------------------------------------

    @property
    def body(self) -> str:
        """The text of the message."""
        return self.message.body

    @property
    def ani(self) -> str:
        """The sender's number (E.164 when it is a phone number)."""
        return self.message.remote or ""

    @property
    def dnis(self) -> str:
        """The number that was texted (one of ours)."""
        return self.message.local or ""

    # -- acting -----------------------------------------------------------------------

    # What a handler hands back is text entering smshost: a lone surrogate or NUL
    # becomes U+FFFD (host/text.py), in what is sent, stored and shown alike.

    def reply(self, text: str) -> None:
        """Answer the sender from the number they texted: through the broker and
        account that received the message, whatever the outbound routes say."""
        self.actions.append(Reply(clean(str(text))))

    def send(self, to: str, text: str, *, account: str | None = None,
             broker: str | None = None) -> None:
        """Send a new message to ``to`` through the outbound routes (from ``account``
        and ``broker`` when given, else the message's)."""
        self.actions.append(Send(clean(str(to)), clean(str(text)),
                                 clean(account) if account else account,
                                 clean(broker) if broker else broker))

    def route_to(self, destination: str, target: str = "") -> None:
        """Hand the message to another destination (queue, chat, email, webhook,
        handler), e.g. ``ctx.route_to("queue", "support")``. The last call wins."""
        self.actions = [a for a in self.actions if not isinstance(a, RouteTo)]
        self.actions.append(RouteTo(destination, target))

    # -- what happened ----------------------------------------------------------------

    @property
    def route(self) -> RouteTo | None:
        return next((a for a in self.actions if isinstance(a, RouteTo)), None)

    def describe(self) -> list[str]:
        """The recorded actions, one line each (the dry run prints these)."""
        lines = []
        for action in self.actions:
            if isinstance(action, Reply):
                lines.append(f"reply to {self.ani}: {action.text}")
            elif isinstance(action, Send):
                via = f" from account {action.account}" if action.account else ""
                lines.append(f"send to {action.to}{via}: {action.text}")
            else:
                target = f" {action.target}" if action.target else ""
                lines.append(f"route to {action.destination}{target}")
        return lines
