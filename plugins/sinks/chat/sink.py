"""The chat sink: conversations, their state changes and their idle timers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from host.api import Delivery, Sink, from_epoch, to_epoch

from .conversations import (MESSAGES, close_row, conversation_json, join, link_out,
                            list_query, message_json)
from .settings import ChatSettings, Policy, config_problems, policies
from .timers import IdleTimers

if TYPE_CHECKING:
    from host.api import HostAPI, InboundRoute, Message

KIND = "chat"
Key = tuple[str, str]


class ChatSink(Sink):
    """Keeps conversations; knows which (local, remote) pairs have an active one."""

    kind = KIND
    settings_class = ChatSettings

    def __init__(self, host: HostAPI, settings: ChatSettings) -> None:
        super().__init__(host, settings)
        self.settings: ChatSettings = settings
        # Pairs with an active conversation, so an outbound message to anybody else costs
        # nothing. Loaded at start; kept by deliver() and the state changes, the only
        # writers of the state (this node's store has no other writer).
        self._active: set[Key] = set()
        self.clock: Callable[[], float] = time.time  # Unix seconds; tests drive their own
        self.timers = IdleTimers(host, self.policies, lambda: self.clock(), self._changed)

    async def start(self) -> None:
        found = await self.host.store.read(lambda db: list(db.execute(
            "select local, remote from chat_conversations where state != 'closed'")))
        self._active = {(r[0], r[1]) for r in found}
        if self.host.background:  # a CLI command leaves the timers to the server
            self.timers.start()

    async def stop(self) -> None:
        await self.timers.stop()

    def check_target(self, target: str) -> str | None:
        channels = self.settings.channels
        if not target or not channels or target in channels:
            return None
        return f"no chat channel {target!r}; channels: {', '.join(channels)} " \
            "(or leave the target empty)"

    def config_problems(self, settings: Any) -> list[tuple[str, str]]:
        return list(config_problems(self.settings, settings))

    # -- idle policy ----------------------------------------------------------------

    def policies(self) -> tuple[Policy, dict[str, Policy]]:
        """The policy of conversations without a route override, and each overridden
        route's (read afresh: the SMS attributes change live)."""
        return policies(self.settings, self.host.settings.attrs)

    def policy(self, route: str) -> Policy:
        base, routes = self.policies()
        return routes.get(route, base)

    def now(self) -> str:
        return from_epoch(self.clock())

    # -- conversations --------------------------------------------------------------

    async def deliver(self, message: Message, route: InboundRoute) -> Delivery:
        key = (message.local or "", message.remote or "")
        now = self.now()
        conversation, before = await self.host.store.write(
            lambda db: join(db, message, key, route.target, route.name, now))
        delivery = _joined(conversation, key, before, now)
        self.entered(delivery)
        return Delivery.delivered(delivery.detail, **(delivery.data or {}))

    def enter(self, db: Database, message: Message, route: InboundRoute) -> Delivery:
        """:meth:`deliver`'s write in the write that stores the MO (routing at ingest);
        what follows its commit in :meth:`entered`."""
        key = (message.local or "", message.remote or "")
        now = self.now()
        conversation, before = join(db, message, key, route.target, route.name, now)
        return _joined(conversation, key, before, now)

    def entered(self, delivery: Delivery) -> None:
        """After the commit: the pair is active; a new or woken conversation published."""
        if not isinstance(delivery, ChatEntry):
            return
        self._active.add(delivery.key)
        if delivery.before != "open":
            self._publish(delivery.conversation, delivery.key, delivery.before, "open",
                          "opened" if delivery.before is None else "party active",
                          delivery.at)

    def link_outbound(self, message: Message) -> Awaitable[None] | None:
        """Link an outbound message to the active conversation of its pair, if any."""
        key = (message.local or "", message.remote or "")
        if message.direction != "out" or key not in self._active:
            return None
        now = self.now()
        return self.host.store.write(lambda db: link_out(db, message, key, now))

    async def close(self, conversation_id: int, reason: str = "closed") -> bool:
        """Close a conversation (the next SMS of the pair opens a new one); False if it is
        unknown or closed already. The step agent actions use."""
        now = self.now()
        before = await self.host.store.write(
            lambda db: close_row(db, conversation_id, reason, now))
        if before is None:
            return False
        await self._changed(before, "closed", reason)
        return True

    async def _changed(self, before: dict[str, Any], state: str, reason: str) -> None:
        key = (before["local"], before["remote"])
        if state == "closed":
            self._active.discard(key)
        self._publish(int(before["id"]), key, before["state"], state, reason, self.now())

    def _publish(self, conversation: int, key: Key, old: str | None, new: str, reason: str,
                 at: str) -> None:
        self.host.publish({"event": "conversation", "conversation": conversation,
                           "local": key[0], "remote": key[1], "old": old, "new": new,
                           "reason": reason, "at": at})

    # -- reading --------------------------------------------------------------------

    async def find(self, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Conversations newest first; ``filters``: state, local, remote, before."""
        sql, args = list_query(**filters)
        found = await self.host.store.read(lambda db: list(db.query(sql, [*args, limit])))
        known = self.policies()
        return [self._json(r, known) for r in found]

    async def get(self, conversation_id: int) -> dict[str, Any] | None:
        def query(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            found = list(db.query("select * from chat_conversations where id = ?",
                                  [conversation_id]))
            messages = list(db.query(MESSAGES, [conversation_id])) if found else []
            return found, messages

        found, messages = await self.host.store.read(query)
        if not found:
            return None
        return {**self._json(found[0], self.policies()),
                "messages": [message_json(m) for m in messages]}

    @staticmethod
    def _json(row: dict[str, Any], known: tuple[Policy, dict[str, Policy]]) -> dict[str, Any]:
        """A conversation with its idle deadlines under the policy now in force (null:
        none runs)."""
        out = conversation_json(row)
        policy = known[1].get(row["route"], known[0])
        idle_due = disconnect_due = None
        if policy.enable_idle_timeout and row["state"] == "open":
            idle_due = from_epoch(to_epoch(row["party_active_at"]) + policy.party_idle_time)
        if policy.enable_idle_timeout and row["state"] == "idle" and row["idle_at"]:
            disconnect_due = from_epoch(to_epoch(row["idle_at"]) + policy.party_idle_grace_time)
        return {**out, "idle_due": idle_due, "disconnect_due": disconnect_due}


@dataclass(frozen=True, slots=True)
class ChatEntry(Delivery):
    """A conversation joined (:func:`join`): what its commit publishes."""

    conversation: int = 0
    key: Key = ("", "")
    before: str | None = None  # the state before (None: opened now)
    at: str = ""


def _joined(conversation: int, key: Key, before: str | None, at: str) -> ChatEntry:
    return ChatEntry("delivered", f"{'opened' if before is None else 'joined'} conversation "
                     f"{conversation}", None, {"conversation": conversation},
                     conversation=conversation, key=key, before=before, at=at)
