"""The handler sink: a route's target names a handler script (SPEC H1, H3, H4).

The handler runs (async under a timeout, sync in a thread with a timeout); what it
recorded on its context (replies, sends, state) is carried out after it returns, and
``ctx.route_to(...)`` hands the message on. A handler that is missing, raises or times
out is a failed delivery: the router records why (with the traceback) and the message
falls back to the default route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from host.api import Delivery, Sink, hookimpl
from host.handlers.runner import HandlerFailed, run  # core behaviour: moves to host/defaults

if TYPE_CHECKING:
    from host.api import InboundRoute as Route
    from host.api import Message

MAX_DEPTH = 5  # route_to chains (a handler routing to a handler...)


class HandlerSink(Sink):
    kind = "handler"

    def check_target(self, target: str) -> str | None:
        if not target:
            return "a handler route names the handler in target"
        registry = self.host.handlers
        if registry.get(target) is None and target not in registry.failed:
            known = ", ".join(sorted(registry.entries)) or "none"
            return f"no handler named {target!r} (handlers: {known})"
        return None

    async def deliver(self, message: Message, route: Route) -> Delivery:
        entry = self.host.handlers.get(route.target)
        if entry is None:
            return Delivery.failed(f"no handler named {route.target!r} is loaded")
        ctx = await self.host.handlers.context(message, entry.name)
        state_before = dict(ctx.state)
        try:
            await run(entry, ctx, self.host.settings.handlers.timeout, self.host.handlers.slots)
        except HandlerFailed as exc:
            return Delivery.failed(f"{exc.summary}\n{exc.details}"[:4000])
        outcomes, problems = await self.host.handlers.apply(ctx, state_before)
        data = {"handler": entry.name, "version": entry.digest[:12],
                "actions": ctx.describe()}
        if outcomes:  # each reply and send: its message, queued or failed (why)
            data["sent"] = outcomes
        if problems:
            data["problems"] = problems
        if ctx.route is not None:
            depth = int(route.name.count(" > "))
            if depth >= MAX_DEPTH:
                return Delivery.failed(f"route_to chain deeper than {MAX_DEPTH}")
            return await self.host.router.deliver_to(
                message, ctx.route.destination, ctx.route.target, via=route, data=data)
        return Delivery.delivered(**data)


@hookimpl
def register_sinks(register):  # type: ignore[no-untyped-def]
    register(HandlerSink)
