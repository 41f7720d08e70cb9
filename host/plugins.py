"""The plugin manager of one host: isolated registration and isolated hook calls.

pluggy alone is not enough for SPEC B3/H4 (see STYLE section 2): ``register`` is not
atomic, one raising implementation stops the others, and
``load_setuptools_entrypoints`` gives up at the first broken package. So:

* :meth:`Plugins.register` validates a plugin in a scratch manager first (argument
  names, unknown hooks via ``check_pending``, no wrappers) and touches the live manager
  only when it passes; a failure becomes a :class:`PluginRecord`.
* :meth:`Plugins.call_each` calls implementations one by one in pluggy's order,
  awaiting awaitables, and isolates each: an exception is logged, counted and the
  remaining implementations still run. The call returns a :class:`HookCall`: the
  results and the failures of that call, so a caller that must act on a failure
  (the purge's ``messages_kept``) knows of it for sure. ``Plugins.hook_failures`` is a
  bounded log for display only: never infer a call's failures from it.
* :class:`Hooks` is the typed facade the core uses; it never writes ``pm.hook.x()``.
"""

from __future__ import annotations

import inspect
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

from host import hookspecs
from host.logs import log_failure

if TYPE_CHECKING:
    from sqlite_utils import Migrations
    from starlette.routing import BaseRoute

    from host.api import HostAPI
    from host.models import Message, StatusEvent
    from host.routing.inbound import Route

log = logging.getLogger("smshost.plugins")


@dataclass(frozen=True, slots=True)
class PluginRecord:
    """What happened when one plugin item was loaded."""

    kind: str  # broker, sink, handler, entry point, default
    name: str
    source: str  # file path, or "entry point <group>:<name> (<distribution>)"
    ok: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HookFailure:
    """A hook implementation that raised at run time."""

    plugin: str
    hook: str
    error: str


class KeptQueries(NamedTuple):
    """The answers to ``messages_kept``: ``(plugin, SQL)`` pairs, and the problems that
    left a plugin's answer out (each naming the plugin)."""

    queries: list[tuple[str, str]]
    problems: list[str]


class HookCall(NamedTuple):
    """What one hook call gave: the non-None results and the implementations that
    raised (in call order). A named tuple: made for every hook call, on the hot path."""

    results: list[Any]
    failures: tuple[HookFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


def make_plugin_manager() -> pluggy.PluginManager:
    """A new manager with smshost's hookspecs. There is no global one."""
    pm = pluggy.PluginManager("smshost")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("SMSHOST_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda text: log.debug("%s", text.rstrip()))
        pm.enable_tracing()
    return pm


class Plugins:
    """Live plugin manager plus the record of every load."""

    def __init__(self) -> None:
        self.pm = make_plugin_manager()
        self.records: list[PluginRecord] = []
        self.hook_failures: deque[HookFailure] = deque(maxlen=50)
        self.on_hook_failure: Callable[[HookFailure], None] | None = None
        self._impl_cache: dict[str, list[pluggy.HookImpl]] = {}

    # -- loading --------------------------------------------------------------------

    def record(self, kind: str, name: str, source: str, error: str | None = None) -> None:
        self.records.append(PluginRecord(kind, name, source, error is None, error))
        if error is not None:
            log.error("plugin %s %s failed to load: %s", kind, name, error)

    def record_once(self, kind: str, name: str, source: str, error: str) -> None:
        """:meth:`record` a failure unless the same one is recorded already."""
        if PluginRecord(kind, name, source, False, error) not in self.records:
            self.record(kind, name, source, error)

    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if not r.ok]

    def register(self, plugin: object, name: str) -> str | None:
        """Register ``plugin`` if it is valid; return the reason when it is not."""
        problem = validate_plugin(plugin, name)
        if problem is not None:
            return problem
        if self.pm.has_plugin(name) or self.pm.is_blocked(name):
            return f"a plugin named {name!r} is already registered"
        self.pm.register(plugin, name=name)
        self._impl_cache.clear()
        return None

    def unregister(self, name: str) -> None:
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
            self._impl_cache.clear()

    # -- calling --------------------------------------------------------------------

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """Implementations in pluggy's call order (cached; registration clears it)."""
        found = self._impl_cache.get(hook_name)
        if found is None:
            caller = getattr(self.pm.hook, hook_name)
            found = self._impl_cache[hook_name] = [
                impl for impl in reversed(caller.get_hookimpls())
                if not (impl.wrapper or impl.hookwrapper)]
        return found

    async def call_each(self, hook_name: str, **kwargs: Any) -> HookCall:
        """Call every implementation in turn; isolate failures; return the non-None
        results and the failures."""
        results = []
        failures: tuple[HookFailure, ...] = ()
        for impl in self._impls(hook_name):
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
                if result is not None and inspect.isawaitable(result):
                    result = await result
            # A plugin may raise anything; isolating it is what this loop is for (BLE001).
            except Exception as exc:  # noqa: BLE001
                failures += (self._failed(impl, hook_name, exc),)
                continue
            if result is not None:
                results.append(result)
        return HookCall(results, failures)

    def call_each_sync(self, hook_name: str, **kwargs: Any) -> HookCall:
        """As :meth:`call_each` for synchronous hooks; an awaitable result is an error."""
        call = self.call_each_sync_named(hook_name, **kwargs)
        return HookCall([result for _, result in call.results], call.failures)

    def call_each_sync_named(self, hook_name: str, **kwargs: Any) -> HookCall:
        """:meth:`call_each_sync` whose results are ``(plugin name, result)`` pairs, for a
        caller that must say which plugin gave what."""
        results = []
        failures: tuple[HookFailure, ...] = ()
        for impl in self._impls(hook_name):
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError(f"{hook_name} is synchronous; the implementation is async")
            except Exception as exc:  # noqa: BLE001 - see call_each
                failures += (self._failed(impl, hook_name, exc),)
                continue
            if result is not None:
                results.append((impl.plugin_name, result))
        return HookCall(results, failures)

    def _failed(self, impl: pluggy.HookImpl, hook_name: str, exc: Exception) -> HookFailure:
        failure = HookFailure(impl.plugin_name, hook_name, f"{type(exc).__name__}: {exc}")
        self.hook_failures.append(failure)  # the recent ones, for display
        log_failure(log, f"plugin {impl.plugin_name} failed in hook {hook_name}", exc,
                    "plugin", impl.plugin_name, hook_name)
        if self.on_hook_failure is not None:
            self.on_hook_failure(failure)
        return failure


def validate_plugin(plugin: object, name: str) -> str | None:
    """Register ``plugin`` in a scratch manager; return the problem, or None if it is valid."""
    scratch = make_plugin_manager()
    try:
        scratch.register(plugin, name=name)
        scratch.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        return str(exc)
    for caller in scratch.hook.__dict__.values():
        if isinstance(caller, pluggy.HookCaller):
            for impl in caller.get_hookimpls():
                if impl.wrapper or impl.hookwrapper:
                    return f"{caller.name}: wrapper implementations are not supported"
    return None


class Hooks:
    """Typed facade over the hooks: the only way the core calls them."""

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins

    def register_brokers(self, register: Callable[..., None]) -> None:
        self._recorded(self._plugins.call_each_sync("register_brokers", register=register))

    def register_sinks(self, register: Callable[[type], None]) -> None:
        self._recorded(self._plugins.call_each_sync("register_sinks", register=register))

    def register_migrations(self, register: Callable[[Migrations], None]) -> None:
        self._recorded(self._plugins.call_each_sync("register_migrations",
                                                    register=register))

    def register_routes(self, host: HostAPI, register: Callable[[str, Sequence[BaseRoute]],
                                                                None]) -> list[BaseRoute]:
        """What plugins ``register`` goes through ``register``; the routes they return
        (the first form of the hook) are returned."""
        from starlette.routing import BaseRoute

        routes: list[BaseRoute] = []
        call = self._plugins.call_each_sync_named("register_routes", host=host,
                                                  register=register)
        self._recorded(HookCall([], call.failures))
        for plugin, result in call.results:
            bad = [r for r in result if not isinstance(r, BaseRoute)
                   or not isinstance(getattr(r, "path", None), str)]
            if bad:  # one plugin's bad route is its load failure, not the node's
                self._plugins.record_once(
                    "plugin", plugin, "hook register_routes",
                    f"a returned route needs a path (a Starlette Route or Mount); got "
                    f"{type(bad[0]).__name__}")
                continue
            routes.extend(result)
        return routes

    def prepare_connection(self, conn: sqlite3.Connection) -> None:
        self._plugins.call_each_sync("prepare_connection", conn=conn)

    async def startup(self, host: HostAPI) -> None:
        await self._plugins.call_each("startup", host=host)

    async def shutdown(self, host: HostAPI) -> None:
        await self._plugins.call_each("shutdown", host=host)

    async def signed_out(self, host: HostAPI, login: str) -> None:
        await self._plugins.call_each("signed_out", host=host, login=login)

    async def message_stored(self, host: HostAPI, message: Message) -> None:
        await self._plugins.call_each("message_stored", host=host, message=message)

    async def message_status_changed(self, host: HostAPI, message: Message, old: str | None,
                                     new: str, event: StatusEvent) -> None:
        await self._plugins.call_each("message_status_changed", host=host, message=message,
                                      old=old, new=new, event=event)

    async def message_routed(self, host: HostAPI, message: Message, route: Route | None,
                             outcome: str, detail: dict[str, Any]) -> None:
        await self._plugins.call_each("message_routed", host=host, message=message,
                                      route=route, outcome=outcome, detail=detail)

    async def handler_reloaded(self, host: HostAPI, name: str, status: str,
                               error: str | None) -> None:
        await self._plugins.call_each("handler_reloaded", host=host, name=name,
                                      status=status, error=error)

    def sender_for(self, host: HostAPI, kind: str, name: str) -> tuple[str | None, str] | None:
        """The first plugin's (broker, account) of a workgroup or user; None: unknown."""
        for result in self._plugins.call_each_sync("sender_for", host=host, kind=kind,
                                                   name=name).results:
            broker, account = result
            return (str(broker) if broker else None), str(account or "")
        return None

    def people_in_config(self, host: HostAPI) -> list[dict[str, Any]]:
        """Every plugin's workgroups and users, in order (a failure is logged and
        counted, and that plugin's are left out)."""
        found: list[dict[str, Any]] = []
        for result in self._plugins.call_each_sync("people_in_config", host=host).results:
            found += [item for item in result if isinstance(item, dict)]
        return found

    def messages_kept(self, host: HostAPI) -> KeptQueries:
        """Each plugin's query, and why one could not be had (then nothing may be
        purged: its messages would go), naming the plugin."""
        call = self._plugins.call_each_sync_named("messages_kept", host=host)
        problems = [f"plugin {f.plugin} failed to say which messages it keeps: {f.error}"
                    for f in call.failures]
        queries = []
        for plugin, sql in call.results:
            if not isinstance(sql, str):
                problems.append(f"plugin {plugin} gave no SQL text for the messages it "
                                f"keeps: {sql!r:.80}")
            elif sql.strip():
                queries.append((plugin, sql))
        return KeptQueries(queries, problems)

    async def purge(self, host: HostAPI, cutoff: str, batch_size: int,
                    dry_run: bool) -> HookCall:
        """Each implementation's ``{table: rows}`` and the implementations that failed."""
        return await self._plugins.call_each("purge", host=host, cutoff=cutoff,
                                             batch_size=batch_size, dry_run=dry_run)

    def _recorded(self, call: HookCall) -> list[Any]:
        """The results of a registration hook; each failure is recorded as a plugin that
        failed to load (``smshost check`` and /health show it), once."""
        for failure in call.failures:
            self._plugins.record_once("plugin", failure.plugin, f"hook {failure.hook}",
                                      failure.error)
        return call.results
