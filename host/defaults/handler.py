"""The handler sink: a route's target names a handler script (SPEC H1, H3, H4).

Core behaviour, so a default rather than a shipped plugin: it is there whatever
``plugins.shipped`` says. The handler runs (async under a timeout, sync in a thread
with a timeout); what it recorded on its context (replies, sends, state) is carried out
after it returns, and ``ctx.route_to(...)`` hands the message on through
``host.deliver``. A handler that is missing, raises or times out is a failed delivery:
the router records why (with the traceback) and the message falls back to the default
route.

The sink is given the handler scripts (``scripts``) by the composition root
(``core.py``); it knows them only through the small protocols below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from host.api import Delivery, Sink, hookimpl

if TYPE_CHECKING:
    from host.api import HostAPI, Message
    from host.api import InboundRoute as Route

MAX_DEPTH = 5  # route_to chains (a handler routing to a handler...)


class RouteTo(Protocol):
    """Where a handler hands the message on (``ctx.route_to(destination, target)``)."""

    @property
    def destination(self) -> str: ...

    @property
    def target(self) -> str: ...


class Called(Protocol):
    """What one call came to (:class:`host.handlers.registry.HandlerCall`)."""

    @property
    def failure(self) -> str | None: ...

    @property
    def data(self) -> dict[str, Any]: ...

    @property
    def route(self) -> RouteTo | None: ...


class Scripts(Protocol):
    """The live handler scripts (:class:`host.handlers.registry.HandlerRegistry`)."""

    def check_target(self, target: str) -> str | None: ...

    async def call(self, message: Message, name: str) -> Called: ...


class HandlerSink(Sink):
    kind = "handler"

    def __init__(self, host: HostAPI, settings: Any, *, scripts: Scripts) -> None:
        super().__init__(host, settings)
        self.scripts = scripts

    def check_target(self, target: str) -> str | None:
        return self.scripts.check_target(target)

    async def deliver(self, message: Message, route: Route) -> Delivery:
        call = await self.scripts.call(message, route.target)
        if call.failure is not None:
            return Delivery.failed(call.failure)
        if call.route is None:
            return Delivery.delivered(**call.data)
        depth = int(route.name.count(" > "))
        if depth >= MAX_DEPTH:
            return Delivery.failed(f"route_to chain deeper than {MAX_DEPTH}")
        return await self.host.deliver(message, call.route.destination, call.route.target,
                                       via=route, data=call.data)


@hookimpl(trylast=True)
def register_sinks(register: Any) -> None:
    register(HandlerSink)
