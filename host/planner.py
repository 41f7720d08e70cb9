"""Planning a send: everything about it decided, nothing stored (SPEC O2-O4, O9, B8).

For a new message: the sender (an account, optionally at a broker, or the account of a
workgroup or user, O9), then the outbound route for the destination (its broker and
account, the number to dial, whether the sender's classification may use it, O2). For
a reply (``reply_to``): the broker, account and number that received the message it
answers, without routes (B8). Then for both: the number, E.164 when the broker
internationalizes and valid (O3), and the bodies, by encoding and length per the broker's
``parsing``: unaltered, split into one message per segment, or truncated (O4).
:class:`host.outbound.Outbound` stores what :class:`Planner` planned.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import phonenumbers

from host.encoding import segments as count_segments
from host.encoding import truncate
from host.models import Message
from host.numbers import normalize
from host.routing.outbound import OutboundDecision, RouteRefused, compile_outbound, \
    select_outbound
from host.sends import SendError, SendRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from host.brokers.instances import BrokerInstance
    from host.config.brokers import AccountSettings
    from host.config.settings import Settings
    from host.plugins import PluginRecord

    SenderFor = Callable[[str, str], "tuple[str | None, str] | None"]


@dataclass
class Plan:
    """A send decided: where it goes out from, to whom, in which bodies."""

    instance: BrokerInstance
    account: AccountSettings
    local: str | None  # the number it goes out from
    to: str
    bodies: list[str]
    encoding: str
    segments: int
    decision: OutboundDecision


class Planner:
    """Plans sends. ``sender_for(kind, name)`` is the (broker, account) of a workgroup
    or user (the ``sender_for`` hook); ``failures()`` the problems plugins and the
    configuration had when loaded (a broker disabled by one is named)."""

    def __init__(self, settings: Settings, brokers: Mapping[str, BrokerInstance],
                 sender_for: SenderFor, failures: Callable[[], list[PluginRecord]]) -> None:
        self._brokers = brokers
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
                            f"{kind} {name!r} has no account to send from: give it "
                            f"one (smshost {kind} set {name} --account ...) or set "
                            "account in its [[queue.queues]] table")
        return broker, account

    # -- planning ---------------------------------------------------------------------

    def plan(self, request: SendRequest) -> Plan:
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
        return Plan(instance, account, local, to, *self._bodies(instance, request.text),
                     decision)

    def _routed(self, request: SendRequest
                ) -> tuple[BrokerInstance, AccountSettings, OutboundDecision]:
        """The sender and the outbound route of a new message (O2)."""
        instance, account = self._sender_of(request)
        try:
            decision = select_outbound(self.routes, request.to.strip(), request.classification,
                                       request.held)
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
