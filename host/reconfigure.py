"""Apply a new configuration to a running node (P11): the host's swap.

``Reconfigurer.apply(new)`` first validates ``new`` as a whole: the settings loaded, and
what only the plugins can tell (broker instances, outbound routes naming brokers and
accounts, sink settings, inbound routes naming sinks and targets: :func:`assess`, which
the start uses too, so ``smshost check`` reports the same problems). A change that
brings a problem the node did not already have raises ConfigRefused before anything is
applied. Then, in one step with no wait in between (so a message being routed or sent
uses the old configuration or the new one, never a mix):

* the broker instances (an unchanged one keeps its object), their webhook paths, the
  inbound and outbound routes, opt-out keywords, purge, custom attributes, the API
  token, the retry delays and the logging level are swapped;
* the problems of the start are replaced by the new ones (/health, ``check``).

Then each sink whose ``[kind]`` table changed is replaced: the new one takes deliveries
at once, the old one stops (its deliveries under way finish, bounded by its own stop)
and the new one starts. A sink whose settings did not change keeps its object.

Settings that cannot change in a running node (:data:`RESTART`) keep their running
value and are answered as dotted keys; the rest of the change applies. The outbox
messages of a broker account removed by a change stay queued (the sender holds them)
and go on when the account returns; a restart without it fails them as before.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from host.brokers.instances import BrokerInstance, build_instances, outbound_route_problems
from host.errors import ConfigError, ConfigRefused
from host.plugins import PluginRecord
from host.sinks.registry import build_sinks, route_problems, sink_config_problems

if TYPE_CHECKING:
    from host.api import HostAPI
    from host.brokers.pacing import Key
    from host.brokers.paths import WebhookPaths
    from host.brokers.sender import Sender
    from host.callbacks.worker import Callbacks
    from host.config.secrets import Secret
    from host.config.settings import Settings
    from host.discovery import Discovery
    from host.handlers.registry import HandlerRegistry
    from host.optout import OptOuts
    from host.outbound import Outbound
    from host.people import People
    from host.plugins import Plugins
    from host.purge import Purger
    from host.routing.router import Router
    from host.sinks.base import Sink
    from host.store import Store

log = logging.getLogger("smshost.config")

RESTART: tuple[str, ...] = (
    "server.data_dir", "server.shutdown_timeout", "server.webhook_fast_path",
    "server.api_fast_path", "server.connections", "server.watch_config", "listeners",
    "api.max_body_bytes",
    "store", "plugins", "handlers", "outbox.enabled", "outbox.max_in_flight", "outbox.ca_file",
    "logging.format", "routing.enabled", "routing.workers",
)
"""The settings a running node cannot change (dotted keys): they take effect at the
next start, and until then /health and the API name them in ``restart_needed``."""

KINDS = ("broker instance", "route", "sink settings")
"""The kinds of problems the configuration gives the plugins (see :func:`assess`)."""

_INDEX = re.compile(r"\[\d+\]")
_LOCATED = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+): (?P<rest>.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem of the configuration found with the plugins: ``message`` is
    ``file:line: key: what``."""

    kind: str
    name: str
    source: str
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What it is, wherever it is written: a line moved by an edit, or an entry
        moved to another index (``inbound[2]`` after a route added above), is the same."""
        found = _LOCATED.match(self.message)
        return self.kind, self.name, _INDEX.sub("[]", found["rest"] if found else self.message)

    def error(self) -> ConfigError:
        found = _LOCATED.match(self.message)
        if found is None:
            return ConfigError(self.message, file=self.source)
        return ConfigError(found["rest"], file=found["file"], line=int(found["line"]))


@dataclass
class Assessment:
    """What a configuration gives with the plugins: the broker instances that run, the
    whole sink table (``built``: the sinks made for it, to start) and the problems."""

    brokers: dict[str, BrokerInstance]
    sinks: dict[str, Sink]
    built: dict[str, Sink]
    problems: list[Problem]


def assess(settings: Settings, api: HostAPI, discovery: Discovery, plugins: Plugins,
           given: Mapping[type, Mapping[str, Any]],
           running: tuple[Settings, Mapping[str, Sink]] | None = None) -> Assessment:
    """Build what ``settings`` configures with the plugins found, and its problems.
    With ``running`` (the running settings and sinks), a sink whose table did not
    change keeps its object and only the others are built."""
    failed = {r.name: r.error or "" for r in plugins.failures if r.kind == "broker"}
    brokers, broken = build_instances(settings, discovery.brokers, failed)
    problems = [Problem("broker instance", p.broker, "brokers.toml", p.message)
                for p in broken]
    problems += [Problem("route", route, "routes.toml", message)
                 for route, message in outbound_route_problems(settings, brokers)]
    only = None if running is None else changed_sinks(running[0], settings, running[1],
                                                       discovery.sinks)
    built, sink_problems = build_sinks(settings, api, discovery.sinks, given, only)
    sinks = {kind: sink for kind, sink in (running[1] if running else {}).items()
             if only is not None and kind not in only}
    sinks.update(built)
    problems += [Problem("sink settings", kind, "sinks.toml", message)
                 for kind, message in sink_problems]
    problems += [Problem("route", route, "routes.toml", message)
                 for route, message in route_problems(settings, sinks)]
    problems += [Problem("sink settings", kind, file, message)
                 for kind, file, message in sink_config_problems(settings, sinks)]
    return Assessment(brokers, sinks, built, problems)


def changed_sinks(old: Settings, new: Settings, sinks: Mapping[str, Sink],
                  classes: Mapping[str, type]) -> set[str]:
    """The sink kinds to build again: their table changed, or they are not running."""
    return {kind for kind in classes
            if kind not in sinks or old.sinks.get(kind) != new.sinks.get(kind)}


# -- comparing settings ------------------------------------------------------------------

def changed_sections(old: Settings, new: Settings) -> tuple[str, ...]:
    """The top-level settings (``inbound``, ``purge``, ...) that differ."""
    return tuple(f.name for f in dataclasses.fields(old)
                 if f.compare and getattr(old, f.name) != getattr(new, f.name))


def restart_needed(running: Settings, new: Settings) -> tuple[str, ...]:
    """The :data:`RESTART` keys whose value ``new`` changes."""
    return tuple(key for key in RESTART if _get(running, key) != _get(new, key))


def effective(running: Settings, new: Settings) -> Settings:
    """``new`` with the running value of every setting a restart alone can change."""
    out = new
    for key in restart_needed(running, new):
        out = _put(out, key.split("."), _get(running, key))
    return out


def _get(settings: object, key: str) -> object:
    value = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _put(obj: Any, path: list[str], value: object) -> Any:
    head, rest = path[0], path[1:]
    inner = _put(getattr(obj, head), rest, value) if rest else value
    return dataclasses.replace(obj, **{head: inner})


# -- the node ----------------------------------------------------------------------------

class Node(Protocol):
    """What a reconfiguration changes of the host (``host.core.Host``)."""

    settings: Settings
    api_token: Secret | None
    brokers: dict[str, BrokerInstance]
    sinks: dict[str, Sink]
    plugins: Plugins
    store: Store
    router: Router
    outbound: Outbound
    sender: Sender
    callbacks: Callbacks
    optouts: OptOuts
    purger: Purger
    people: People
    handlers: HandlerRegistry
    webhook_paths: WebhookPaths
    started_monotonic: float | None

    def load_plugins(self) -> Discovery: ...

    def default_token(self) -> Secret: ...


class Reconfigurer:
    """Validates and applies new settings to ``node`` (see the module text); ``api`` is
    the node as sinks see it, ``given`` what the composition root gives sink classes."""

    def __init__(self, node: Node, api: HostAPI,
                 given: Mapping[type, Mapping[str, Any]]) -> None:
        self._node = node
        self._api = api
        self._given = given

    def start(self, discovery: Discovery) -> None:
        """Build the brokers and sinks of the node's settings; record the problems."""
        node = self._node
        found = assess(node.settings, self._api, discovery, node.plugins, self._given)
        node.brokers.update(found.brokers)
        node.sinks.update(found.sinks)
        for problem in found.problems:
            node.plugins.record(problem.kind, problem.name, problem.source, problem.message)

    def check(self, new: Settings) -> Assessment:
        """Build what ``new`` configures; ConfigRefused naming file and line when it
        brings a problem the running node does not have."""
        node = self._node
        discovery = node.load_plugins()
        running = (node.settings, node.sinks)
        with _as(node, new):  # sinks read the settings they are built with
            found = assess(new, self._api, discovery, node.plugins, self._given, running)
        known = {Problem(r.kind, r.name, r.source, r.error or "").key
                 for r in node.plugins.failures if r.kind in KINDS}
        fresh = [p for p in found.problems if p.key not in known]
        if fresh:
            raise ConfigRefused([p.error() for p in fresh])
        return found

    async def apply(self, new: Settings) -> tuple[str, ...]:
        """Validate ``new``, then apply it (see the module text); the dotted settings
        that need a restart."""
        found = self.check(new)
        before = self._node.settings
        restart = restart_needed(before, new)
        running = effective(before, new)
        held = self._held(found.brokers)
        replaced = self._swap(before, running, found, held)
        await self._replace_sinks(replaced, found.built)
        await self._log_held(held)
        sections = changed_sections(before, running)
        log.info("configuration applied: %s%s", ", ".join(sections) or "no change",
                 f"; after a restart: {', '.join(restart)}" if restart else "")
        return restart

    def _swap(self, before: Settings, running: Settings, found: Assessment,
              held: set[Key]) -> dict[str, Sink]:
        """Every part at once (no wait): the old sinks the new ones replace."""
        node = self._node
        node.settings = running
        node.api_token = running.api.token if running.api.token is not None \
            else node.default_token()
        brokers = _kept(node.brokers, found.brokers)
        node.brokers.clear()
        node.brokers.update(brokers)
        node.webhook_paths.changed()
        replaced = {kind: node.sinks[kind] for kind in found.built if kind in node.sinks}
        node.sinks.clear()
        node.sinks.update(found.sinks)
        node.router.configure(running)
        node.outbound.configure(running)
        node.sender.configure(running, held)
        node.callbacks.settings = running.callbacks  # checked again at each attempt
        node.optouts.configure(running.optout)
        node.purger.configure(running.purge)
        node.people.configure(running.brokers)
        node.handlers.sms_attrs = running.attrs
        if running.logging.level != before.logging.level:
            logging.getLogger().setLevel(running.logging.level)
        self._problems(found.problems)
        return replaced

    def _problems(self, problems: list[Problem]) -> None:
        plugins = self._node.plugins
        gone = {Problem(r.kind, r.name, r.source, r.error or "").key: r.error
                for r in plugins.failures if r.kind in KINDS}
        for problem in problems:
            gone.pop(problem.key, None)
        for error in gone.values():
            log.info("configuration problem resolved: %s", error)
        plugins.records[:] = [r for r in plugins.records if r.kind not in KINDS] + [
            PluginRecord(p.kind, p.name, p.source, False, p.message) for p in problems]

    def _held(self, brokers: Mapping[str, BrokerInstance]) -> set[Key]:
        """The accounts whose queued messages wait: removed now or before, not back."""
        new = _accounts(brokers)
        return (self._node.sender.held | (_accounts(self._node.brokers) - new)) - new

    async def _log_held(self, held: set[Key]) -> None:
        if not held or self._node.started_monotonic is None:
            return
        counts = await self._node.store.read(lambda db: {key: db.execute(
            "select count(*) from outbox where broker = ? and account = ?",
            list(key)).fetchone()[0] for key in sorted(held)})
        for (broker, account), count in counts.items():
            if count:
                log.warning("broker %s account %s is no longer configured: its %d queued "
                            "message(s) stay queued until it is configured again (a "
                            "restart without it fails them)", broker, account, count)

    async def _replace_sinks(self, replaced: dict[str, Sink], built: dict[str, Sink]) -> None:
        """Stop the replaced sinks (their deliveries under way finish), start the new."""
        if self._node.started_monotonic is None:  # not started: the start starts them
            return
        for kind, old in replaced.items():
            try:
                await old.stop()
            # One sink failing to stop must not keep the new one from starting (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("sink %s (replaced) failed to stop", kind)
        for kind, sink in built.items():
            try:
                await sink.start()
            # A sink is a plugin: its failure to start is logged, the others go on (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("sink %s failed to start after a configuration change", kind)


def _accounts(brokers: Mapping[str, BrokerInstance]) -> set[Key]:
    return {(name, account) for name, instance in brokers.items()
            for account in instance.accounts}


def _kept(old: Mapping[str, BrokerInstance],
          new: dict[str, BrokerInstance]) -> dict[str, BrokerInstance]:
    """``new``, with the running object of every instance that did not change."""
    out = {}
    for name, instance in new.items():
        running = old.get(name)
        out[name] = running if running is not None and _same(running, instance) else instance
    return out


def _same(a: BrokerInstance, b: BrokerInstance) -> bool:
    return (a.settings == b.settings and a.port == b.port
            and a.mo_path == b.mo_path and a.receipt_path == b.receipt_path
            and a.broker.broker_values == b.broker.broker_values
            and a.broker.attrs == b.broker.attrs)


@contextmanager
def _as(node: Node, settings: Settings) -> Iterator[None]:
    """``node.settings`` is ``settings`` for the block (no wait inside it)."""
    running = node.settings
    node.settings = settings
    try:
        yield
    finally:
        node.settings = running
