"""The host: one running smshost node and everything it owns.

``Host`` ties the settings, plugin manager, store, metrics and background tasks
together. It is passed to every hook as ``host``. Start and stop it with
``async with host.running():`` (the web apps' lifespan and ``smshost serve`` both do).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host import __version__
from host.brokers.concat import Concat, sweep as concat_sweep
from host.brokers.kit import CaseResult, kit_for
from host.brokers.instances import BrokerInstance, unsigned_warnings
from host.brokers.paths import WebhookPaths
from host.brokers.receipts import Receipts
from host.brokers.sender import Sender
from host.callbacks.worker import Callbacks
from host.cluster import Cluster, home
from host.config.change import LiveConfig
from host.config.secrets import Secret
from host.datadir import generated_token, writable_data_dir
from host.defaults.handler import HandlerSink
from host.events import EventBus
from host.handlers.registry import HandlerRegistry
from host.follow import Follower
from host.history import History
from host.watch import watch_config, watch_handlers
from host.optout import OptOuts
from host.outbound import Outbound
from host.routing.router import Router
from host.sinks.base import Sink
from host.reconfigure import Reconfigurer
from host.config.settings import ListenerSettings, Settings
from host.discovery import Discovery, discover
from host.outage import Outage, Refusals
from host.ledger import Ledger
from host.messages import Messages
from host.metrics import Metrics
from host.migrations import core as core_migrations
from host.people import People
from host.plugins import Hooks, Plugins
from host.lockfile import DataLock
from host.purge import Purger
from host.store import make_store
from host.tokens import Tokens

if TYPE_CHECKING:
    from sqlite_utils import Migrations
    from starlette.responses import Response
    from starlette.types import ASGIApp

    from host.api import HostAPI
    from host.brokers.http import InboundRequest
    from host.models import Message
    from host.plugins import KeptQueries
    from host.routing.inbound import Route as InboundRoute
    from host.sends import Queued, SendRequest
    from host.sinks.base import Delivery
    from host.web.context import WebHost

log = logging.getLogger("smshost")
CONCAT_SWEEP_SECONDS = 5.0


class Host:
    """One smshost node. No global state: tests build as many as they like."""

    def __init__(self, settings: Settings, *, data_dir: Path | None = None,
                 config_dir: Path | None = None) -> None:
        self.settings = settings
        self.config_dir = config_dir
        self.data_dir = Path(data_dir or settings.server.data_dir)
        self.version = __version__
        self.plugins = Plugins()
        self.hooks = Hooks(self.plugins)
        self.metrics = Metrics()
        self.plugins.on_hook_failure = self.metrics.hook_failed
        self.store = make_store(settings.store, self.data_dir,
                                prepare=self.hooks.prepare_connection)
        self.lock = DataLock(self.data_dir)
        self.refusals = Refusals(log)  # requests the database refused: a line per spell
        self.store.writes.on_recovery.append(self.refusals.recovered)
        # Filled in place by load_plugins: the components below hold these very dicts.
        self.brokers: dict[str, BrokerInstance] = {}
        self.sinks: dict[str, Sink] = {}
        self.ledger = Ledger(self.store, self.metrics, self.hooks, self)
        self.messages = Messages(self.store, self.ledger)
        self.receipts = Receipts(self.store, self.ledger)
        self.concat = Concat(self.store, self.ledger)
        self.purger = Purger(settings.purge, self.store, functools.partial(self.hooks.purge, self))
        self.optouts = OptOuts(settings.optout, self.store)
        self.people = People(self.store, settings.brokers)
        self.tokens = Tokens(self.store)  # API tokens (host.tokens)
        self.logins = self.people.logins(self.metrics, lambda: self.settings.api)
        self.logins.sessions.on_end = functools.partial(self.hooks.signed_out, self)
        self.cluster = Cluster(self.store, settings.cluster, version=lambda: self.live.version,
                               address=",".join(f"{lst.host}:{lst.port}"
                                                for lst in settings.listeners))
        self.sender = Sender(settings, self.store, self.ledger, self.brokers,
                             cluster=self.cluster)  # orphan receipts: in its settlements
        self.receipts.wake = self.sender.wake
        self.callbacks = Callbacks(settings.callbacks, self.store,  # callbacks (all kinds)
                                   compat=settings.compat)
        self.ledger.on_change = self.callbacks.changed
        self.callbacks.gate = functools.partial(self.cluster.holds, "callbacks")
        self.purger.gate = functools.partial(self.cluster.holds, "purge")
        self.outbound = Outbound(settings, self.store, self.ledger, self.brokers, self.optouts,
                                 self.metrics, self.sender, self._sender_for,
                                 lambda: self.plugins.failures)
        self.router = Router(settings, self.store, self.ledger, self.messages, self.sinks,
                             self.brokers, self.optouts, self.outbound.reply,
                             functools.partial(self.hooks.message_routed, self),
                             node=self.cluster.node_id)
        self.handlers = HandlerRegistry(settings.handlers, settings.plugins, self.store,
                                        self.plugins, self.brokers, self.outbound,
                                        functools.partial(self.hooks.handler_reloaded, self))
        self.handlers.sms_attrs = settings.attrs
        self.webhook_paths = WebhookPaths(self.brokers)
        self.events = EventBus()
        self.reconfigurer = Reconfigurer(self, self, {HandlerSink: {"scripts": self.handlers}})
        self.live: LiveConfig = LiveConfig(config_dir, settings, self._reconfigure)
        self.live.check = self.reconfigurer.check
        self.history = History(self.store, self.live, lambda: self.discovery)  # P3
        self.follower = Follower(self.store, self.history, self.events,  # several nodes
                                 lambda: self.settings.cluster)
        self.discovery: Discovery | None = None
        self.api_token: Secret | None = settings.api.token
        self.started_monotonic: float | None = None
        self.stopping = False  # SIGTERM received: /health answers 503 (host.server)
        self._users = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._apps: dict[str, ASGIApp] = {}
        self._watch_stop: asyncio.Event | None = None
        self.background = True
        self.worker: int | None = None  # its number under ``serve --workers`` (host.workers)
        self._sending = False
        self.metrics.attach(settings.server.role, lambda: self.uptime, self.plugins,
                            self.store, self.purger)

    # -- plugins --------------------------------------------------------------------

    def load_plugins(self) -> Discovery:
        """Discover and register every plugin (once); failures are recorded, not raised.

        Broker instances are built from the definitions found; an instance with a
        problem is recorded (kind "broker instance") and not started.
        """
        if self.discovery is None:
            self.discovery = discover(self.plugins, self.settings.plugins)
            self.handlers.reconcile()
            self.reconfigurer.start(self.discovery)  # brokers, sinks, their problems
        return self.discovery

    def broker_kit(self, name: str) -> tuple[Path, list[CaseResult]]:
        """The conformance kit (B9) of loaded definition ``name``, on a throwaway node:
        the fixtures file and one result per case (host.brokers.kit.kit_for; blocking,
        the admin page runs it in a thread). KitUnavailable when it cannot run."""
        found = self.discovery.brokers if self.discovery is not None else {}
        return kit_for(Host, found, self.plugins.failures, name)

    def migration_sets(self) -> list[Migrations]:
        """The core set first, then the sets plugins register, in order."""
        sets: list[Migrations] = [core_migrations]

        def register(migrations: Migrations) -> None:
            if any(m.name == migrations.name for m in sets):
                raise ValueError(f"migration set {migrations.name!r} is registered twice")
            sets.append(migrations)

        self.hooks.register_migrations(register)
        return sets

    # -- lifecycle ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, *, background: bool = True) -> AsyncIterator[Host]:
        """Start on first entry, stop when the last user leaves.

        ``background=False`` (CLI commands) opens everything but starts no scheduled
        task.
        """
        async with self._lock:
            if self._users == 0:
                await self.start(background=background)
            self._users += 1
        try:
            yield self
        finally:
            async with self._lock:
                self._users -= 1
                if self._users == 0:
                    await self.stop()

    async def start(self, *, background: bool = True) -> None:
        self.background = background  # sinks look at it: no delivery workers in CLI runs
        self.load_plugins()
        writable_data_dir(self.data_dir)
        if background:  # a server: one per data directory (host.lockfile)
            self.lock.acquire("serve")
        try:
            await self._open(background)
        except BaseException:
            self.lock.release()
            raise

    async def _open(self, background: bool) -> None:
        if self.api_token is None:
            self.api_token = self.default_token()
        await self.store.open(self.migration_sets())
        # The first admin user comes with the generated token (host.people): a node
        # with api.token configured has its admin credential already.
        await self.people.start(self.hooks.people_in_config(self),
                                first_admin=background and self.settings.api.token is None)
        await self.history.start(serving=background, shared=self.shared)
        if background:  # a node of the cluster (a CLI command is none)
            await self.cluster.start(self._home())
        self.started_monotonic = time.monotonic()
        await self.handlers.save()
        for sink in self.sinks.values():
            await sink.start()
        await self.hooks.startup(self)
        if background and self.settings.handlers.watch:
            self._watch_stop = asyncio.Event()
            self._spawn(watch_handlers(self.handlers, self.settings.handlers,
                                       self._watch_stop), "watch")
        if background and self.config_dir is not None and self.settings.server.watch_config:
            if self._watch_stop is None or self._watch_stop.is_set():  # this start's
                self._watch_stop = asyncio.Event()
            self._spawn(watch_config(self.live, self.config_dir, self._watch_stop), "config")
        if background and self.settings.routing.enabled:
            await self.router.start()
        if background and self.settings.outbox.enabled:
            await self.sender.start()
            self._sending = True
            self.cluster.on_beat.append(self.sender.adopt_dead)
        if background:
            await self.callbacks.start()
        if background:  # runs when purge.enabled, which a live change may turn on
            self._spawn(self.purger.scheduled(), "purge")
        if background and self.shared:  # LISTEN, and follow the other nodes (host.follow)
            await self.follower.prime()
            self._spawn(self.follower.run(getattr(self.store, "url", None)), "follow")
        if background:
            self._spawn(self._concat_sweeper(), "concat")
            log.info("smshost %s started (%s), database %s", self.version,
                     self.settings.server.role, self.store.where)
            for line in unsigned_warnings(self.brokers):
                log.warning("%s", line)
        else:  # a CLI command (purge, ...): no server, no background work
            log.info("smshost %s: database %s opened for this command", self.version,
                     self.store.where)

    async def stop(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.router.stop()
        if self._sending:
            await self.sender.stop()
            self._sending = False
        await self.callbacks.stop()
        for sink in self.sinks.values():
            try:
                await sink.stop()
            # One sink failing to stop must not keep the others or the store open (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("sink %s failed to stop", sink.kind)
        await self.hooks.shutdown(self)
        await self.cluster.stop()
        self.cluster.on_beat.clear()
        await self.store.close()
        self.lock.release()
        log.info("%s", "smshost stopped" if self.background else
                 f"database {self.store.where} closed")

    async def _concat_sweeper(self) -> None:
        """Deliver long MOs whose missing parts did not come in time."""
        outage = Outage("the sweep of long MOs", log)
        while True:
            await asyncio.sleep(CONCAT_SWEEP_SECONDS)
            await self.sweep_concat(outage)

    async def sweep_concat(self, outage: Outage) -> None:
        await concat_sweep(self.concat, self.brokers, outage)

    @property
    def shared(self) -> bool:
        """Whether other nodes may share the database (PostgreSQL)."""
        return self.store.dialect == "postgresql"

    def _spawn(self, coro: object, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"smshost-{name}"))  # type: ignore[arg-type]

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic if self.started_monotonic else 0.0

    def _sender_for(self, kind: str, name: str) -> tuple[str | None, str] | None:
        """The sender of a send as a workgroup or user: the database's (host.people)
        first, then the ``sender_for`` hook's (the queue sink's ``[[queue.queues]]``)."""
        found = self.people.sender_for(kind, name)
        if found is not None and found[1]:
            return found
        hooked = self.hooks.sender_for(self, kind, name)
        return hooked if hooked is not None else found

    async def _reconfigure(self, old: Settings, new: Settings) -> tuple[str, ...]:
        """Apply ``new`` to the running node (host.reconfigure); what needs a restart."""
        return await self.reconfigurer.apply(new)

    def _home(self) -> str:
        return home(self.data_dir, getattr(self, "worker", None))  # worker: set after init

    def default_token(self) -> Secret:
        """The API token kept in the data directory (created on first use)."""
        return generated_token(self.data_dir / "api-token")

    # -- the plugin face (host.api.HostAPI): plugins use these, not the parts ---------

    def sink(self, kind: str) -> Sink | None:
        return self.sinks.get(kind)

    async def deliver(self, message: Message, destination: str, target: str = "", *,
                      via: InboundRoute | None = None,
                      data: dict[str, Any] | None = None) -> Delivery:
        return await self.router.deliver_to(message, destination, target, via=via, data=data)

    def route(self, message: Message) -> None:
        self.router.submit(message.id, message.local, message.remote)

    async def send(self, request: SendRequest) -> Queued:
        return await self.outbound.send(request)

    async def reply(self, message: Message, text: str, source: str = "handler",
                    optout_exempt: bool = False) -> Message:
        return await self.outbound.reply(message, text, source, optout_exempt)

    def publish(self, event: dict[str, Any]) -> None:
        if not self.events.subscribers:
            return
        if self.shared and "event" not in event:  # a status event: the database's order
            self.follower.wake("message_events")
        else:
            self.events.publish(event)

    def follow(self, table: str, wake: Callable[[], None]) -> Callable[[], None]:
        return self.follower.follow(table, wake)

    def kept_messages(self) -> KeptQueries:
        return self.hooks.messages_kept(self)

    def purge_incomplete(self, reason: str) -> None:
        self.purger.incomplete(reason)

    async def broker_webhook(self, broker: str, path: str,
                             request: InboundRequest) -> Response:
        from host.brokers import webhooks

        instance = self.brokers[broker]
        endpoint = webhooks.endpoints_for_port(self.brokers, instance.port)[path]
        return await webhooks.process(self, endpoint, request)

    # -- web ------------------------------------------------------------------------

    def app_for(self, listener: ListenerSettings | str | None = None) -> ASGIApp:
        """The ASGI app of a listener (by settings or name; default: the API listener)."""
        from host.web.app import build_app

        if listener is None:
            listener = self.settings.api_listener
        if isinstance(listener, str):
            listener = next(lst for lst in self.settings.listeners if lst.name == listener)
        if listener.name not in self._apps:
            self.load_plugins()
            self._apps[listener.name] = build_app(
                self, listener, functools.partial(self.hooks.register_routes, self))
        return self._apps[listener.name]


def _plugin_face(host: Host) -> HostAPI:
    """Never called: mypy checks here that ``Host`` satisfies the plugin face."""
    return host


def _web_face(host: Host) -> WebHost:
    """Never called: mypy checks here that ``Host`` is what the web layer serves."""
    return host
