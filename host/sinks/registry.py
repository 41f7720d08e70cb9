"""Build the sink instances of a host, and check the routes that name them."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from host.config.schema import Converter
from host.routing.inbound import EMAIL_ONLY
from host.sinks.base import Sink

if TYPE_CHECKING:
    from host.api import HostAPI
    from host.config.settings import Settings


def _where(settings: Settings, *path: str | int) -> str:
    file, line = settings.where(*path)
    return f"{file}:{line}: " if file and line else (f"{file}: " if file else "")


def build_sinks(settings: Settings, host: HostAPI, classes: dict[str, type],
                given: Mapping[type, Mapping[str, Any]] | None = None,
                only: Collection[str] | None = None,
                ) -> tuple[dict[str, Sink], list[tuple[str, str]]]:
    """One instance per sink kind, its ``[kind]`` table of sinks.toml converted to its
    settings; problems come back as (kind, ``file:line: key: message``). Every sink is
    built as ``cls(host, settings)``; a class of ``given`` also receives the keyword
    arguments the composition root gives it there (the handler sink: its scripts).
    ``only``: build these kinds alone (a live change keeps the sinks it did not change)."""
    sinks: dict[str, Sink] = {}
    problems: list[tuple[str, str]] = []
    tables = settings.sinks
    for kind, cls in classes.items():
        if only is not None and kind not in only:
            continue
        raw = dict(tables.get(kind, {}))
        converted: Any = raw
        settings_class = getattr(cls, "settings_class", None)
        if isinstance(settings_class, type) and dataclasses.is_dataclass(settings_class):
            def locate(path: tuple[str | int, ...], k: str = kind) -> tuple[str | None,
                                                                            int | None]:
                return settings.where("sinks", k, *path)
            converter = Converter(locate, defer_secrets=settings.origin.defer_secrets)
            converted = converter.section(settings_class, raw, ())
            if converter.errors:
                for error in converter.errors:
                    error.key = f"{kind}.{error.key}" if error.key else kind
                    problems.append((kind, error.describe()))
                continue
        try:
            sinks[kind] = cls(host, converted, **(given or {}).get(cls, {}))
        # A sink is a plugin: a constructor that raises disables that sink only (BLE001).
        except Exception as exc:  # noqa: BLE001
            problems.append((kind, f"sink {kind}: {type(exc).__name__}: {exc}"))
    for kind in tables:
        if kind not in classes:
            problems.append((kind, f"{_where(settings, 'sinks', kind)}{kind}: no sink of "
                             f"this kind is installed; sinks: "
                             f"{', '.join(sorted(classes)) or 'none'}"))
    return sinks, problems


def route_problems(settings: Settings, sinks: Mapping[str, Sink]) -> list[tuple[str, str]]:
    """(route name, problem) for routes whose destination or target cannot work."""
    out = []
    if not settings.inbound and settings.routing.enabled:
        out += _catch_all_problems(sinks)
    for index, route in enumerate(settings.inbound):
        where = _where(settings, "inbound", index)
        sink = sinks.get(route.destination)
        if sink is None:
            out.append((route.name, f"{where}inbound[{index}].destination: no "
                        f"{route.destination} sink is available"))
            continue
        problem = sink.check_target(route.target)
        if problem:
            out.append((route.name, f"{where}inbound[{index}].target: {problem}"))
    return out


def sink_config_problems(settings: Settings, sinks: Mapping[str, Sink]
                         ) -> list[tuple[str, str, str]]:
    """(sink kind, file, problem) of each sink's :meth:`Sink.config_problems`."""
    out = []
    for kind, sink in sinks.items():
        try:
            out += [(kind, file, problem) for file, problem in sink.config_problems(settings)]
        # A sink is a plugin: its check failing is its problem, not the node's (BLE001).
        except Exception as exc:  # noqa: BLE001
            out.append((kind, "sinks.toml", f"sink {kind}: {type(exc).__name__}: {exc}"))
    return out


def _catch_all_problems(sinks: Mapping[str, Sink]) -> list[tuple[str, str]]:
    """No routes: everything goes to the sink that claims ``catch_all`` (R3: email), so
    exactly one must, and it must work."""
    claims = sorted(kind for kind, sink in sinks.items() if sink.catch_all)
    if len(claims) > 1:
        return [(claims[0], f"routes.toml: no routes, but the sinks {', '.join(claims)} "
                 "each claim catch_all: only one sink may take every message")]
    kind = claims[0] if claims else EMAIL_ONLY.destination
    sink = sinks.get(kind)
    problem = f"no {kind} sink is available" if sink is None else sink.check_target("")
    if problem:
        return [(kind, f"routes.toml: no routes, so every message goes to {kind}, "
                 f"but: {problem}")]
    return []
