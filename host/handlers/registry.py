"""The live handler scripts, reconciled with the files on disk (SPEC H1, H2).

``reconcile()`` is idempotent: it lists ``handlers/*.py`` of every plugin folder
(skipping ``_*.py`` and dotfiles), hashes each file, and loads what is new or changed
as a fresh module under a new name (``smshost_plugins.handlers.<Stem>__<digest>``; no
``importlib.reload``, no ``sys.path`` edits). A version is swapped in only once it
loaded and passed the checks (a ``handle(ctx)`` function; hooks it implements exist);
otherwise the previous version stays live and the failure is recorded (log, /health,
``smshost check``, the ``handler_loads`` table). A deleted file is unregistered and
routes naming it fall back to the default route. Calls already running finish on the
version they started with.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host import jsontext
from host.discovery import plugin_folders
from host.errors import PluginError
from host.handlers.context import Context, Reply, RouteTo, Send
from host.handlers.dryrun import Rehearsal, rehearse
from host.handlers.runner import HandlerFailed, ThreadSlots, accepts_context, run
from host.loader import load_module, unload
from host.models import Message, ago, utcnow
from host.sends import SendRequest
from host.plugins import validate_plugin

if TYPE_CHECKING:
    from types import ModuleType

    from host.brokers.instances import BrokerInstance
    from host.config.settings import HandlerSettings, PluginSettings
    from host.outbound import Outbound
    from host.plugins import Plugins
    from host.store import Store

log = logging.getLogger("smshost.handlers")
STATE_REFRESH = 86400.0
"""Seconds after which a state in use is saved again, unchanged (its last use)."""


@dataclass(frozen=True, slots=True)
class HandlerEntry:
    name: str
    path: Path
    module: ModuleType
    handle: Callable[..., Any]
    is_async: bool
    digest: str
    loaded_at: str


@dataclass(frozen=True, slots=True)
class LoadEvent:
    name: str
    path: str
    status: str  # loaded, failed, removed
    digest: str | None
    error: str | None
    at: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "status": self.status,
                "digest": self.digest, "error": self.error, "at": self.at}


@dataclass(frozen=True, slots=True)
class HandlerCall:
    """What one call of a handler came to (the handler sink turns it into a delivery)."""

    failure: str | None  # why the call failed: no such handler, it raised, timed out
    data: dict[str, Any]  # recorded with the routing event: handler, version, actions...
    route: RouteTo | None  # where ``ctx.route_to`` hands the message on


Reloaded = Callable[[str, str, str | None], Awaitable[None]]
"""Announces a load event: (name, status, error) (the ``handler_reloaded`` hook)."""


class HandlerRegistry:
    def __init__(self, settings: HandlerSettings, plugin_settings: PluginSettings,
                 store: Store, plugins: Plugins, brokers: Mapping[str, BrokerInstance],
                 outbound: Outbound, reloaded: Reloaded) -> None:
        self.sms_attrs: Mapping[str, str] = {}  # [attrs] of smshost.toml (the host sets it)
        self._settings = settings
        self._plugin_settings = plugin_settings
        self._store = store
        self._plugins = plugins
        self._brokers = brokers
        self._outbound = outbound
        self._reloaded = reloaded
        self.entries: dict[str, HandlerEntry] = {}
        self.failed: dict[str, LoadEvent] = {}  # name → its last failed load (still failing)
        self._seen: dict[str, str] = {}  # name → digest of the file last tried
        self._unsaved: list[LoadEvent] = []
        self._lock: asyncio.Lock | None = None
        self.slots = ThreadSlots(settings.threads)

    # -- files ------------------------------------------------------------------------

    def folders(self) -> list[Path]:
        return [f / "handlers" for f in plugin_folders(self._plugin_settings)
                if (f / "handlers").is_dir()]

    def scan(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for folder in self.folders():
            for path in sorted(folder.glob("*.py")):
                if not path.name.startswith(("_", ".")):
                    found[path.stem] = path
        return found

    # -- loading ----------------------------------------------------------------------

    def reconcile(self) -> list[LoadEvent]:
        """Bring the live handlers in line with the files; the load events it caused."""
        events = []
        files = self.scan()
        for name, path in files.items():
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue  # vanished between listing and reading: the next round sees it
            if self._seen.get(name) == digest:
                continue
            self._seen[name] = digest
            events.append(self._load(name, path))
        for name in [n for n in list(self._seen) if n not in files]:
            events.append(self._remove(name))
        self._unsaved += events
        return events

    async def reconcile_async(self) -> list[LoadEvent]:
        """Reconcile (one at a time) and record the events in the database."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            events = self.reconcile()
            await self.save()
        for event in events:
            await self._reloaded(event.name, event.status, event.error)
        return events

    async def save(self) -> None:
        events, self._unsaved = self._unsaved, []
        if events and self._store.is_open:
            await self._store.write(lambda db: db.conn.executemany(
                "insert into handler_loads (name, digest, status, error, at) values "
                "(?, ?, ?, ?, ?)", [(e.name, e.digest, e.status, e.error, e.at) for e in events]))

    def _load(self, name: str, path: Path) -> LoadEvent:
        try:
            loaded = load_module(path, "handlers", versioned=True)
        except PluginError as exc:
            return self._failed(name, path, None, str(exc))
        module = loaded.module
        problem = self._check(module, name, path)
        if problem is not None:
            unload(module)
            return self._failed(name, path, loaded.digest, problem)
        handle = module.handle
        entry = HandlerEntry(name, path, module, handle, inspect.iscoroutinefunction(handle),
                             loaded.digest, utcnow())
        old = self.entries.get(name)
        self.entries[name] = entry  # the swap: one reference
        self._plugins.unregister(f"handler:{name}")
        self._plugins.register(module, f"handler:{name}")  # checked just before
        self.failed.pop(name, None)
        if old is not None:
            self._retire(old)
        log.info("handler %s %s (%s)", name, "reloaded" if old else "loaded", loaded.digest[:12])
        return LoadEvent(name, str(path), "loaded", loaded.digest, None, entry.loaded_at)

    def _check(self, module: ModuleType, name: str, path: Path) -> str | None:
        handle = getattr(module, "handle", None)
        if not callable(handle):
            return f"{path}: no handle(ctx) function"
        if not accepts_context(handle):
            return f"{path}: handle must take one argument (the context)"
        for hook in ("setup", "teardown"):
            if hasattr(module, hook) and not callable(getattr(module, hook)):
                return f"{path}: {hook} must be a function"
        problem = validate_plugin(module, f"handler:{name}")
        return f"{path}: {problem}" if problem else None

    def _failed(self, name: str, path: Path, digest: str | None, error: str) -> LoadEvent:
        live = self.entries.get(name)
        serving = f"; still serving the version loaded at {live.loaded_at}" if live else ""
        log.error("handler %s failed to load: %s%s", name, error, serving)
        event = LoadEvent(name, str(path), "failed", digest, error, utcnow())
        self.failed[name] = event
        return event

    def _remove(self, name: str) -> LoadEvent:
        self._seen.pop(name, None)
        self.failed.pop(name, None)
        old = self.entries.pop(name, None)
        self._plugins.unregister(f"handler:{name}")
        if old is not None:
            self._retire(old)
        log.info("handler %s removed", name)
        return LoadEvent(name, str(old.path) if old else "", "removed", None, None, utcnow())

    def _retire(self, entry: HandlerEntry) -> None:
        teardown = getattr(entry.module, "teardown", None)
        if callable(teardown):
            try:
                teardown()
            # The old version's teardown must not stop the new one (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("handler %s: teardown of the old version failed", entry.name)
        unload(entry.module)

    def get(self, name: str) -> HandlerEntry | None:
        return self.entries.get(name)

    # -- calls ------------------------------------------------------------------------

    def check_target(self, target: str) -> str | None:
        """Why a route naming handler ``target`` cannot work, or None."""
        if not target:
            return "a handler route names the handler in target"
        if self.get(target) is None and target not in self.failed:
            known = ", ".join(sorted(self.entries)) or "none"
            return f"no handler named {target!r} (handlers: {known})"
        return None

    async def call(self, message: Message, name: str) -> HandlerCall:
        """Run handler ``name`` on ``message`` and carry out what it recorded."""
        entry = self.get(name)
        if entry is None:
            return HandlerCall(f"no handler named {name!r} is loaded", {}, None)
        ctx = await self.context(message, entry.name)
        state_before = dict(ctx.state)
        try:
            await run(entry, ctx, self._settings.timeout, self.slots)
        except HandlerFailed as exc:
            return HandlerCall(f"{exc.summary}\n{exc.details}"[:4000], {}, None)
        outcomes, problems = await self.apply(ctx, state_before)
        data: dict[str, Any] = {"handler": entry.name, "version": entry.digest[:12],
                                "actions": ctx.describe()}
        if outcomes:  # each reply and send: its message, queued or failed (why)
            data["sent"] = outcomes
        if problems:
            data["problems"] = problems
        return HandlerCall(None, data, ctx.route)

    async def context(self, message: Message, name: str) -> Context:
        """A context for ``message``, with attributes and the conversation's state."""
        row = self._store.read_now(lambda db: db.execute(
            "select data, updated_at from conversation_state where scope = ? and local = ? "
            "and remote = ?", [name, message.local or "", message.remote or ""]).fetchone())
        state = jsontext.loads(row[0], max_depth=None) if row else {}
        return Context(message, name, self.attrs(message), state,
                       log=logging.getLogger(f"smshost.handler.{name}"),
                       state_saved_at=row[1] if row else None)

    def attrs(self, message: Message) -> dict[str, Any]:
        """Custom attributes: the SMS-level ones ([attrs] of smshost.toml), the
        broker's, the account's, then the message's (P4); a later one of the same name
        wins."""
        attrs: dict[str, Any] = dict(self.sms_attrs)
        instance = self._brokers.get(message.broker or "")
        if instance is not None:
            attrs.update(instance.settings.attrs)
            account = instance.accounts.get(message.account or "")
            if account is not None:
                attrs.update(account.attrs)
        attrs.update(message.attrs)
        return attrs

    async def apply(self, ctx: Context, original_state: dict[str, Any]
                    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Carry out a finished call's replies and sends and save its state; what each
        reply and send became (its message, queued or failed with the reason), and the
        problems met, each also logged. A refused reply or send is a ``failed``
        message (:mod:`host.refusals`); the others go on."""
        outcomes: list[dict[str, Any]] = []
        problems = []
        for action in ctx.actions:
            if isinstance(action, RouteTo):
                continue
            try:
                outcome = await self._carry_out(ctx, action)
            # What is not a refusal (the database refusing the write, a bug): this one
            # is not sent, the others go on (BLE001).
            except Exception as exc:  # noqa: BLE001
                outcome = {"kind": "reply" if isinstance(action, Reply) else "send",
                           "to": action.to if isinstance(action, Send) else ctx.ani,
                           "status": "not stored", "error": f"{type(exc).__name__}: {exc}"}
            outcomes.append(outcome)
            if "error" in outcome:
                problems.append(f"{outcome['kind']} to {outcome['to']}: {outcome['error']}")
                log.warning("handler %s: %s", ctx.handler, problems[-1])
        if ctx.state != original_state or _unsaved_for_a_day(ctx):
            data = json.dumps(ctx.state)
            await self._store.write(lambda db: db.conn.execute(
                "insert into conversation_state (scope, local, remote, data, updated_at) "
                "values (?, ?, ?, ?, ?) on conflict (scope, local, remote) do update set "
                "data = excluded.data, updated_at = excluded.updated_at",
                [ctx.handler, ctx.message.local or "", ctx.message.remote or "", data,
                 utcnow()]))
        return outcomes, problems

    async def _carry_out(self, ctx: Context, action: Reply | Send) -> dict[str, Any]:
        """One reply (through the pairing, B8) or send (outbound routes, O2)."""
        outbound = self._outbound
        if isinstance(action, Reply):
            kind, to = "reply", ctx.ani
            messages = [await outbound.reply(ctx.message, action.text)]
        else:
            # from the message's broker and account unless the handler named others
            same = action.account is None and action.broker is None
            kind, to = "send", action.to
            messages = (await outbound.send_or_record(SendRequest(
                action.to, action.text, ctx.message.broker if same else action.broker,
                action.account or (ctx.message.account if same else None),
                source="handler"))).messages
        first = messages[0]
        outcome: dict[str, Any] = {"kind": kind, "to": to, "message_id": first.id,
                                   "status": first.status}
        if first.status == "failed":
            outcome["error"] = first.attrs.get("error", "")
        return outcome

    async def rehearse(self, name: str, *, ani: str, dnis: str | None, body: str,
                       broker: str | None = None) -> Rehearsal:
        """What handler ``name`` would do with a made-up message, carrying out nothing
        (H5: host.handlers.dryrun; the admin's handlers page)."""
        return await rehearse(self, self._brokers, self._settings.timeout, name, ani=ani,
                              dnis=dnis, body=body, broker=broker)

    def describe(self) -> dict[str, Any]:
        """For /health and the API: what is live and what failed."""
        return {
            "loaded": [{"name": e.name, "digest": e.digest[:12], "loaded_at": e.loaded_at,
                        "path": str(e.path)} for e in self.entries.values()],
            "failures": [e.to_json() for e in self.failed.values()],
        }


def _unsaved_for_a_day(ctx: Context) -> bool:
    """A state in use that was last saved more than a day ago: saved again, unchanged,
    so that its ``updated_at`` says when it was last used (at most one write a day per
    conversation), and the purge, which takes state unused for ``purge.days``, leaves
    the state of a conversation that goes on."""
    return bool(ctx.state) and ctx.state_saved_at is not None and \
        ctx.state_saved_at < ago(STATE_REFRESH)
