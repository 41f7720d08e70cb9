"""Find and load every plugin item, each in isolation (SPEC B3).

Sources, in order (a later folder's file replaces an earlier one with the same stem):

1. the defaults of the core (``host.defaults``), registered ``trylast``;
2. the shipped ``plugins/`` folder, then each configured plugin folder:
   ``sinks/*.py`` or ``sinks/*/__init__.py`` (pluggy plugins, a file or a package),
   ``brokers/*.xml`` (+ same-stem ``.py`` adapter, or a package folder of that name),
   ``handlers/*.py`` (handler scripts, also pluggy plugins);
3. entry points of the groups ``smshost.brokers`` and ``smshost.sinks``, each loaded in
   its own ``try`` (never ``load_setuptools_entrypoints``).

Every item produces a :class:`~host.plugins.PluginRecord`; a broken one is recorded
with its file and reason, and the rest still load.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from host.brokers.registry import BrokerType, load_broker_type
from host.config.settings import PluginSettings
from host.defaults import DEFAULT_PLUGINS
from host.errors import PluginError
from host.loader import is_package, load_module, unload
from host.paths import shipped_plugins_dir
from host.plugins import Hooks, Plugins

ENTRY_POINT_GROUPS = ("smshost.brokers", "smshost.sinks")
_DEFAULTS = "host.defaults."
KINDS = ("brokers", "sinks", "handlers")


@dataclass
class Discovery:
    """What discovery found: brokers to define and sink classes. (Handler scripts are
    loaded by ``host.handlers.registry``, which also reloads them.)"""

    brokers: dict[str, BrokerType] = field(default_factory=dict)
    sinks: dict[str, type] = field(default_factory=dict)


def plugin_folders(settings: PluginSettings) -> list[Path]:
    """Shipped folder (if enabled) then configured ones, without duplicates."""
    folders = [shipped_plugins_dir()] if settings.shipped else []
    folders += [Path(d) for d in settings.dirs]
    unique: list[Path] = []
    for folder in folders:
        resolved = folder.resolve()
        if resolved not in unique and resolved.is_dir():
            unique.append(resolved)
    return unique


def discover(plugins: Plugins, settings: PluginSettings) -> Discovery:
    """Load everything; record each item in ``plugins.records``."""
    found = Discovery()
    disabled = set(settings.disabled)
    _register_defaults(plugins)
    files = _files_by_stem(plugin_folders(settings), disabled)
    for path in files["sinks"]:
        _load_python(plugins, path, "sink")
    for path in files["brokers"]:
        _load_broker(plugins, path, found)
    if settings.entry_points:
        _load_entry_points(plugins, disabled)
    _collect_registrations(plugins, found, disabled)
    plugins.pm.check_pending()
    return found


def _register_defaults(plugins: Plugins) -> None:
    for dotted in DEFAULT_PLUGINS:
        module = importlib.import_module(dotted)
        problem = plugins.register(module, name=dotted)
        if problem is not None:  # a bug in smshost itself: fail loudly
            raise PluginError(f"default plugin {dotted}: {problem}", name=dotted)


def _files_by_stem(folders: Iterable[Path], disabled: set[str]) -> dict[str, list[Path]]:
    chosen: dict[str, dict[str, Path]] = {kind: {} for kind in KINDS}
    patterns = {"brokers": "*.xml", "sinks": "*.py", "handlers": "*.py"}
    for folder in folders:
        for kind in KINDS:
            for path in sorted(_items(folder / kind, patterns[kind], kind == "sinks")):
                if path.name.startswith(("_", ".")) or path.stem in disabled:
                    continue
                chosen[kind][path.stem] = path
    return {kind: list(paths.values()) for kind, paths in chosen.items()}


def _items(folder: Path, pattern: str, packages: bool) -> list[Path]:
    """The files of ``folder`` matching ``pattern``, and its packages when allowed."""
    found = list(folder.glob(pattern))
    if packages and folder.is_dir():
        found += [path for path in folder.iterdir() if is_package(path)]
    return found


def _load_python(plugins: Plugins, path: Path, kind: str) -> ModuleType | None:
    try:
        module = load_module(path, kind + "s").module
    except PluginError as exc:
        plugins.record(kind, path.stem, str(path), str(exc))
        return None
    problem = plugins.register(module, name=f"{kind}:{path.stem}")
    plugins.record(kind, path.stem, str(path), problem and f"{path}: {problem}")
    if problem is not None:
        unload(module)
        return None
    return module


def _load_broker(plugins: Plugins, path: Path, found: Discovery) -> None:
    adapter: ModuleType | None = None
    adapter_path = path.with_suffix(".py")
    if not adapter_path.exists() and is_package(path.with_suffix("")):
        adapter_path = path.with_suffix("")
    if adapter_path.exists():
        try:
            adapter = load_module(adapter_path, "brokers").module
        except PluginError as exc:
            plugins.record("broker", path.stem, str(adapter_path), str(exc))
            return
    try:
        found.brokers[path.stem] = load_broker_type(path, adapter, str(adapter_path))
    except PluginError as exc:
        if adapter is not None:
            unload(adapter)
        plugins.record("broker", path.stem, str(path), str(exc))
        return
    plugins.record("broker", path.stem, str(path))


def _load_entry_points(plugins: Plugins, disabled: set[str]) -> None:
    for group in ENTRY_POINT_GROUPS:
        for ep in importlib.metadata.entry_points(group=group):
            if ep.name in disabled:
                continue
            dist = getattr(ep.dist, "name", None) or "unknown distribution"
            source = f"entry point {group}:{ep.name} ({dist})"
            try:
                obj = ep.load()
            # Installed packages may raise anything at import; record and go on (BLE001).
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                plugins.record("entry point", ep.name, source, f"{type(exc).__name__}: {exc}")
                continue
            problem = plugins.register(obj, name=f"{group}:{ep.name}")
            plugins.record("entry point", ep.name, source, problem)


def _collect_registrations(plugins: Plugins, found: Discovery, disabled: set[str]) -> None:
    def register_broker(definition: Path | str, adapter: type | None = None) -> None:
        path = Path(definition)
        if path.stem in found.brokers:
            plugins.record("broker", path.stem, str(path),
                           f"broker {path.stem!r} is already defined by "
                           f"{found.brokers[path.stem].definition.path}")
            return
        source = f"{adapter.__module__}.{adapter.__qualname__}" if adapter else str(path)
        try:
            found.brokers[path.stem] = load_broker_type(path, adapter, source, "entry point")
        except PluginError as exc:
            plugins.record("broker", path.stem, str(path), str(exc))
            return
        plugins.record("broker", path.stem, str(path))

    def register_sink(cls: type) -> None:
        kind = getattr(cls, "kind", None)
        source = f"{cls.__module__}.{cls.__qualname__}"
        if not isinstance(kind, str) or not kind:
            plugins.record("sink", cls.__name__, source, "a sink class needs a `kind` string")
        elif cls.__module__.startswith(_DEFAULTS) and (kind in found.sinks
                                                       or kind in disabled):
            pass  # a plugin's sink of this kind replaces the core's default (trylast)
        elif kind in found.sinks:
            other = found.sinks[kind]
            plugins.record("sink", kind, source, f"sink kind {kind!r} is already registered "
                           f"by {other.__module__}.{other.__qualname__}")
        else:
            found.sinks[kind] = cls

    hooks = Hooks(plugins)
    hooks.register_brokers(register_broker)
    hooks.register_sinks(register_sink)
