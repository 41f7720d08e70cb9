"""Routing runs from the durable store, after the commit (SPEC R1-R3, H4, P5).

Every stored inbound message is routed by a lane of its conversation (local, remote):
messages of one conversation in order, conversations side by side (``routing.workers``
worker tasks). Before routing, STOP/START/HELP are handled. A destination that fails for
now is retried after ``routing.retry_delays``; one that fails for good (or runs out of
retries) hands the message to the default route, recording why. When the default
route fails too the message is marked ``failed`` and kept. On start, every message
still ``received`` that no live node routes is routed, so a crash between commit and
routing loses nothing.

A broker's MO that needs none of this (no earlier message waiting, this node's lane, a
sink that takes entries in a write) is routed in the write that stores it instead
(host.routing.ingest, ``routing.at_ingest``).

Several nodes on one database route a conversation one node at a time, in id order
(host.routing.leases): a node routes the oldest message of a conversation whose lane it
holds, and a sweep takes what no live node routes (at start too).

A conversation does not wait for each message's final status (``routed``/``failed``) to
be committed before routing its next message: the status write is queued and the next
message's writes are queued after it, and the store commits in that order. Its hooks
(``message_status_changed``, ``message_routed``) run once it is committed, in the
conversation's order. So one conversation costs one commit per message, not two.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from host.backoff import doubling
from host.errors import StoreError
from host.outage import Outage, expected
from host import ledger
from host.ledger import Change
from host.models import Message
from host.routing.inbound import (EMAIL_ONLY, Route, compile_routes, default_route, deliver,
                                  select)
from host.routing.ingest import Ingest, routing_detail
from host.routing.lanes import Key, Lanes, Outcome
from host.routing.leases import LaneKeeper, Leases, key_of
from host.sinks.base import Delivery, catch_all_kind

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

    from host.brokers.instances import BrokerInstance
    from host.config.settings import Settings
    from host.ledger import Ledger
    from host.messages import Messages
    from host.optout import OptOuts
    from host.sinks.base import Sink
    from host.store import Store

    Routed = Callable[[Message, Route | None, str, dict[str, Any]], Awaitable[None]]


class Reply(Protocol):
    """Answers an inbound message (:meth:`host.outbound.Outbound.reply`)."""

    async def __call__(self, message: Message, text: str, source: str = ...,
                       optout_exempt: bool = ...) -> Message: ...

log = logging.getLogger("smshost.routing")
__all__ = ["Outcome", "Reply", "Router"]


@dataclass(frozen=True, slots=True)
class _Fallback:
    """Why a message is on its way to the default route."""

    failures: list[dict[str, Any]]
    delivery: Delivery


class Router:
    """Routes stored MOs to the ``sinks``; ``reply`` sends opt-out confirmations and
    ``routed`` announces each outcome (the ``message_routed`` hook)."""

    def __init__(self, settings: Settings, store: Store, ledger: Ledger, messages: Messages,
                 sinks: Mapping[str, Sink], brokers: Mapping[str, BrokerInstance],
                 optouts: OptOuts, reply: Reply, routed: Routed, node: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._store = store
        self._ledger = ledger
        self._messages = messages
        self._sinks = sinks
        self._brokers = brokers
        self._optouts = optouts
        self._reply = reply
        self._routed = routed
        self._routes: list[Route] = compile_routes(settings.inbound)
        self._lanes = Lanes(self._route_safely)  # conversations, in order each
        # node: this node's id (a new one per start by default)
        self.leases = Leases(node, settings.routing.lane_ttl, clock)
        self.ingest = Ingest(ledger, sinks, optouts, self.leases, lambda: self.routes, routed,
                             self._lanes.submit, lambda: self._settings.routing.at_ingest)
        self.submit = self.ingest.submit  # (message id, local, remote): route it
        self.keeper = LaneKeeper(store, self.leases, self._lanes, self.submit,
                                 settings.routing.sweep_s)
        self._attempts: dict[int, int] = {}
        self._fallbacks: dict[int, _Fallback] = {}  # default route failed for now: retry it
        self._recording: dict[tuple[str, str], asyncio.Task[None]] = {}  # last, per lane
        self._announcing: set[asyncio.Task[None]] = set()  # every status not announced
        self._recorded: set[int] = set()  # final status queued, not yet committed
        self.outage = Outage("routing", log)

    @property
    def routes(self) -> list[Route]:
        """The inbound routes in order. With none configured, the one route to the sink
        that claims ``catch_all`` (R3: the email sink)."""
        if self._routes == [EMAIL_ONLY]:
            kind = catch_all_kind(self._sinks)
            if kind is not None and kind != EMAIL_ONLY.destination:
                return [dataclasses.replace(EMAIL_ONLY, name=kind, destination=kind)]
        return self._routes

    @routes.setter
    def routes(self, routes: list[Route]) -> None:
        self._routes = routes

    def configure(self, settings: Settings) -> None:
        """Take new settings (a live change): the routes and the retry delays. A message
        being routed keeps the route it chose; its next one uses the new routes.
        ``routing.workers`` and ``routing.enabled`` take effect at the next start."""
        self._routes = compile_routes(settings.inbound)
        self._settings = settings
        self.leases.ttl = settings.routing.lane_ttl
        self.keeper.sweep_s = settings.routing.sweep_s

    async def start(self) -> None:
        """Route everything left unrouted (by a crash or a stop) that no live node
        routes, and take new messages (their lanes taken as they are stored).

        ``routing.workers`` tasks take the conversations that have messages to route,
        one at a time each (a task per conversation would cost a task per message)."""
        self._lanes.start(self._settings.routing.workers)
        self._ledger.lanes, self._ledger.ingest = self.leases, self.ingest
        await self.keeper.start()

    async def stop(self) -> None:
        self._ledger.lanes = self._ledger.ingest = None
        await self._lanes.stop()
        announcing = list(self._announcing)
        if announcing:  # statuses queued: let them commit and announce (bounded)
            _, late = await asyncio.wait(announcing, timeout=5.0)
            for task in late:  # not stored: routed again at the next start
                task.cancel()
            await asyncio.gather(*announcing, return_exceptions=True)
        self._announcing.clear()
        self._recording.clear()
        self._recorded.clear()
        await self.keeper.stop()

    async def idle(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted message is routed and its status committed and
        announced (tests, CLI); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._lanes or self._announcing) and \
                asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return not self._lanes and not self._announcing

    async def _route_safely(self, hint: int, key: Key) -> Outcome:
        """Route the oldest message of conversation ``key`` still to route (``hint``,
        one of its ids, may be done already)."""
        message_id = hint
        try:
            message, held = await self.keeper.head(key, self._recorded)
            if not held:
                return Outcome("elsewhere", None, {})
            if message is None:
                return Outcome("routed", None, {"skipped": True})
            message_id = message.id
            outcome = dataclasses.replace(await self._route(message), message_id=message_id)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the router is stopping
            # A sink or handler let a cancellation out: a failure like any other, not
            # the end of this worker (which would strand the conversation).
            log.error("routing message %d was cancelled by its destination", message_id)
            return self._failed_for_now(message_id)
        # Routing must go on for the other messages. This one is tried again after
        # routing.retry_delays, its conversation waiting behind it (order); when they
        # run out it stays "received", and is routed again at the next start. The
        # database refusing the work is logged once per failing spell (BLE001).
        except Exception as exc:  # noqa: BLE001
            if not expected(exc):
                log.exception("routing message %d failed", message_id)
                return self._failed_for_now(message_id)
            self.outage.failed(exc, f"message {message_id}")
            return self._failed_for_now(message_id, quiet=True)
        return outcome

    def _failed_for_now(self, message_id: int, quiet: bool = False) -> Outcome:
        delay = self._next_retry(message_id)
        if delay is not None:
            if not quiet:
                log.warning("routing message %d: retry in %ss", message_id, delay)
            return Outcome("retry", None, {}, delay)
        self._fallbacks.pop(message_id, None)
        self.keeper.skip.add(message_id)  # stays "received": routed at the next start
        return Outcome("failed", None, {}, message_id=message_id)

    def _next_retry(self, message_id: int) -> float | None:
        """The delay before the next try of ``message_id``; None when retries ran out."""
        attempt = self._attempts.get(message_id, 0)
        delays = self._settings.routing.retry_delays
        if attempt < len(delays):
            self._attempts[message_id] = attempt + 1
            return delays[attempt]
        self._attempts.pop(message_id, None)
        return None

    async def route(self, message_id: int) -> Outcome:
        """Route message ``message_id`` now (tests; the lanes route by conversation)."""
        message = await self._messages.get(message_id)
        if message is None or message.status != "received" or message_id in self._recorded:
            return Outcome("routed", None, {"skipped": True})  # done before
        return await self._route(message)

    async def _route(self, message: Message) -> Outcome:
        message_id = message.id
        action = self._optout_action(message)
        if action is not None:
            return await self._optout(message, action)
        pending = self._fallbacks.get(message_id)
        if pending is not None:  # its route failed for good; the default route failed
            return await self._to_default(message, pending)  # for now: try it again
        decision = select(self.routes, message)
        route = decision.route
        delivery = await self._deliver(message, route)
        if delivery.outcome == "retry":
            attempt = self._attempts.get(message_id, 0)
            delays = self._settings.routing.retry_delays
            if attempt < len(delays):
                self._attempts[message_id] = attempt + 1
                log.warning("route %s for message %d: %s; retry %d in %ss", route.name,
                            message_id, delivery.detail, attempt + 1, delays[attempt])
                return Outcome("retry", route, {}, delivery.retry_after or delays[attempt])
            delivery = Delivery.failed(f"{delivery.detail} (gave up after {attempt} retries)")
        self._attempts.pop(message_id, None)
        if delivery.outcome == "delivered":
            return await self._record(message, "routed", route, delivery, [])
        return await self._fallback(message, route, delivery)

    async def _fallback(self, message: Message, failed: Route, delivery: Delivery) -> Outcome:
        failures = [{"route": failed.name, "destination": failed.destination,
                     "target": failed.target, "reason": delivery.detail}]
        log.warning("route %s failed for message %d: %s", failed.name, message.id,
                    delivery.detail)
        if failed is not default_route(self.routes):
            return await self._to_default(message, _Fallback(failures, delivery))
        log.error("message %d could not be routed: %s", message.id, failures)
        return await self._record(message, "failed", failed, delivery, failures)

    async def _to_default(self, message: Message, fallback: _Fallback) -> Outcome:
        """Deliver to the default route after the message's own route failed for good.
        A default route that fails for now is retried (routing.retry_delays), the
        message's own route is not tried again."""
        default = default_route(self.routes)
        second = await self._deliver(message, default)
        if second.outcome == "delivered":
            self._fallbacks.pop(message.id, None)
            return await self._record(message, "routed", default, second, fallback.failures)
        if second.outcome == "retry":
            delay = self._next_retry(message.id)
            if delay is not None:
                self._fallbacks[message.id] = fallback
                log.warning("default route %s for message %d: %s; retry in %ss",
                            default.name, message.id, second.detail,
                            second.retry_after or delay)
                return Outcome("retry", default, {}, second.retry_after or delay)
            second = Delivery.failed(f"{second.detail} (gave up after retries)")
        self._fallbacks.pop(message.id, None)
        failures = [*fallback.failures, {"route": default.name,
                                         "destination": default.destination,
                                         "target": default.target, "reason": second.detail}]
        log.error("message %d could not be routed: %s", message.id, failures)
        return await self._record(message, "failed", default, fallback.delivery, failures)

    async def deliver_to(self, message: Message, destination: str, target: str = "", *,
                         via: Route | None = None, data: dict[str, Any] | None = None
                         ) -> Delivery:
        """Hand ``message`` to a destination chosen at run time (``ctx.route_to``)."""
        name = f"{via.name} > {destination}" if via is not None else destination
        delivery = await self._deliver(message, Route(name, destination, target))
        merged = {**(data or {}), **(delivery.data or {}), "routed_to": destination,
                  "routed_to_target": target}
        return Delivery(delivery.outcome, delivery.detail, delivery.retry_after, merged)

    async def _deliver(self, message: Message, route: Route) -> Delivery:
        return await deliver(self._sinks, message, route, self.outage)

    async def _record(self, message: Message, status: str, route: Route | None,
                      delivery: Delivery, failures: list[dict[str, Any]]) -> Outcome:
        detail = routing_detail(route, delivery, failures)  # as at ingest (its module)
        name = route.name if route is not None else None

        key = key_of(message.local, message.remote)

        def write(db: Any) -> Any:  # event.at is the row's updated_at; the lane renewed
            event = ledger.record_status(db, message.id, status, "router", detail,
                                         route=name)  # or released, in this write
            return event, self.leases.after(db, key)

        previous = self._recording.get(key)
        if previous is not None and not previous.done():
            # One status per conversation at most waits for its commit while the next
            # message is routed: the pipeline stays bounded, and a status the database
            # refused is stored before the next one is queued (order).
            await asyncio.wait([previous])
        # Queued, not awaited: the conversation goes on (see the module text).
        committed = self._store.write_soon(write)
        task = asyncio.create_task(self._announce(message, status, route, detail, committed,
                                                  write))
        self._recording[key] = task
        self._announcing.add(task)
        self._recorded.add(message.id)
        task.add_done_callback(lambda done: self._recorded_done(key, message.id, done))
        return Outcome(status, route, detail)

    def _recorded_done(self, key: tuple[str, str], message_id: int,
                       task: asyncio.Task[None]) -> None:
        self._announcing.discard(task)
        self._recorded.discard(message_id)
        if self._recording.get(key) is task:
            del self._recording[key]

    async def _announce(self, message: Message, status: str, route: Route | None,
                        detail: dict[str, Any], committed: asyncio.Future[Any],
                        write: Callable[[Any], Any]) -> None:
        """Once ``message``'s status is committed, announce it (metrics, hooks)."""
        try:
            event, after = await committed
            self.outage.succeeded()
        except (StoreError, sqlite3.Error):
            # Again until it goes through (the conversation's next status waits, see
            # _record) or the router stops: then the message stays "received" and is
            # routed again at the next start, as after a crash.
            done = await self._store.write_retrying(
                write, doubling(0.1, 5.0), lambda: self._lanes.running,
                f"message {message.id}: its routing status", self.outage)
            if done is None:
                return
            event, after = done
        if after is not None:  # the conversation's next, stored by any node: its turn
            self.submit(after, message.local, message.remote)
        updated = dataclasses.replace(message, status=status,
                                      route=route.name if route is not None else None,
                                      updated_at=event.at)
        await self._ledger.announce((Change(updated, event, message.status),))
        await self._routed(updated, route, status, detail)

    def _optout_action(self, message: Message) -> str | None:
        instance = self._brokers.get(message.broker or "")
        account = instance.accounts.get(message.account or "") if instance else None
        if account is not None and not account.opt_out:
            return None
        return self._optouts.keyword(message)

    async def _optout(self, message: Message, action: str) -> Outcome:
        await self._store.write(lambda db: self._optouts.apply(db, message, action))
        text = self._optouts.reply_text(action)
        data: dict[str, Any] = {"reply": None}
        if text:
            try:
                # refused (the broker cannot send, say): a failed message, with the reason
                reply = await self._reply(message, text, source="optout", optout_exempt=True)
                data["reply"] = reply.id
                if reply.status == "failed":
                    data["reply_error"] = reply.attrs.get("error")
            # The opt-out itself is recorded; a confirmation that cannot be stored (the
            # database refusing it) is logged and the message still counts as handled,
            # the reason in its routing event (BLE001).
            except Exception as exc:  # noqa: BLE001
                if not expected(exc):  # a refusing database: the line below says it
                    log.exception("no %s confirmation for message %d", action, message.id)
                data["reply_error"] = f"not stored: {type(exc).__name__}: {exc}"
            if "reply_error" in data:
                log.warning("message %d: the %s confirmation failed: %s", message.id,
                            action, data["reply_error"])
        route = Route("optout", "optout", action, "body", ".*", False)
        return await self._record(message, "routed", route,
                                  Delivery.delivered(f"keyword {action}", **data), [])

