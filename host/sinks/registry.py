"""Build the sink instances of a host, and check the routes that name them."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from host.config.schema import Converter
from host.sinks.base import Sink

if TYPE_CHECKING:
    from host.core import Host


def _where(host: Host, *path: str | int) -> str:
    file, line = host.settings.where(*path)
    return f"{file}:{line}: " if file and line else (f"{file}: " if file else "")


def build_sinks(host: Host, classes: dict[str, type]
                ) -> tuple[dict[str, Sink], list[tuple[str, str]]]:
    """One instance per sink kind, its ``[kind]`` table of sinks.toml converted to its
    settings; problems come back as (kind, ``file:line: key: message``)."""
    sinks: dict[str, Sink] = {}
    problems: list[tuple[str, str]] = []
    tables = host.settings.sinks
    for kind, cls in classes.items():
        raw = dict(tables.get(kind, {}))
        settings: Any = raw
        settings_class = getattr(cls, "settings_class", None)
        if isinstance(settings_class, type) and dataclasses.is_dataclass(settings_class):
            def locate(path: tuple[str | int, ...], k: str = kind) -> tuple[str | None,
                                                                            int | None]:
                return host.settings.where("sinks", k, *path)
            converter = Converter(locate,
                                  defer_secrets=host.settings.origin.defer_secrets)
            settings = converter.section(settings_class, raw, ())
            if converter.errors:
                for error in converter.errors:
                    error.key = f"{kind}.{error.key}" if error.key else kind
                    problems.append((kind, error.describe()))
                continue
        try:
            sinks[kind] = cls(host, settings)
        # A sink is a plugin: a constructor that raises disables that sink only (BLE001).
        except Exception as exc:  # noqa: BLE001
            problems.append((kind, f"sink {kind}: {type(exc).__name__}: {exc}"))
    for kind in tables:
        if kind not in classes:
            problems.append((kind, f"{_where(host, 'sinks', kind)}{kind}: no sink of this "
                             f"kind is installed; sinks: {', '.join(sorted(classes)) or 'none'}"))
    return sinks, problems


def route_problems(host: Host, sinks: dict[str, Sink]) -> list[tuple[str, str]]:
    """(route name, problem) for routes whose destination or target cannot work."""
    out = []
    if not host.settings.inbound and host.settings.routing.enabled:
        # no routes: everything goes to email (R3), so email must work
        email = sinks.get("email")
        problem = ("no email sink is available" if email is None
                   else email.check_target(""))
        if problem:
            out.append(("email", f"routes.toml: no routes, so every message goes to email, "
                        f"but: {problem}"))
    for index, route in enumerate(host.settings.inbound):
        where = _where(host, "inbound", index)
        sink = sinks.get(route.destination)
        if sink is None:
            out.append((route.name, f"{where}inbound[{index}].destination: no "
                        f"{route.destination} sink is available"))
            continue
        problem = sink.check_target(route.target)
        if problem:
            out.append((route.name, f"{where}inbound[{index}].target: {problem}"))
    return out
