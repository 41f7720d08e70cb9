"""The queue sink: SMS become interactions of user and workgroup queues, which ACD
offers to agents (SPEC S1; docs/agent-desk.md).

Every change runs through :meth:`QueueSink.run`: one store write holding one
:class:`~.tx.Tx`, whose feed rows are committed with it; after the commit the live
streams and the scheduler are woken. The scheduler (:class:`~.timers.Scheduler`) ticks
at the next stored deadline; its clock, :attr:`QueueSink.clock`, is injectable (tests
set a fake one and call :meth:`tick`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlite_utils import Database

from host.api import Delivery, Message, SendError, SendRequest, Sink

from . import acd, actions, agents, directory, report_metrics, rows
from .feed import Notifier
from .notices import Notices
from .settings import QueueDefinition, QueueSettings
from .timers import Scheduler
from .tx import Tx, agent_row

if TYPE_CHECKING:
    from host.api import HostAPI, InboundRoute

KIND = "queue"
T = TypeVar("T")


class QueueSink(Sink):
    """Each SMS a route sends here joins its texter's open interaction or starts one
    in the route's queue; ACD offers it to an agent."""

    kind = KIND
    settings_class = QueueSettings

    def __init__(self, host: HostAPI, settings: QueueSettings) -> None:
        super().__init__(host, settings)
        self.queues: dict[str, QueueDefinition] = {q.name: q for q in settings.queues}
        self.clock: Callable[[], float] = time.time
        self.feed = Notifier()
        self.scheduler = Scheduler(self)
        self.notices = Notices(self)  # queue notices (SPEC S5)
        self._watched: set[int] = set()  # outbound messages of open interactions
        self._unfollow: Callable[[], None] = lambda: None
        self._replying: dict[int, asyncio.Lock] = {}
        report_metrics.register(host, self)
        problems = list(self._account_problems(host))
        if problems:
            raise ValueError("; ".join(problems))

    def _account_problems(self, host: HostAPI) -> Any:
        """O9 associations must name a configured broker account."""
        configured = {(b.name, a.id) for b in host.settings.brokers for a in b.accounts}
        for i, queue in enumerate(self.settings.queues):
            if queue.account and not any(
                    account == queue.account and (not queue.broker or broker == queue.broker)
                    for broker, account in configured):
                file, line = host.settings.where("sinks", KIND, "queues", i, "account")
                where = f"{file}:{line}: " if file and line else ""
                yield (f"{where}queue.queues[{i}].account: no configured broker account "
                       f"{queue.account!r}" + (f" in broker {queue.broker!r}" if queue.broker
                                               else ""))

    def check_target(self, target: str) -> str | None:
        """A queue of sinks.toml, or a workgroup or user of the database (read from
        its file: routes are checked before the store opens)."""
        groups, users = _stored_names(self.host.store.path)
        if target and (target in self.queues or
                       target.lower() in {g.lower() for g in groups} | users):
            return None
        known = ", ".join(sorted({*self.queues, *groups})) or \
            "none (add a workgroup: smshost workgroup add)"
        if not target:
            return f"a queue route needs a target: the queue name; queues: {known}"
        return f"no queue named {target!r}; queues: {known}"

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._watched = set(await self.host.store.read(_open_replies))
        # Rows other nodes add to the feed wake this node's streams (several nodes).
        self._unfollow = self.host.follow("queue_feed", self.feed.notify)
        if self.host.background:
            self.scheduler.start()
            self.notices.start()

    async def stop(self) -> None:
        self._unfollow()
        await self.scheduler.stop()
        await self.notices.stop()
        self.feed.notify()  # streams look the sink up again (a reload replaces it)

    # -- the one way to change things -------------------------------------------------

    async def signed_out(self, login: str) -> None:
        """``login`` signed out of a browser: offline (its interactions return to their
        queue), when it is an agent that is not offline already."""
        def change(tx: Tx) -> None:
            found = directory.agent(tx.db, login)
            row = agent_row(tx.db, found) if found else None
            if found is None or row is None or row["status"] == "offline":
                return
            agents.set_status(tx, found, "offline", "signed out", found)
            acd.dispatch(tx)
        await self.run(change)

    async def run(self, step: Callable[[Tx], T], *, wake: bool = True) -> T:
        """``step`` in one transaction; streams and (``wake``) the scheduler woken after
        the commit."""
        defaults, priorities, epoch = self.settings.acd, self.settings.priorities, self.clock()

        def write(db: Database) -> tuple[T, set[int]]:
            tx = Tx(db, epoch, defaults, priorities)
            result = step(tx)
            tx.finish()
            return result, tx.watch

        result, watch = await self.host.store.write(write)
        self._watched |= watch
        self.feed.notify()
        if wake:
            self.scheduler.wake()
        return result

    async def tick(self) -> float | None:
        """Expire due offers, end due wrap-ups, offer what can be (the clock's now); the
        next stored deadline, read in the same transaction at the same "now": read at a
        later now, a decline's retry that this tick found a hair too early (its window
        still open at the tick's now) was already past and lost, and the interaction
        waited for the next periodic tick (a kill -9 test saw it, one run in three)."""
        def step(tx: Tx) -> float | None:
            agents.tick(tx)
            return agents.next_due(tx)
        return await self.run(step, wake=False)  # the scheduler's own step

    async def next_due(self) -> float | None:
        defaults, epoch = self.settings.acd, self.clock()
        return await self.host.store.read(
            lambda db: agents.next_due(Tx(db, epoch, defaults, {})))

    # -- SMS in -----------------------------------------------------------------------

    async def deliver(self, message: Message, route: InboundRoute) -> Delivery:
        done = await self.run(self._join(message, route))
        if done is None:
            return Delivery.failed(f"no queue named {route.target!r} (no workgroup or user "
                                   "of that name)")
        detail, data = _detail(*done)
        return Delivery.delivered(detail, **data)

    def enter(self, db: Database, message: Message, route: InboundRoute) -> Delivery | None:
        """:meth:`deliver`'s transaction in the write that stores the MO (routing at
        ingest); its after-commit steps in :meth:`entered`. An unknown queue is the
        router's (its fallback to the default route)."""
        tx = Tx(db, self.clock(), self.settings.acd, self.settings.priorities)
        done = self._join(message, route)(tx)
        if done is None:
            return None
        tx.finish()
        detail, data = _detail(*done)
        return QueueEntry("delivered", detail, None, data, watch=frozenset(tx.watch))

    def entered(self, delivery: Delivery) -> None:
        """What :meth:`run` does after its commit: streams and the scheduler woken."""
        if isinstance(delivery, QueueEntry):
            self._watched |= delivery.watch
        self.feed.notify()
        self.scheduler.wake()

    def _join(self, message: Message, route: InboundRoute
              ) -> Callable[[Tx], tuple[int, str, str] | None]:
        configured = self.queues.get(route.target)

        def step(tx: Tx) -> tuple[int, str, str] | None:
            found = directory.kind_of(tx.db, route.target)
            if found is None and configured is None:
                return None
            kind, queue = found or (configured.kind, configured.name)  # type: ignore[union-attr]
            interaction, how = rows.enqueue(tx, message, queue, kind, route.name)
            if how == "queued":
                acd.dispatch(tx, queue)
            return interaction, how, queue
        return step

    async def disconnect(self, interaction_id: int, *, reason: str,
                         actor: str = "system") -> bool:
        """End an interaction (final state); False if it is unknown or already ended."""
        def step(tx: Tx) -> bool:
            row = tx.db.execute("select state from queue_interactions where id = ?",
                                [interaction_id]).fetchone()
            if row is None or row[0] in rows.FINAL_STATES:
                return False
            actions.disconnect(tx, interaction_id, actions.Actor(actor, True), reason)
            return True
        return await self.run(step)

    # -- replies ----------------------------------------------------------------------

    async def reply(self, interaction: int, actor: actions.Actor, text: str,
                    sender: str) -> tuple[Message, int]:
        """Send ``text`` to the texter of ``interaction`` (connected, held by ``actor``
        or supervised): through the account its SMS came in on, or (``sender``) as its
        workgroup or as the agent (O9). One at a time per interaction: replies keep
        their order. The stored message (queued, or failed with its reason) and its
        segments."""
        lock = self._replying.setdefault(interaction, asyncio.Lock())
        async with lock:
            def check(tx: Tx) -> dict[str, Any]:
                row = actions.owned(tx, interaction, actor, "reply to")
                if row["state"] != "connected":
                    raise actions.wrong_state(row, "reply", "a connected one (accept or "
                                              "pick it up first)")
                return row
            row = await self.run(check)
            queued = await self.host.send(_request(row, actor, text, sender))
            first = queued.messages[0]

            def link(tx: Tx) -> None:
                for message in queued.messages:
                    rows.link(tx, interaction, message.id, "out", message.created_at)
                    tx.feed("message", row["assigned_to"], row["queue"], rows.message_event(
                        interaction, message.id, "out", message.body, message.status,
                        message.created_at))
            await self.run(link)
        if not lock.locked():
            self._replying.pop(interaction, None)
        return first, queued.segments

    def status_changed(self, message: Message, new: str) -> Any:
        """A watched outbound message's new status, to its agent's stream."""
        if message.id not in self._watched:
            return None

        def step(tx: Tx) -> None:
            found = tx.db.execute(
                "select i.id, i.queue, i.assigned_to, i.state from queue_messages q join "
                "queue_interactions i on i.id = q.interaction_id where q.message_id = ?",
                [message.id]).fetchone()
            if found is None or found[3] in rows.FINAL_STATES or not found[2]:
                return
            tx.feed("message", found[2], found[1], rows.message_event(
                found[0], message.id, "out", message.body, new, message.created_at))
        return self.run(step)


def _request(row: dict[str, Any], actor: actions.Actor, text: str,
             sender: str) -> SendRequest:
    attrs = {"interaction": row["id"]}
    if sender == "workgroup":
        return SendRequest(to=row["remote"], text=text, workgroup=row["queue"],
                           source="desk", attrs=attrs)
    if sender == "agent":
        return SendRequest(to=row["remote"], text=text, user=actor.login,
                           source="desk", attrs=attrs)
    return SendRequest(to=row["remote"], text=text, broker=row["broker"],
                       account=row["account"], source="desk", attrs=attrs)


def _stored_names(path: Path) -> tuple[set[str], set[str]]:
    """The workgroups and the users (lower case) of the database at ``path``; none when
    it cannot be read (a first start, a database without the people tables yet)."""
    if not path.exists():
        return set(), set()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            groups = {r[0] for r in conn.execute("select name from workgroups")}
            users = {r[0].lower() for r in conn.execute("select login from users")}
            return groups, users
        finally:
            conn.close()
    except sqlite3.Error:
        return set(), set()


def _open_replies(db: Database) -> list[int]:
    return [r[0] for r in db.execute(
        "select q.message_id from queue_messages q join queue_interactions i on i.id = "
        "q.interaction_id where q.direction = 'out' and i.ended_at is null")]


__all__ = ["KIND", "QueueSink", "SendError"]


@dataclass(frozen=True, slots=True)
class QueueEntry(Delivery):
    """A delivery made in the MO's write (:meth:`QueueSink.enter`), with the outbound
    messages its transaction started to follow (taken after the commit)."""

    watch: frozenset[int] = frozenset()


def _detail(interaction: int, how: str, queue: str) -> tuple[str, dict[str, Any]]:
    detail = {"queued": f"waiting in queue {queue}", "joined":
              f"joined interaction {interaction}", "already": f"already in queue {queue}"}
    return detail[how], {"queue": queue, "interaction": interaction}
