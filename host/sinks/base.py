"""The base of every sink: a destination of inbound routes.

A sink plugin registers a subclass through the ``register_sinks`` hook::

    from host.api import Delivery, Sink, hookimpl

    class Echo(Sink):
        kind = "echo"

        async def deliver(self, message, route):
            print(message.body)
            return Delivery.delivered()

    @hookimpl
    def register_sinks(register):
        register(Echo)

A sink whose delivery is one synchronous write may also take an MO in the write that
stores it (routing at ingest, host.routing.ingest: one commit instead of three): it
overrides :meth:`Sink.enter` (that write's statements, nothing else) and
:meth:`Sink.entered` (after the commit: wake its worker). A sink that does not (the
default) gets every message through :meth:`Sink.deliver`, after the commit.

A sink's settings are the ``[<kind>]`` table of ``config/sinks.toml``, converted to its
``settings_class`` (a frozen dataclass declared with ``host.api.setting``) with
the same file/line errors as the core's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlite_utils import Database

    from host.api import HostAPI
    from host.config.settings import Settings
    from host.models import Message
    from host.routing.inbound import Route


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one delivery: delivered, retry later, or failed for good."""

    outcome: Literal["delivered", "retry", "failed"]
    detail: str = ""
    retry_after: float | None = None
    data: dict[str, Any] | None = None  # recorded with the routing event (ids, ...)

    @classmethod
    def delivered(cls, detail: str = "", **data: Any) -> Delivery:
        return cls("delivered", detail, None, data or None)

    @classmethod
    def retry(cls, detail: str, retry_after: float | None = None) -> Delivery:
        return cls("retry", detail, retry_after)

    @classmethod
    def failed(cls, detail: str) -> Delivery:
        return cls("failed", detail)


class Sink:
    """A destination. One instance per kind, built when the host starts."""

    kind: ClassVar[str] = ""
    settings_class: ClassVar[type | None] = None
    catch_all: ClassVar[bool] = False
    """True for the sink that takes every message when no route is configured (R3: the
    email sink). At most one loaded sink may claim it; with no routes, the node checks
    that this sink works (``check_target("")``)."""

    def __init__(self, host: HostAPI, settings: Any) -> None:
        self.host = host
        self.settings = settings

    def check_target(self, target: str) -> str | None:
        """A reason ``target`` cannot work (checked for every route), or None."""
        return None

    def config_problems(self, settings: Settings) -> list[tuple[str, str]]:
        """Problems of the rest of ``settings`` that this sink's settings read (e.g. a
        table naming inbound routes, custom attributes it takes values from): (file,
        ``file:line: key: what``). Checked with the routes, at start and before a live
        change (which is refused when it brings one)."""
        return []

    async def start(self) -> None:
        """Called once the store is open."""

    async def stop(self) -> None:
        """Called at shutdown, before the store closes."""

    async def deliver(self, message: Message, route: Route) -> Delivery:
        raise NotImplementedError

    def enter(self, db: Database, message: Message, route: Route) -> Delivery | None:
        """Deliver ``message`` (just stored, ``received``) inside the write that stores
        it: ``db`` is that write's open transaction (synchronous; no await, no network,
        nothing outside the database: it may be rolled back, or run again when the
        store retries its group of writes). Return what :meth:`deliver` would; None
        when it cannot be done here. Anything but a delivered outcome (None, a retry, a
        failure, an exception) rolls back what it wrote and the router delivers the
        message after the commit through :meth:`deliver`, as without this method. Not
        overridden (this default): every message goes through :meth:`deliver`."""
        return None

    def entered(self, delivery: Delivery) -> None:
        """After the commit of a write in which :meth:`enter` returned ``delivery``:
        wake the worker that sends it (synchronous, quick; a failure is logged and the
        entry is left to the sink's recovery at its next start)."""


def catch_all_kind(sinks: Mapping[str, Sink]) -> str | None:
    """The kind of the one loaded sink that claims ``catch_all``; None when no sink or
    several do (a problem ``check`` reports)."""
    claims = [kind for kind, sink in sinks.items() if sink.catch_all]
    return claims[0] if len(claims) == 1 else None
