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
5. opt-out: a recipient who texted STOP to that number is refused (R6);
6. encoding and length per the broker's ``parsing``: unaltered, split into one
   message per segment, or truncated (O4); or merged into a message still waiting
   to the same number from the same account (O5);
7. everything stored in one transaction, with the outbox rows: persisted before any
   network call (O6).

A refused send raises for the API to answer; ``send_or_record`` (handlers, sinks,
opt-out confirmations: nobody to answer) stores it as a failed message instead
(:mod:`host.refusals`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import phonenumbers

from host.encoding import segments as count_segments
from host.encoding import truncate
from host import ledger
from host.ledger import NewMessage
from host.models import Message, StatusEvent, utcnow
from host.numbers import normalize
from host.optout import OptedOut
from host.refusals import record_refusal, refusal_code
from host.routing.outbound import OutboundDecision, RouteRefused, compile_outbound, \
    select_outbound
from host.sends import Queued, SendError, SendRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sqlite_utils import Database

    from host.brokers.instances import BrokerInstance
    from host.config.brokers import AccountSettings
    from host.config.settings import Settings
    from host.ledger import Ledger
    from host.metrics import Metrics
    from host.optout import OptOuts
    from host.plugins import PluginRecord
    from host.store import Store

    SenderFor = Callable[[str, str], "tuple[str | None, str] | None"]


class Outbox(Protocol):
    """What queuing needs of the outbox worker (:class:`host.brokers.sender.Sender`)."""

    @property
    def clock(self) -> Callable[[], float]: ...

    def wake(self) -> None: ...


@dataclass
class _Plan:
    instance: BrokerInstance
    account: AccountSettings
    local: str | None  # the number it goes out from
    to: str
    bodies: list[str]
    encoding: str
    segments: int
    decision: OutboundDecision


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
        self._brokers = brokers
        self._optouts = optouts
        self._metrics = metrics
        self._outbox = outbox
        self._sender_for = sender_for
        self._failures = failures
        self.routes = compile_outbound(settings.outbound)

    # -- the sender ---------------------------------------------------------------------

    def sender(self, broker: str | None, account: str | None
               ) -> tuple[BrokerInstance, AccountSettings]:
        """The broker instance and account a message goes out from."""
        instances = [i for i in self._brokers.values() if i.settings.mt_active]
        if broker is not None:
            instances = [i for i in instances if i.name == broker]
            if not instances:
                disabled, why = self._not_sending(broker)
                raise SendError(422, "broker_disabled" if disabled else "unknown_broker", why)
        for instance in instances:
            if account is None:
                return instance, next(iter(instance.accounts.values()))
            if account in instance.accounts:
                return instance, instance.accounts[account]
        if not instances:
            raise SendError(422, "no_broker", "no broker is configured to send")
        raise SendError(422, "unknown_account", f"no account {account!r} can send"
                        + (f" through {broker!r}" if broker else ""))

    def _not_sending(self, broker: str) -> tuple[bool, str]:
        """Why ``broker`` cannot send, and whether a problem in its configuration
        disabled it (then named with file and line, as ``smshost check`` does)."""
        problems = [r.error for r in self._failures()
                    if r.kind == "broker instance" and r.name == broker and r.error]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return True, (f"broker {broker!r} is disabled by a problem in its configuration: "
                          f"{problems[0]}{more}; see smshost check")
        if broker in self._brokers:
            return False, (f"broker {broker!r} is not configured to send (its enabled or "
                           "mt.enabled is false)")
        return False, f"no broker {broker!r} is configured"

    def _sender_of(self, request: SendRequest) -> tuple[BrokerInstance, AccountSettings]:
        if request.workgroup or request.user:
            kind, name = ("workgroup", request.workgroup) if request.workgroup else \
                ("user", request.user)
            broker, account = self._queue_account(kind, name or "")
            return self.sender(request.broker or broker, account)
        return self.sender(request.broker, request.account)

    def _queue_account(self, kind: str, name: str) -> tuple[str | None, str]:
        """The broker and account of a workgroup or user (the ``sender_for`` hook: the
        queue sink's ``[[queue.queues]]`` account)."""
        found = self._sender_for(kind, name)
        if found is None:
            raise SendError(422, f"unknown_{kind}", f"no {kind} named {name!r}")
        broker, account = found
        if not account:
            raise SendError(422, "no_account",
                            f"{kind} {name!r} has no account to send from: set "
                            "account in its [[queue.queues]] table")
        return broker, account

    # -- planning ---------------------------------------------------------------------

    def plan(self, request: SendRequest) -> _Plan:
        """Decide everything about a send without storing anything (also for tests)."""
        if not request.text:
            raise SendError(422, "empty_text", "the message has no text")
        if request.reply_to is not None:  # the pairing: no outbound route (B8)
            instance, account, local = self._receiver(request.reply_to)
            decision = OutboundDecision(None, request.to.strip(), [])
        else:
            instance, account, decision = self._routed(request)
            local = account.local_address
        to = self._number(instance, account, decision.number)
        return _Plan(instance, account, local, to, *self._bodies(instance, request.text),
                     decision)

    def _routed(self, request: SendRequest
                ) -> tuple[BrokerInstance, AccountSettings, OutboundDecision]:
        """The sender and the outbound route of a new message (O2)."""
        instance, account = self._sender_of(request)
        try:
            decision = select_outbound(self.routes, request.to.strip(), request.classification)
        except RouteRefused as exc:
            raise SendError(exc.status, exc.code, str(exc)) from None
        route = decision.route
        if route is not None and (route.broker or route.account):
            named = bool(request.account or request.workgroup or request.user)
            instance, account = self._route_sender(decision, instance, account, named)
        return instance, account, decision

    def _receiver(self, inbound: Message) -> tuple[BrokerInstance, AccountSettings, str | None]:
        """The broker instance, account and number that received ``inbound``: a reply
        goes out from them. The account's own form of the number when it is the same."""
        instance = self._brokers.get(inbound.broker or "")
        if instance is None or not instance.settings.mt_active:
            disabled, why = self._not_sending(inbound.broker or "")
            raise SendError(422, "broker_disabled" if disabled else "no_broker",
                            f"{why} (it received message {inbound.id})")
        account = instance.accounts.get(inbound.account or "")
        if account is None:
            raise SendError(422, "unknown_account", f"account {inbound.account!r} of broker "
                            f"{instance.name!r}, which received message {inbound.id}, is not "
                            "configured")
        own = account.local_address
        if inbound.local and not (own and normalize(own, instance.region(account)) ==
                                  inbound.local):
            return instance, account, inbound.local
        return instance, account, own or inbound.local

    def _route_sender(self, decision: OutboundDecision, instance: BrokerInstance,
                      account: AccountSettings, named: bool
                      ) -> tuple[BrokerInstance, AccountSettings]:
        """The route's broker and account, unless the sender named an account there
        (the route's account is for senders naming none, or one at another broker)."""
        route = decision.route
        assert route is not None and (route.broker or route.account)
        same_broker = route.broker is None or instance.name == route.broker
        if same_broker and (named or route.account is None):
            return instance, account
        return self.sender(route.broker, route.account)

    def _number(self, instance: BrokerInstance, account: AccountSettings, number: str) -> str:
        return _dialable(number.strip(), instance.region(account),
                         instance.settings.mt.internationalize)

    def _bodies(self, instance: BrokerInstance, text: str) -> tuple[list[str], str, int]:
        seg = count_segments(text)
        limit = instance.definition.max_segments
        parsing = instance.settings.mt.parsing
        if parsing == "split" and seg.segments > 1:
            # segments: all of them, as a replay of the request counts them
            return [p for p in seg.parts], seg.encoding, seg.segments
        if parsing == "truncate" and seg.segments > 1:
            short = truncate(text)
            return [short], count_segments(short).encoding, 1
        if seg.segments > limit:
            raise SendError(422, "too_long", f"{seg.segments} segments, but broker "
                            f"{instance.name} takes at most {limit}; shorten the text or "
                            "set mt.parsing to split or truncate")
        return [text], seg.encoding, seg.segments

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
        plan = self.plan(request)
        if not request.optout_exempt:
            # Opt-outs are kept in E.164, as inbound numbers are stored: compare the same
            # form whatever the account or the caller wrote.
            region = plan.instance.region(plan.account)
            local = plan.local
            await self._optouts.check(normalize(local, region) if local else local,
                                           normalize(plan.to, region))
        stored = await self._storage.write(lambda db: self._store(db, request, plan))
        messages, events, consolidated = stored
        if events is None:  # the same key raced in and won: its messages, nothing new
            return self._replayed(messages)
        await self._ledger.announce(ledger.created(zip(messages, events, strict=True)))
        self._outbox.wake()
        route = plan.decision.route.name if plan.decision.route else None
        return Queued(messages, plan.encoding, plan.segments, route, False, consolidated)

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

    def _store(self, db: Database, request: SendRequest, plan: _Plan
               ) -> tuple[list[Message], list[StatusEvent | None] | None, bool]:
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
                return [_get(db, i) for i in alive], None, False
        merged = self._consolidate(db, request, plan) if len(plan.bodies) == 1 else None
        if merged is not None:
            result: tuple[list[Message], list[StatusEvent | None], bool] = (
                [merged], [None], True)
        else:
            stored: list[tuple[Message, StatusEvent | None]] = []
            for n, body in enumerate(plan.bodies, 1):  # each part waits for the one before
                after = stored[-1][0].id if stored else None
                stored.append(self._insert_one(db, request, plan, body, n, after))
            result = ([m for m, _ in stored], [e for _, e in stored], False)
        if request.idempotency_key:
            db.execute("insert or replace into idempotency (key, message_ids, request, "
                       "created_at) values (?, ?, ?, ?)", [request.idempotency_key,
                                               json.dumps([m.id for m in result[0]]),
                                               request.fingerprint(), utcnow()])
        return result

    def _insert_one(self, db: Database, request: SendRequest, plan: _Plan, body: str,
                    part: int, after: int | None) -> tuple[Message, StatusEvent | None]:
        attrs = dict(request.attrs)
        if request.classification:
            attrs["classification"] = request.classification
        if len(plan.bodies) > 1:
            attrs["part"], attrs["part_of"] = part, len(plan.bodies)
        seg = count_segments(body)
        message, event = ledger.insert(db, NewMessage(
            direction="out", body=body, status="queued", broker=plan.instance.name,
            account=plan.account.id, local=plan.local, remote=plan.to,
            encoding=seg.encoding, segments=seg.segments, attrs=attrs, source=request.source,
            route=plan.decision.route.name if plan.decision.route else None))
        now = self._outbox.clock()
        db.conn.execute("insert into outbox (message_id, next_attempt_at, enqueued_at, "
                        "broker, account, waits_for) values (?, ?, ?, ?, ?, ?)",
                        [message.id, now, now, plan.instance.name, plan.account.id, after])
        return message, event

    def _consolidate(self, db: Database, request: SendRequest, plan: _Plan) -> Message | None:
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


@functools.lru_cache(maxsize=65536)
def _dialable(raw: str, region: str, internationalize: bool) -> str:
    """The number to send to, checked with phonenumbers (cached: recipients repeat)."""
    digits = "".join(ch for ch in raw if ch.isdigit())
    if raw.isdigit() and 3 <= len(digits) <= 6:
        return digits  # a short code
    try:
        parsed = phonenumbers.parse(raw, region or None)
    except phonenumbers.NumberParseException as exc:
        raise SendError(422, "invalid_number", f"{raw!r} is not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise SendError(422, "invalid_number",
                        f"{raw!r} is not a valid phone number (region {region})")
    if internationalize:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return raw


def _get(db: Database, message_id: int) -> Message:
    return Message.from_row(next(db.query("select * from messages where id = ?",
                                          [message_id])))
