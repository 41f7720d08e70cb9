"""The node as the web layer sees it: the narrow protocols its routes and middleware use.

The web layer never imports ``host.core``: ``Host.app_for`` (the composition root)
builds each app with ``build_app(host, listener, register_routes)`` and ``host.core``
checks with mypy that ``Host`` provides :class:`WebHost`. Each part asks for no more
than it uses:

- :class:`Served`: what every request and connection is counted and logged with
  (host.web.middleware, host.web.connections);
- :class:`~host.brokers.webhooks.WebhookHost`: what the broker webhooks store with
  (host.web.webhooks, host.web.fastpath);
- :class:`WebHost`: what the app and its routes (host.web.api, host.web.ops) use. It is
  also the ``request.app.state.host`` plugins' routes read and the host the
  ``register_routes`` hook is given, so it is the plugin face (``host.api.HostAPI``)
  plus the few parts only the core's own routes use.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from host.api import HostAPI
from host.brokers.webhooks import WebhookHost

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from host.brokers.kit import CaseResult
    from host.callbacks.worker import Callbacks
    from host.config.change import LiveConfig
    from host.config.secrets import Secret
    from host.discovery import Discovery
    from host.config.settings import Settings
    from host.events import EventBus
    from host.logins import Logins
    from host.handlers.dryrun import Rehearsal
    from host.history import History
    from host.ledger import Ledger
    from host.metrics import Metrics
    from host.optout import OptOuts
    from host.people import People
    from host.routing.inbound import Route
    from host.tokens import Tokens


class Served(Protocol):
    """What the request context and the connections use: settings and metrics."""

    @property
    def settings(self) -> Settings:
        """``logging.access_log``, ``server.connections``, ``api.max_body_bytes``."""

    @property
    def metrics(self) -> Metrics:
        """Counts and times requests and closed connections."""


class InboundRoutes(Protocol):
    """The router as the route tester and ``GET /api/routes`` see it."""

    @property
    def routes(self) -> list[Route]:
        """The compiled inbound routes, in order."""


class HandlerStatus(Protocol):
    """The handler registry as ``/health`` and ``GET /api/handlers`` see it."""

    def describe(self) -> dict[str, Any]:
        """``{"loaded": [...], "failures": [...]}``."""

    def get(self, name: str) -> object | None:
        """The loaded handler ``name``, or None."""

    async def rehearse(self, name: str, *, ani: str, dnis: str | None, body: str,
                       broker: str | None = None) -> Rehearsal:
        """A dry run of handler ``name`` (the admin's handlers page)."""


class PurgeStatus(Protocol):
    """The purger as ``/health`` and the admin's settings page see it."""

    def describe(self) -> dict[str, Any]:
        """The last purge: ``{"ok": ..., ...}``."""

    def next_run_at(self) -> datetime:
        """When the schedule runs next."""

    async def would_delete(self) -> tuple[dict[str, int], list[str]]:
        """A dry run of the configured purge: counts per table, problems."""


class WebHost(HostAPI, WebhookHost, Protocol):
    """The node an app serves (see the module text): the plugin face, the broker
    webhooks' parts, and these."""

    @property
    def events(self) -> EventBus:
        """Status events for ``GET /api/events``."""

    @property
    def ledger(self) -> Ledger:
        """Announces the message changes a route wrote itself (a cancelled send)."""

    @property
    def callbacks(self) -> Callbacks:
        """Status callbacks: their queue and dead letters (``/api/callbacks``)."""

    @property
    def api_token(self) -> Secret | None:
        """The bearer token of ``/api`` (generated on start when none is configured)."""

    @property
    def uptime(self) -> float:
        """Seconds since the node started."""

    @property
    def stopping(self) -> bool:
        """SIGTERM received: /health answers 503 while the node drains (host.server)."""

    @property
    def worker(self) -> int | None:
        """This process's number under ``serve --workers`` (host.workers), else None."""

    @property
    def live(self) -> LiveConfig:
        """The running configuration (/health's ``config``, ``/api/config/...``)."""

    @property
    def router(self) -> InboundRoutes:
        """The inbound routes."""

    @property
    def optouts(self) -> OptOuts:
        """``GET /api/optouts``."""

    @property
    def people(self) -> People:
        """Users and workgroups (``/api/users``, ``/api/workgroups``)."""

    @property
    def tokens(self) -> Tokens:
        """API tokens (``/api/tokens``; the bearer check of host.web.api.auth)."""

    @property
    def logins(self) -> Logins:
        """Password sign-in and browser sessions (``/api/session``, ``/login``)."""

    @property
    def history(self) -> History:
        """The configuration history (``/api/history``)."""

    @property
    def handlers(self) -> HandlerStatus:
        """The handler scripts' status."""

    @property
    def purger(self) -> PurgeStatus:
        """The last purge's outcome."""

    @property
    def discovery(self) -> Discovery | None:
        """The broker definitions and sink classes found (None before plugins load)."""

    def broker_kit(self, name: str) -> tuple[Path, list[CaseResult]]:
        """Run the conformance kit of definition ``name`` (blocking)."""

    def running(self) -> AbstractAsyncContextManager[object]:
        """Start the node on first entry, stop it when the last user leaves (the app's
        lifespan)."""
