"""Ordered inbound routes: whole-field RE2 matching, first match wins (SPEC R1-R5).

With no routes configured every message goes to email (R3); once any route exists the
last one must be the default catch-all (checked when the configuration loads).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.config.routes import InboundRouteSettings
from host.models import Message
from host.outage import Outage, expected
from host.quoting import quoted
from host.routing.patterns import compile_pattern
from host.sinks.base import Delivery

if TYPE_CHECKING:
    from host.sinks.base import Sink

log = logging.getLogger("smshost.routing")

FIELDS = {"ani": "remote", "dnis": "local", "body": "body"}


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    destination: str
    target: str = ""
    type: str = "body"
    pattern: str = ".*"
    default: bool = False
    compiled: Any = None

    def field(self, message: Message) -> str:
        return getattr(message, FIELDS[self.type]) or ""

    def matches(self, message: Message) -> bool:
        return self.default or self.compiled.fullmatch(self.field(message)) is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "destination": self.destination, "target": self.target,
                "type": self.type, "pattern": self.pattern, "default": self.default}


EMAIL_ONLY = Route("email", "email", "", "body", ".*", True)


def compile_routes(routes: tuple[InboundRouteSettings, ...]) -> list[Route]:
    """Routes ready to match; patterns were checked when the configuration loaded."""
    if not routes:
        return [EMAIL_ONLY]
    out = []
    for r in routes:
        compiled, problem = compile_pattern(r.pattern)
        assert problem is None, problem
        out.append(Route(r.name, r.destination, r.target, r.type, r.pattern, r.default,
                         compiled))
    return out


@dataclass(frozen=True, slots=True)
class Decision:
    """Which route matched, and why each route before it did not."""

    route: Route
    tried: list[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {"route": self.route.to_json(),
                "tried": [{"route": name, "reason": why} for name, why in self.tried]}


def select(routes: list[Route], message: Message) -> Decision:
    tried: list[tuple[str, str]] = []
    for route in routes:
        if route.matches(message):
            return Decision(route, tried)
        field = FIELDS[route.type]
        tried.append((route.name, f"{route.type} {quoted(route.field(message))} does not "
                      f"match {quoted(route.pattern)} (whole {field})"))
    return Decision(routes[-1], tried)  # unreachable with a default route; be safe


def default_route(routes: list[Route]) -> Route:
    return next((r for r in reversed(routes) if r.default), routes[-1])



async def deliver(sinks: Mapping[str, Sink], message: Message, route: Route,
                  outage: Outage) -> Delivery:
    """Hand ``message`` to ``route``'s sink; what it raises is a failed delivery."""
    sink = sinks.get(route.destination)
    if sink is None:
        return Delivery.failed(f"no {route.destination} sink is available")
    try:
        return await sink.deliver(message, route)
    # A sink is a plugin: whatever it raises is a failed delivery, not a crash; the
    # database refusing the sink's write is a delivery to try again (BLE001).
    except Exception as exc:  # noqa: BLE001
        if expected(exc):
            outage.failed(exc, f"message {message.id} to {route.destination}")
            return Delivery.retry(f"{route.destination} sink: {exc}")
        log.exception("sink %s failed on message %d", route.destination, message.id)
        return Delivery.failed(f"{route.destination} sink error: {type(exc).__name__}: {exc}")
