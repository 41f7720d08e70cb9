"""The no-routes rule (R3) as a property of the sink class (``catch_all``), and the
handler sink built alone with the small collaborators the composition root gives it
(issue 12, points 2 and 3)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from host.config.settings import Settings
from host.core import Host
from host.defaults.handler import MAX_DEPTH, HandlerSink
from host.models import Message
from host.routing.inbound import Route
from host.sinks.base import Delivery, Sink
from host.sinks.registry import route_problems
from tests.conftest import base_config


class Claims(Sink):
    """A sink that takes every message with no routes, working or not."""

    catch_all = True

    def __init__(self, kind: str, problem: str | None = None) -> None:
        super().__init__(None, {})  # type: ignore[arg-type]
        self.problem = problem
        self.named = kind

    def check_target(self, target: str) -> str | None:
        return self.problem


def sinks(*claims: Claims, **others: Sink) -> dict[str, Sink]:
    return {**{c.named: c for c in claims}, **others}


def test_with_no_routes_the_catch_all_sink_must_work() -> None:
    settings = Settings()  # no routes, routing on
    assert route_problems(settings, sinks(Claims("email"))) == []
    assert route_problems(settings, sinks(Claims("email", "no SMTP server"))) == [
        ("email", "routes.toml: no routes, so every message goes to email, but: "
                  "no SMTP server")]


def test_the_message_names_the_sink_that_claims_catch_all() -> None:
    problems = route_problems(Settings(), sinks(Claims("crm", "no CRM url"),
                                                chat=Sink(None, {})))  # type: ignore[arg-type]
    assert problems == [("crm", "routes.toml: no routes, so every message goes to crm, "
                                "but: no CRM url")]


def test_without_a_catch_all_sink_no_routes_is_a_problem() -> None:
    problems = route_problems(Settings(), {"chat": Sink(None, {})})  # type: ignore[arg-type]
    assert problems == [("email", "routes.toml: no routes, so every message goes to email, "
                                  "but: no email sink is available")]


def test_an_email_sink_that_claims_nothing_is_still_the_one_checked() -> None:
    """A plugin's own email sink (replacing the shipped one) that does not set
    catch_all still takes every message with no routes (the router sends to "email"),
    so it is checked, not reported missing."""
    class MyEmail(Sink):
        kind = "email"

        def check_target(self, target: str) -> str | None:
            return "no SMTP host set"

    mine = MyEmail(None, {})  # type: ignore[arg-type]
    assert route_problems(Settings(), {"email": mine}) == [
        ("email", "routes.toml: no routes, so every message goes to email, but: "
                  "no SMTP host set")]
    assert route_problems(Settings(), {"email": Sink(None, {})}) == []  # type: ignore[arg-type]


def test_only_one_sink_may_claim_catch_all() -> None:
    problems = route_problems(Settings(), sinks(Claims("email"), Claims("crm")))
    assert problems == [("crm", "routes.toml: no routes, but the sinks crm, email each "
                                "claim catch_all: only one sink may take every message")]


def test_with_routing_off_catch_all_is_not_checked() -> None:
    off = dataclasses.replace(Settings(), routing=dataclasses.replace(
        Settings().routing, enabled=False))
    assert route_problems(off, sinks(Claims("email", "broken"), Claims("crm"))) == []


def test_the_shipped_email_sink_alone_claims_catch_all(
        host_factory: Callable[..., Host], tmp_path: Any) -> None:
    host = host_factory(smshost=base_config(tmp_path).replace("shipped = false",
                                                              "shipped = true"))
    host.load_plugins()
    assert [kind for kind, sink in host.sinks.items() if sink.catch_all] == ["email"]
    assert "handler" in host.sinks  # a default: there whatever plugins.shipped says


# -- the handler sink alone -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Call:
    failure: str | None
    data: dict[str, Any]
    route: Any


@dataclasses.dataclass(frozen=True)
class RouteTo:
    destination: str
    target: str = ""


class Scripts:
    """The handler scripts as the sink sees them: each name gives one call's result."""

    def __init__(self, calls: dict[str, Call]) -> None:
        self.calls = calls

    def check_target(self, target: str) -> str | None:
        return None if target in self.calls else f"no handler named {target!r}"

    async def call(self, message: Message, name: str) -> Call:
        return self.calls[name]


class Face:
    """``host.deliver``: what the sink hands a ``route_to`` on to."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str, str, dict[str, Any] | None]] = []

    async def deliver(self, message: Message, destination: str, target: str = "", *,
                      via: Route | None = None, data: dict[str, Any] | None = None
                      ) -> Delivery:
        self.delivered.append((destination, target, via.name if via else "", data))
        return Delivery.delivered("handed on")


def test_the_handler_sink_runs_the_script_and_hands_route_to_on_through_the_face() -> None:
    data = {"handler": "Sales", "version": "abc", "actions": ["route to queue sales"]}
    scripts = Scripts({"Echo": Call(None, {"handler": "Echo"}, None),
                       "Boom": Call("RuntimeError: boom", {}, None),
                       "Sales": Call(None, data, RouteTo("queue", "sales"))})
    face = Face()
    sink = HandlerSink(face, {}, scripts=scripts)  # type: ignore[arg-type]
    message = Message(1, "in", "sim", "main", "+15550100", "+14155550123", "hi", None, None,
                      "received", None, "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z")

    def deliver(target: str, name: str = "r") -> Delivery:
        return asyncio.run(sink.deliver(message, Route(name, "handler", target)))

    assert sink.check_target("Echo") is None and sink.check_target("Nope")
    assert deliver("Echo") == Delivery.delivered(handler="Echo")
    assert deliver("Boom") == Delivery.failed("RuntimeError: boom")
    assert deliver("Sales") == Delivery.delivered("handed on")
    assert face.delivered == [("queue", "sales", "r", data)]
    deep = " > ".join(["r"] * (MAX_DEPTH + 1))
    assert deliver("Sales", deep) == Delivery.failed(f"route_to chain deeper than {MAX_DEPTH}")
