"""Routing at ingest: an MO routed in the very write that stores it (issue 18, lever 1).

Today's path costs an MO three commits before its delivery: the webhook's write, the
sink's entry (a webhook delivery, say), the router's ``routed`` status. When a broker
webhook stores a new MO (:meth:`host.ledger.Ledger.add` with ``at_ingest``), the
ledger calls :meth:`Ingest.step` right after :func:`host.ledger.insert`, in the same
write; it decides the route (linear-time patterns: microseconds), lets the route's sink
write its entry (:meth:`host.sinks.base.Sink.enter`), records the ``routed`` status
exactly as the router does and releases the lane. One commit, then
:meth:`Ingest.announce` runs the after-commit sequence: the sink's
:meth:`~host.sinks.base.Sink.entered`, then (after the conversation's previous
announce) the stored change, the routed change, the ``message_routed`` callback.

It routes at ingest only when nothing about the message needs the router:

- ``routing.at_ingest`` is on (and the router runs: it installs this on the ledger);
- the body is no opt-out keyword (STOP/START/HELP reply: the router's path does that);
- the route's sink can enter it (``enter`` overridden; it returns a delivered
  :class:`~host.sinks.base.Delivery`: None, a retry or a failure go the router's way,
  whose fallback to the default route stays in one place);
- no other live node holds the conversation's lane (that node routes the conversation)
  and the message is the conversation's only one still to route (``received``):
  conversation order. A message routed here takes no lane at all (a lane of this node's
  with nothing left to route is released, as the router's write would); one that falls
  back takes it in the same write, as the router's path needs (host.routing.leases).

Anything else, or anything raised on the way, is today's path: the decision and the
sink's entry run under a SAVEPOINT rolled back on failure, so the MO is stored (and
answered 2xx) whatever happens, and the router routes it after the commit. A crash
before the commit leaves nothing (the broker retries); after it, the message is routed
with its entry stored, which the sink's own recovery sends (the webhook sink sends its
stored deliveries at start). Concatenated parts are stored by host.brokers.concat,
not through here: they take the router's path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.ledger import Change, record_status
from host.logs import log_failure
from host.routing.inbound import select
from host.routing.leases import key_of, waiting_sql
from host.sinks.base import Delivery, Sink

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

    from sqlite_utils import Database

    from host.ledger import Ledger
    from host.models import Message
    from host.optout import OptOuts
    from host.routing.inbound import Route
    from host.routing.leases import Leases

    Routed = Callable[[Message, Route | None, str, dict[str, Any]], Awaitable[None]]
    Submit = Callable[[int, str | None, str | None], None]

log = logging.getLogger("smshost.routing")
SAVEPOINT = "smshost_ingest"


def routing_detail(route: Route | None, delivery: Delivery,
                   failures: list[dict[str, Any]]) -> dict[str, Any]:
    """The detail of a routing event (the router's and this module's, the same keys):
    the route, the sink's detail and data, the failures before it."""
    detail: dict[str, Any] = {}
    if route is not None:
        detail.update(route=route.name, destination=route.destination, target=route.target)
    if delivery.detail:
        detail["detail"] = delivery.detail
    if delivery.data:
        detail.update(delivery.data)
    if failures:
        detail["failures"] = failures
    return detail


def _back_to_savepoint(db: Database, failure: Exception | None) -> None:
    """Undo the entry. The database may have rolled the whole transaction back itself
    (SQLite on a full disk or an I/O error; a PostgreSQL connection lost): no savepoint
    is left, the MO's write is gone with it, and ``failure`` is raised again so the
    store answers it as the refusal it is (503, the broker retries), not "no such
    savepoint"."""
    if failure is not None and not db.conn.in_transaction:
        raise failure
    try:
        db.conn.execute(f"rollback to {SAVEPOINT}")
    except sqlite3.Error:
        if failure is None:
            raise
        raise failure from None


@dataclass(frozen=True, slots=True)
class Entered:
    """An MO routed in the write that stored it: what its commit announces."""

    change: Change  # received -> routed
    route: Route
    sink: Sink
    delivery: Delivery
    detail: dict[str, Any]  # the routing event's
    after: int | None  # the conversation's next message to route (none, checked)


class Ingest:
    """The router's step inside the MO's write (:meth:`step`) and after its commit
    (:meth:`announce`). ``submit`` hands a message to the router's lanes; ``enabled``
    reads ``routing.at_ingest`` (a live change applies to the next MO)."""

    def __init__(self, ledger: Ledger, sinks: Mapping[str, Sink], optouts: OptOuts,
                 leases: Leases, routes: Callable[[], list[Route]], routed: Routed,
                 submit: Submit, enabled: Callable[[], bool]) -> None:
        self._ledger = ledger
        self._sinks = sinks
        self._optouts = optouts
        self._leases = leases
        self._routes = routes
        self._routed = routed
        self._submit = submit
        self._enabled = enabled
        self._announcing: set[int] = set()  # routed at ingest, being announced
        # Per conversation, the last announce under way: the next one waits for it.
        self._chain: dict[tuple[str, str], asyncio.Future[None]] = {}

    def submit(self, message_id: int, local: str | None, remote: str | None) -> None:
        """The router's ``submit``: a message routed at ingest is not routed again (its
        ``message_stored`` hook would cost the router a read for nothing)."""
        if message_id not in self._announcing:
            self._submit(message_id, local, remote)

    # -- in the write ---------------------------------------------------------------

    def step(self, db: Database, message: Message) -> Entered | None:
        """Route ``message`` (just stored, ``received``, its lane not taken) in this
        write; None: not here, the router's path (nothing of this step is left in the
        write but the conversation's lane, taken for the router)."""
        entered = self._step(db, message)
        if entered is None:
            self._leases.claim(db, message.local, message.remote)
        return entered

    def _step(self, db: Database, message: Message) -> Entered | None:
        if not self._enabled():
            return None
        try:
            if self._optouts.keyword(message) is not None:
                return None
            route = select(self._routes(), message).route
            sink = self._sinks.get(route.destination)
            if sink is None or type(sink).enter is Sink.enter:
                return None  # this sink cannot: no statement spent on it
        # The MO is stored whatever the decision does: a failure here is a bug logged
        # once per place, and the router's path (BLE001).
        except Exception as exc:  # noqa: BLE001
            log_failure(log, f"routing message {message.id} at ingest failed", exc, "ingest")
            return None
        db.conn.execute(f"savepoint {SAVEPOINT}")
        failure: Exception | None = None
        try:
            entered = self._enter(db, message, route, sink)
        # The sink is a plugin, the statements may fail: rolled back to the savepoint,
        # the MO stays stored and takes the router's path (BLE001).
        except Exception as exc:  # noqa: BLE001
            log_failure(log, f"routing message {message.id} at ingest to "
                        f"{route.destination} failed", exc, "ingest", route.destination)
            entered, failure = None, exc
        if entered is None:
            _back_to_savepoint(db, failure)
        db.conn.execute(f"release {SAVEPOINT}")
        return entered

    def _enter(self, db: Database, message: Message, route: Route,
               sink: Sink) -> Entered | None:
        key = key_of(message.local, message.remote)
        sql, args = waiting_sql(key, limit=2, lane=True)
        rows = list(db.query(sql, args))
        if len(rows) != 1 or rows[0]["id"] != message.id:
            return None  # an earlier message of the conversation waits: order
        owner = rows[0]["lane_owner"]
        if self._leases.holds(owner, rows[0]["lane_expires"]) is False:
            return None  # another live node routes this conversation
        delivery = sink.enter(db, message, route)
        if delivery is None or delivery.outcome != "delivered":
            return None
        detail = routing_detail(route, delivery, [])
        event = record_status(db, message.id, "routed", "router", detail, route=route.name)
        if owner == self._leases.owner:  # nothing of it left to route: released
            self._leases.release(db, key)
        routed = dataclasses.replace(message, status="routed", route=route.name,
                                     updated_at=event.at)
        # after: None, as nothing else of the conversation waits (read above, this write)
        return Entered(Change(routed, event, message.status), route, sink, delivery, detail,
                       None)

    # -- after the commit -----------------------------------------------------------

    async def announce(self, stored: Change, entered: Entered) -> None:
        """After the commit: the sink's ``entered`` first (the entry is committed: its
        worker must hear of it whatever happens next; the webhook sink has no periodic
        scan), then, after the announces of the conversation's message before (each
        request announces its own, and the next MO's must not pass it), in order: the
        stored change, the routed change (the ledger's sequence: metrics, hooks,
        callbacks), ``message_routed``."""
        message = stored.message
        self._wake(entered, message.id)
        key = key_of(message.local, message.remote)
        previous = self._chain.get(key)
        mine = self._chain[key] = asyncio.get_running_loop().create_future()
        try:
            if previous is not None:  # done whatever it came to, even cancelled
                await asyncio.wait([previous])
            await self._announce(stored, entered)
        finally:
            mine.set_result(None)
            if self._chain.get(key) is mine:  # the last of its conversation: dropped
                del self._chain[key]

    async def _announce(self, stored: Change, entered: Entered) -> None:
        message = stored.message
        self._announcing.add(message.id)
        try:
            await self._ledger.announce((stored,))
        finally:
            self._announcing.discard(message.id)
        routed = entered.change
        await self._ledger.announce((routed,))
        await self._routed(routed.message, entered.route, "routed", entered.detail)
        if entered.after is not None:  # stored meanwhile by another node: its turn
            self._submit(entered.after, message.local, message.remote)

    def _wake(self, entered: Entered, message_id: int) -> None:
        try:
            entered.sink.entered(entered.delivery)
        # Committed already: a sink failing to wake its worker leaves the entry to its
        # recovery (the webhook sink's start), logged once per place (BLE001).
        except Exception as exc:  # noqa: BLE001
            log_failure(log, f"sink {entered.sink.kind}: entered() failed for message "
                        f"{message_id}", exc, "entered", entered.sink.kind)
