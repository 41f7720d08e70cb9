"""Ordered outbound routes (SPEC O2): destination pattern, number format, broker, account
and access control by the sender's classification. First match wins."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from host.config.routes import OutboundRouteSettings
from host.quoting import quoted
from host.routing.patterns import compile_pattern

_REF = re.compile(r"\$(\d+)")


def _formatted(template: str, match: re.Match[str]) -> str:
    """``template`` with ``$0`` (the whole number matched) and ``$1``.. (its groups)."""
    return _REF.sub(lambda ref: match.group(int(ref.group(1))) or "", template)


@dataclass(frozen=True, slots=True)
class OutboundRoute:
    name: str
    pattern: str
    format: str
    broker: str | None
    account: str | None
    classifications: tuple[str, ...]
    compiled: Any

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pattern": self.pattern, "format": self.format,
                "broker": self.broker, "account": self.account,
                "classifications": list(self.classifications)}


class RouteRefused(Exception):
    """No route, or the route refuses the sender: ``status`` 422 or 403."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class OutboundDecision:
    route: OutboundRoute | None  # None: no routes configured
    number: str
    tried: list[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {"route": self.route.to_json() if self.route else None, "number": self.number,
                "tried": [{"route": n, "reason": why} for n, why in self.tried]}


def compile_outbound(routes: tuple[OutboundRouteSettings, ...]) -> list[OutboundRoute]:
    out = []
    for r in routes:
        compiled, problem = compile_pattern(r.pattern)
        assert problem is None, problem
        out.append(OutboundRoute(r.name, r.pattern, r.format, r.broker, r.account,
                                 r.classifications, compiled))
    return out


def select_outbound(routes: list[OutboundRoute], to: str, classification: str | None,
                    held: tuple[str, ...] | None = None) -> OutboundDecision:
    """The route for ``to`` and the number to send to; :class:`RouteRefused` otherwise.
    ``held``: the classifications of a caller that named none (host.rights): the first
    route matching ``to`` is used when it allows one of them."""
    if not routes:
        return OutboundDecision(None, to, [])
    tried = []
    for route in routes:
        match = route.compiled.fullmatch(to)
        if match is None:
            tried.append((route.name, f"{quoted(to)} does not match {quoted(route.pattern)}"))
            continue
        if classification is None and held:
            classification = next((c for c in route.classifications if c in held), None)
        if route.classifications and classification not in route.classifications:
            who = f"classification {classification!r}" if classification else \
                f"the sender's classifications ({', '.join(held)})" if held else \
                "a sender without a classification"
            raise RouteRefused(403, "route_forbidden",
                               f"outbound route {route.name!r} does not allow {who}; it "
                               f"allows {', '.join(route.classifications)}")
        number = _formatted(route.format, match)
        return OutboundDecision(route, number, tried)
    raise RouteRefused(422, "no_route", f"no outbound route matches {quoted(to)}; tried "
                       + ", ".join(name for name, _ in tried))
