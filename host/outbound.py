"""Queuing outbound messages: the one path of the API, CLI and handler scripts (SPEC O1-O5, O9).

``send`` turns a request into stored ``queued`` messages for the sender worker (a
reply, ``reply_to``, skips steps 2 and 3: it goes out from the broker, account and
number that received the message it answers, B8):

1. a retried request (same ``Idempotency-Key``) gets the messages of the first one;
2. the sender: an account (optionally at a broker), or a workgroup or user whose queue
   names one (O9);
3. the outbound route for the destination: its broker and account, the number to
   dial (``$0``/``$1``...), and whether the sender's classification may use it (O2);
4. the number: E.164 when the broker internationalizes, and valid (O3);
5. opt-out: a recipient who texted STOP to that number is refused (R6), read in the
   write that stores the send (6-7), so no opt-out committed before it is missed;
6. encoding and length per the broker's ``parsing``: unaltered, split into one
   message per segment, or truncated (O4); or merged into a message still waiting
   to the same number from the same account (O5) (never a scheduled send or one with
   a status callback, nor into one: each keeps its own time and its own callbacks);
7. everything stored in one transaction, with the outbox rows: persisted before any
   network call (O6); a send with ``send_at`` ahead is stored ``scheduled``, its
   outbox rows not due before then (:mod:`host.schedule`).

A send due now whose account has a token and the outbox worker a free slot
(:meth:`host.brokers.sender.Sender.reserve`, taken before the write so that sends
stored at once never exceed ``outbox.max_in_flight``) is stored already claimed by
this node, its (first part's) outbox row in flight and the message ``sending``, as
the worker's claim leaves it, and is handed to the worker after the commit: no claim
read, no claim write. A crash before it is settled leaves the row a claim like any
other, recovered at the next start (tried once more, flagged possibly_duplicated).
Such a message is not waiting, so nothing is merged into it (O5): messages wait, and
can be merged into, only while their account has no token or the worker no slot.

A refused send raises for the API to answer; ``send_or_record`` (handlers, sinks,
opt-out confirmations: nobody to answer) stores it as a failed message instead
(:mod:`host.refusals`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from host.encoding import segments as count_segments
from host import ledger
from host.brokers.claims import Claimed
from host.ledger import NewMessage
from host.models import Message, StatusEvent, from_epoch, utcnow
from host.numbers import normalize
from host.optout import OptedOut, OptOuts
from host.planner import Plan, Planner
from host.refusals import record_refusal, refusal_code
from host.callbacks.urls import refusal as callback_refusal
from host.routing.outbound import compile_outbound
from host.schedule import not_before
from host.sends import Queued, SendError, SendRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sqlite_utils import Database

    from host.brokers.instances import BrokerInstance
    from host.config.settings import Settings
    from host.ledger import Ledger
    from host.brokers.pacing import Key
    from host.metrics import Metrics
    from host.planner import SenderFor
    from host.plugins import PluginRecord
    from host.routing.outbound import OutboundRoute
    from host.store import Store


class Outbox(Protocol):
    """What queuing needs of the outbox worker (:class:`host.brokers.sender.Sender`)."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def node(self) -> str | None: ...

    def wake(self) -> None: ...

    def reserve(self, key: Key) -> bool: ...

    def release(self, key: Key) -> None: ...

    def launch(self, claimed: Claimed) -> None: ...


class Outbound:
    """Queues sends. ``sender_for(kind, name)`` is the (broker, account) of a workgroup
    or user (the ``sender_for`` hook); ``failures()`` the problems plugins and the
    configuration had when loaded (a broker disabled by one is named)."""

    def __init__(self, settings: Settings, store: Store, ledger: Ledger,
                 brokers: Mapping[str, BrokerInstance], optouts: OptOuts, metrics: Metrics,
                 outbox: Outbox, sender_for: SenderFor,
                 failures: Callable[[], list[PluginRecord]]) -> None:
        self._storage = store
        self._ledger = ledger
        self._optouts = optouts
        self._metrics = metrics
        self._outbox = outbox
        self._planner = Planner(settings, brokers, sender_for, failures)
        self._settings = settings
        # The planner's, bound: what a send goes out from, and all it is (no storing).
        self.sender = self._planner.sender
        self.plan = self._planner.plan

    @property
    def routes(self) -> list[OutboundRoute]:
        """The outbound routes in order (O2)."""
        return self._planner.routes

    @routes.setter
    def routes(self, routes: list[OutboundRoute]) -> None:
        self._planner.routes = routes

    def configure(self, settings: Settings) -> None:
        """Take new outbound routes (a live change); a send being planned keeps the
        routes it started with."""
        self._planner.routes = compile_outbound(settings.outbound)
        self._settings = settings

    # -- storing ----------------------------------------------------------------------

    async def send(self, request: SendRequest) -> Queued:
        """Queue ``request``'s messages; :class:`SendError` or ``OptedOut`` when
        refused (counted in ``smshost_sends_refused``)."""
        try:
            return await self._queue(request)
        except (SendError, OptedOut) as exc:
            self._metrics.send_refused(request.source, refusal_code(exc))
            raise

    async def _queue(self, request: SendRequest) -> Queued:
        if request.idempotency_key:
            replay = await self._replay(request)
            if replay is not None:
                return replay
        wait = not_before(request.send_at, self._outbox.clock(),
                          self._settings.outbox.schedule_horizon)
        if "status_callback" in request.attrs:  # attrs.status_callback is ours: checked
            raise SendError(400, "bad_parameter", "metadata: status_callback is reserved; "
                            "name the URL in the status_callback field")
        if request.status_callback is not None:
            problem = callback_refusal(request.status_callback, self._settings.callbacks)
            if problem:
                raise SendError(400, "bad_parameter", f"status_callback: {problem}")
        plan = self.plan(request)
        optout = None
        if not request.optout_exempt:
            # Opt-outs are kept in E.164, as inbound numbers are stored: compare the same
            # form whatever the account or the caller wrote.
            region = plan.instance.region(plan.account)
            local = plan.local
            optout = (normalize(local, region) if local else local, normalize(plan.to, region))
        key = (plan.instance.name, plan.account.id)
        reserved = wait is None and self._outbox.reserve(key)
        written = self._storage.write_soon(
            lambda db: self._store(db, request, plan, wait, optout, reserved))
        try:
            stored = await asyncio.shield(written)
        except asyncio.CancelledError:
            # The caller gave up, not the write: it may still commit a row claimed by
            # this node, which nobody else would launch until a restart. The write's
            # own end launches it (or gives the reservation back).
            if reserved:
                written.add_done_callback(partial(self._abandoned, key))
            raise
        except BaseException:
            if reserved:
                self._outbox.release(key)
            raise
        if isinstance(stored, OptedOut):
            if reserved:
                self._outbox.release(key)
            raise stored
        messages, events, consolidated, claimed = stored
        if reserved and claimed is None:  # merged, or the same key's: nothing to send
            self._outbox.release(key)
        if events is None:  # the same key raced in and won: its messages, nothing new
            return self._replayed(messages)
        try:
            await self._ledger.announce(ledger.created(zip(messages, events, strict=True)))
        finally:  # committed claimed: sent whatever a hook did
            if claimed is not None:
                self._outbox.launch(claimed)
        self._outbox.wake()
        route = plan.decision.route.name if plan.decision.route else None
        return Queued(messages, plan.encoding, plan.segments, route, False, consolidated)

    def _abandoned(self, key: Key, written: asyncio.Future[Any]) -> None:
        """The write of a send whose caller was cancelled has ended: its claimed message
        is sent (not announced: nobody waits for it), or the reservation given back."""
        claimed = None
        if not written.cancelled() and written.exception() is None and \
                not isinstance(written.result(), OptedOut):
            claimed = written.result()[3]
        if claimed is None:
            self._outbox.release(key)
        else:
            self._outbox.launch(claimed)
            self._outbox.wake()

    async def submit(self, request: SendRequest) -> Message:
        """As :meth:`send`, for callers that want the (first) message."""
        return (await self.send(request)).messages[0]

    async def send_or_record(self, request: SendRequest) -> Queued:
        """As :meth:`send`, for senders nobody answers (handlers, sinks, opt-out
        confirmations): a send refused (no route, opted out, no account...) is stored
        as a ``failed`` message with the reason (:mod:`host.refusals`), not raised."""
        try:
            return await self.send(request)
        except (SendError, OptedOut) as exc:
            return await record_refusal(self._ledger, request, exc)

    async def reply(self, message: Message, text: str, source: str = "handler",
                    optout_exempt: bool = False) -> Message:
        """Answer an inbound ``message``: from the broker, account and number that
        received it, without outbound routes (B8). Refused, the message returned is
        ``failed``, with the reason (see :meth:`send_or_record`)."""
        queued = await self.send_or_record(SendRequest(
            to=message.remote or "", text=text, broker=message.broker,
            account=message.account, attrs={"in_reply_to": message.id}, source=source,
            optout_exempt=optout_exempt, reply_to=message))
        return queued.messages[0]

    async def _replay(self, request: SendRequest) -> Queued | None:
        row = self._storage.read_now(lambda db: db.execute(
            "select message_ids, request from idempotency where key = ?",
            [request.idempotency_key]).fetchone())
        if row is None:
            return None
        if row[1] != request.fingerprint():
            raise SendError(422, "idempotency_mismatch", "this Idempotency-Key was used for "
                            "a different request; use a new key for a new message")
        ids = json.loads(row[0])
        found = self._storage.read_now(lambda db: [
            Message.from_row(r) for i in ids
            for r in db.query("select * from messages where id = ?", [i])])
        if not found:  # purged long ago: the key is forgotten, this is a new message
            return None
        return self._replayed(found)

    @staticmethod
    def _replayed(found: list[Message]) -> Queued:
        first = found[0] if found else None
        return Queued(found, first.encoding or "gsm7" if first else "gsm7",
                      sum(m.segments or 1 for m in found), first.route if first else None,
                      replayed=True)

    def _store(self, db: Database, request: SendRequest, plan: Plan, wait: float | None,
               optout: tuple[str | None, str] | None, claim: bool
               ) -> tuple[list[Message], list[StatusEvent | None] | None, bool,
                          Claimed | None] | OptedOut:
        """Store ``request``'s messages; with ``claim``, the first one claimed by this
        node when it is a new message (not merged), returned as claimed. Opted out:
        nothing stored, the refusal returned."""
        if optout is not None and (refused := OptOuts.refusal(db, *optout)) is not None:
            return refused  # raised by the caller: nothing written, the group untouched
        if request.idempotency_key:  # the same key raced in: answer with its messages
            row = db.execute("select message_ids, request from idempotency where key = ?",
                             [request.idempotency_key]).fetchone()
            ids = json.loads(row[0]) if row is not None else []
            alive = [i for i in ids if db.execute("select 1 from messages where id = ?",
                                                  [i]).fetchone()]
            if row is not None and alive:
                if row[1] != request.fingerprint():
                    raise SendError(422, "idempotency_mismatch", "this Idempotency-Key was "
                                    "used for a different request; use a new key for a new "
                                    "message")
                return [_get(db, i) for i in alive], None, False, None
        alone = wait is not None or request.status_callback is not None
        merged = (self._consolidate(db, request, plan)
                  if len(plan.bodies) == 1 and not alone else None)
        claimed = None
        if merged is not None:
            result: tuple[list[Message], list[StatusEvent | None], bool] = (
                [merged], [None], True)
        else:
            stored: list[tuple[Message, StatusEvent | None]] = []
            for n, body in enumerate(plan.bodies, 1):  # each part waits for the one before
                after = stored[-1][0].id if stored else None
                message, event = self._insert_one(db, request, plan, body, n, after, wait,
                                                  claim and n == 1)
                stored.append((message, event))
                if claim and n == 1:
                    claimed = self._claimed(db, message)
            result = ([m for m, _ in stored], [e for _, e in stored], False)
        if request.idempotency_key:
            db.execute("insert into idempotency (key, message_ids, request, created_at) "
                       "values (?, ?, ?, ?) on conflict (key) do update set message_ids = "
                       "excluded.message_ids, request = excluded.request, created_at = "
                       "excluded.created_at", [request.idempotency_key,
                                               json.dumps([m.id for m in result[0]]),
                                               request.fingerprint(), utcnow()])
        return (*result, claimed)

    def _claimed(self, db: Database, message: Message) -> Claimed:
        """``message`` (just stored with its outbox row claimed, see :meth:`_insert_one`)
        ``sending``, as ``claims.claim`` leaves it, for its first attempt."""
        at = utcnow()
        ledger.mark_sending(db, [message.id], at)
        return Claimed(replace(message, status="sending", updated_at=at), 1,
                       self._outbox.clock())

    def _insert_one(self, db: Database, request: SendRequest, plan: Plan, body: str,
                    part: int, after: int | None, wait: float | None, claim: bool = False
                    ) -> tuple[Message, StatusEvent | None]:
        attrs = dict(request.attrs)
        if request.classification:
            attrs["classification"] = request.classification
        if request.status_callback is not None:
            attrs["status_callback"] = request.status_callback
        if len(plan.bodies) > 1:
            attrs["part"], attrs["part_of"] = part, len(plan.bodies)
        seg = count_segments(body)
        detail: dict[str, Any] = {"by": request.by} if request.by else {}
        if wait is not None:
            detail["send_at"] = from_epoch(wait)
        message, event = ledger.insert(db, NewMessage(
            direction="out", body=body, status="queued" if wait is None else "scheduled",
            broker=plan.instance.name, account=plan.account.id, local=plan.local,
            remote=plan.to, encoding=seg.encoding, segments=seg.segments, attrs=attrs,
            source=request.source, detail=detail or None,
            route=plan.decision.route.name if plan.decision.route else None))
        now = self._outbox.clock() if wait is None else wait  # max_age counts from then
        # claimed: in flight for its first attempt, by this node (as claims.claim does)
        db.conn.execute("insert into outbox (message_id, next_attempt_at, enqueued_at, "
                        "broker, account, waits_for, in_flight, attempts, claimed_by) "
                        "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [message.id, now, now, plan.instance.name, plan.account.id, after,
                         int(claim), int(claim), self._outbox.node if claim else None])
        return message, event

    def _consolidate(self, db: Database, request: SendRequest, plan: Plan) -> Message | None:
        """Merge into a message still waiting (never tried) when it all fits one segment.

        The merged-in message's own attributes (metadata, classification) are kept, in
        order, in the waiting message's ``attrs.merged``; ``attrs.consolidated`` counts
        the messages in it.
        """
        if not plan.instance.settings.mt.consolidate:
            return None
        row = db.conn.execute(
            "select m.id, m.body, m.attrs from messages m join outbox o "
            "on o.message_id = m.id "
            "where m.direction = 'out' and m.status = 'queued' and m.broker = ? "
            "and m.account = ? and m.remote = ? and m.local is ? and o.attempts = 0 "
            "and o.in_flight = 0 and json_extract(m.attrs, '$.part') is null "
            "and json_extract(m.attrs, '$.status_callback') is null "
            "order by m.id desc limit 1",
            [plan.instance.name, plan.account.id, plan.to, plan.local]).fetchone()
        if row is None:
            return None
        text = f"{row[1]}\n{plan.bodies[0]}"
        seg = count_segments(text)
        if seg.segments > 1:
            return None
        attrs = json.loads(row[2] or "{}")
        joining = dict(request.attrs)
        if request.classification:
            joining["classification"] = request.classification
        attrs["merged"] = [*attrs.get("merged", ()), joining]
        attrs["consolidated"] = int(attrs.get("consolidated", 1)) + 1
        ledger.rewrite(db, row[0], text, seg.encoding, attrs)
        return _get(db, row[0])


def _get(db: Database, message_id: int) -> Message:
    return Message.from_row(next(db.query("select * from messages where id = ?",
                                          [message_id])))
