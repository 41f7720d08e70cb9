"""Settings of inbound routes and opt-out keywords, ``config/routes.toml`` (SPEC R1-R6)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from host.config.lines import KeyPath
from host.config.schema import DAY, a_name, at_least, each, greater_than, setting
from host.models import bounded_int

DESTINATIONS = ("chat", "handler", "queue", "email", "webhook")


@dataclass(frozen=True, slots=True)
class InboundRouteSettings:
    """One inbound route; the first whose pattern matches wins."""

    name: str = setting(help="Route name, unique; recorded with every message it routes.",
                        check=a_name)
    destination: str = setting(
        help="The sink matching messages go to: chat, handler, queue, email, webhook, or "
        "the kind of a sink plugin.")
    target: str = setting(
        "", help="The handler, queue or webhook name, or the email address (empty: the "
        "sink's default).")
    type: Literal["ani", "body", "dnis"] = setting(
        "body", help="What the pattern is matched against: ani (the sender's number), "
        "dnis (the number texted) or body. Numbers are in E.164 (+CC...).")
    pattern: str = setting(
        ".*", help="Regular expression (RE2: linear time, no backreferences or "
        "lookaround) that must match the whole field.")
    default: bool = setting(
        False, help="The catch-all route: required, and last, once any route exists. "
        "Messages whose route failed for good fall back to it.")


@dataclass(frozen=True, slots=True)
class OptOutSettings:
    """STOP/START/HELP keywords, handled before routing (per account: opt_out)."""

    enabled: bool = setting(True, help="Handle the keywords at all.")
    stop_words: tuple[str, ...] = setting(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"),
        help="A message that is exactly one of these (any case, trimmed) opts the sender "
        "out for the number it texted.", doc_default="STOP, STOPALL, UNSUBSCRIBE, CANCEL, "
        "END, QUIT")
    start_words: tuple[str, ...] = setting(
        ("START", "UNSTOP", "YES"), help="Opt the sender back in.",
        doc_default="START, UNSTOP, YES")
    help_words: tuple[str, ...] = setting(("HELP", "INFO"), help="Answered with help_reply.",
                                          doc_default="HELP, INFO")
    stop_reply: str = setting(
        "You are unsubscribed and will receive no more messages. Reply START to resubscribe.",
        help="Confirmation sent after an opt-out (empty: none).")
    start_reply: str = setting("You are subscribed again. Reply STOP to unsubscribe.",
                               help="Confirmation sent after an opt-in (empty: none).")
    help_reply: str = setting("Reply STOP to unsubscribe.", help="Answer to HELP.")


_each_delay = each(at_least(0, DAY))


def _retry_delays(delays: tuple[float, ...]) -> str | None:
    if len(delays) > 100:
        return f"at most 100 retries; got {len(delays)}"
    return _each_delay(delays)


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """How routing runs."""

    enabled: bool = setting(
        True, help="Route inbound messages. When false they are only stored, and are "
        "routed once routing is turned back on.")
    at_ingest: bool = setting(
        True, help="Route a broker's MO in the write that stores it when it can be (one "
        "commit before its delivery instead of three): its conversation has no earlier "
        "message still to route and its lane is this node's, it is no opt-out keyword, "
        "and the route's sink takes entries in that write (the webhook sink does). Any "
        "other MO, and any failure on the way, is routed by the router as before.")
    workers: int = setting(
        64, help="Messages routed at the same time (messages of one conversation are "
        "always routed in order). Each routing waits on its commits, so under a burst of "
        "MO this is what lets routing keep up with ingest; destinations keep their own "
        "limits (email and webhook connections, the handler thread pool). At most 10000.",
        check=greater_than(0, 10_000))
    retry_delays: tuple[float, ...] = setting(
        (1.0, 5.0, 30.0, 120.0, 600.0),
        help="Seconds to wait before each retry of a destination that failed for now "
        "(each at most a day, at most 100 of them); after the last one the message falls "
        "back to the default route.",
        doc_default="[1, 5, 30, 120, 600]", check=_retry_delays)
    sweep_s: float = setting(
        1.0, help="Seconds between two looks for messages no node is routing (stored "
        "while routing was off, or whose node stopped or died: its lanes expire after "
        "lane_ttl). From 0.05 to 60; it also renews the lanes this node is routing, so "
        "it runs at least every third of lane_ttl.", check=at_least(0.05, 60))
    lane_ttl: float = setting(
        10.0, help="Seconds a node holds a conversation's lane without renewing it "
        "(several nodes on one PostgreSQL database route a conversation one node at a "
        "time, in order): the messages of a node that died are routed by another after "
        "this. From 2 to 3600.", check=at_least(2, 3600))


def route_problems(routes: tuple[InboundRouteSettings, ...]) -> Iterator[tuple[KeyPath, str]]:
    from host.routing.patterns import compile_pattern

    names: set[str] = set()
    defaults = [i for i, r in enumerate(routes) if r.default]
    for i, route in enumerate(routes):
        if route.name in names:
            yield ("inbound", i, "name"), f"route name {route.name!r} is used twice"
        names.add(route.name)
        problem = compile_pattern(route.pattern)[1]
        if problem:
            yield ("inbound", i, "pattern"), f"route {route.name!r}: {problem}"
    if routes and not defaults:
        yield ("inbound",), ("once any route exists, a default route (default = true) must "
                             "be the last one")
    for i in defaults[:-1]:
        yield ("inbound", i, "default"), "only one route may be the default"
    if defaults and defaults[-1] != len(routes) - 1:
        yield ("inbound", defaults[-1], "default"), "the default route must be the last one"
    for i in defaults:
        if routes[i].pattern != ".*":
            yield (("inbound", i, "pattern"),
                   "the default route matches everything; drop its pattern")


@dataclass(frozen=True, slots=True)
class OutboundRouteSettings:
    """One outbound route; the first whose pattern matches the destination wins (O2)."""

    name: str = setting(help="Route name, unique; recorded with every message it sends.",
                        check=a_name)
    pattern: str = setting(
        ".*", help="RE2 pattern the destination number must match whole (as given; use "
        "groups to capture parts for format).")
    format: str = setting(
        "$0", help="The number to send to: $0 is the whole destination, $1, $2... its "
        "groups (e.g. pattern '0(\\d{9})', format '+44$1').")
    broker: str | None = setting(
        None, help="Broker instance to send through; default: the sender's account's.")
    account: str | None = setting(
        None, help="Account to send from when the sender names none (or one at another "
        "broker).")
    classifications: tuple[str, ...] = setting(
        (), help="Only senders whose classification is listed may use this route; empty: "
        "everyone.", doc_default="[] (everyone)")


def outbound_problems(routes: tuple[OutboundRouteSettings, ...]
                      ) -> Iterator[tuple[KeyPath, str]]:
    import re

    from host.routing.patterns import compile_pattern

    names: set[str] = set()
    for i, route in enumerate(routes):
        if route.name in names:
            yield ("outbound", i, "name"), f"outbound route name {route.name!r} is used twice"
        names.add(route.name)
        compiled, problem = compile_pattern(route.pattern)
        if problem:
            yield ("outbound", i, "pattern"), f"route {route.name!r}: {problem}"
            continue
        groups = compiled.groups if compiled is not None else 0
        for ref in re.findall(r"\$(\d+)", route.format):
            if bounded_int(ref, groups) is None:
                yield ("outbound", i, "format"), (
                    f"route {route.name!r}: ${ref} but the pattern has {groups} group(s)")
