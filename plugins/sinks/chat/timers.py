"""The idle timers of the chat sink (SPEC S2: EnableIdleTimeout, PartyIdleTime,
PartyIdleGraceTime).

Nothing is held in memory: each tick reads the conversations whose deadline has passed
from their stored times (``party_active_at`` for open ones, ``idle_at`` for idle ones),
so a restart or a sink built by a live change resumes them where they were. A tick
moves at most ``BATCH`` conversations per policy and timer; when a batch was full, the
next tick comes at once. Each move is a conditional update (still open since that
SMS, still idle since then), so two ticks never move one conversation twice.

After its move, a conversation's text (idle_text, disconnect_text; none by default)
goes to the texter as a reply to its last SMS, through the account it came in on; a
refused one is stored ``failed`` with the reason. A crash between the move and the
send leaves the text unsent (at most once: a duplicate costs the texter money).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from host.api import from_epoch

from .conversations import BATCH, close_row, due, last_inbound, link, make_idle
from .settings import Policy

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.api import HostAPI

log = logging.getLogger("smshost.chat")
PERIOD = 5.0  # seconds between two ticks at most (a deadline is met within this)
Changed = Callable[[dict[str, Any], str, str], Awaitable[None]]


class IdleTimers:
    """Moves conversations open → idle → closed on ``clock`` (Unix seconds)."""

    def __init__(self, host: HostAPI, policies: Callable[[], tuple[Policy, dict[str, Policy]]],
                 clock: Callable[[], float], changed: Changed) -> None:
        self._host = host
        self._policies = policies
        self._clock = clock
        self._changed = changed  # (row before, new state, reason): the sink's bookkeeping
        self._lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="smshost-chat-idle")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def _run(self) -> None:
        while True:
            try:
                more = await self.tick()
            # A failing tick (the database refusing, ...) is logged; the next one retries.
            except Exception:  # noqa: BLE001
                log.exception("chat: the idle timers' tick failed")
                more = False
            await asyncio.sleep(0 if more else PERIOD)

    async def tick(self) -> bool:
        """Move the conversations whose deadline has passed; True when a batch was full
        (more are due)."""
        async with self._lock:
            base, routes = self._policies()
            groups = [(base, list(routes), False)] + [(p, [n], True) for n, p in routes.items()]
            full = False
            for policy, names, overridden in groups:
                if policy.enable_idle_timeout:
                    full |= await self._idle(policy, names, overridden)
                    full |= await self._disconnect(policy, names, overridden)
            return full

    async def _idle(self, policy: Policy, names: list[str], overridden: bool) -> bool:
        cutoff = from_epoch(self._clock() - policy.party_idle_time)
        found = await self._host.store.read(
            lambda db: due(db, "open", cutoff, names, overridden))
        for row in found:
            await self._move(row, policy, "idle")
        return len(found) >= BATCH

    async def _disconnect(self, policy: Policy, names: list[str], overridden: bool) -> bool:
        cutoff = from_epoch(self._clock() - policy.party_idle_grace_time)
        found = await self._host.store.read(
            lambda db: due(db, "idle", cutoff, names, overridden))
        for row in found:
            await self._move(row, policy, "disconnect")
        return len(found) >= BATCH

    async def _move(self, row: dict[str, Any], policy: Policy, which: str) -> None:
        """Make ``row`` idle or close it (unless the texter wrote or it moved since it
        was read); then its text."""
        stamp = from_epoch(self._clock())

        def write(db: Database) -> dict[str, Any] | None:
            if which == "idle":
                return make_idle(db, row["id"], row["party_active_at"], stamp)
            return close_row(db, row["id"], "idle timeout", stamp, row["idle_at"])

        before = await self._host.store.write(write)
        if before is not None:
            await self._changed(before, "idle" if which == "idle" else "closed",
                                "party idle" if which == "idle" else "idle timeout")
            await self._notify(before, policy, which)

    async def _notify(self, row: dict[str, Any], policy: Policy, which: str) -> None:
        """Send the idle or disconnect text, if any, and link it to the conversation."""
        text = policy.text(which, row["local"], row["channel"])
        if not text:
            return
        conversation = int(row["id"])
        last = await self._host.store.read(lambda db: last_inbound(db, conversation))
        message = await self._host.messages.get(last) if last is not None else None
        if message is None:  # its SMS were purged: nothing to answer through
            log.warning("chat: conversation %d has no SMS left to answer; its %s text is "
                        "not sent", conversation, which)
            return
        sent = await self._host.reply(message, text, source="chat")
        stamp = from_epoch(self._clock())
        await self._host.store.write(
            lambda db: link(db, sent.id, conversation, sent.created_at, stamp))
