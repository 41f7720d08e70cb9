"""The route tester (SPEC R5): which route a message would take, and why."""

from __future__ import annotations

from host.config.settings import Settings
from host.models import Message
from host.numbers import normalize
from host.routing.inbound import Decision, compile_routes, select


def sample_message(ani: str, dnis: str, body: str, region: str = "US") -> Message:
    return Message(0, "in", None, None, normalize(dnis, region) if dnis else "",
                   normalize(ani, region), body, None, None, "received", None, "", "", {})


def explain(settings: Settings, *, ani: str, dnis: str = "", body: str = "",
            region: str = "US") -> Decision:
    return select(compile_routes(settings.inbound), sample_message(ani, dnis, body, region))
