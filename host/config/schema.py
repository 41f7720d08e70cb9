"""Declared settings: typed, frozen dataclasses converted from TOML with precise errors.

A section is a frozen dataclass whose fields are declared with :func:`setting`, giving
the default, the help text used by ``docs/operators.md``, and an optional ``check``.
:func:`convert` turns parsed TOML into those dataclasses and collects every problem
(unknown key, wrong type, missing value, failed check, cross-field rule) as a
``ConfigError`` carrying file, line and key, instead of stopping at the first one.

Items of an *isolated* array (``[[brokers]]``: each instance stands on its own) are
converted leniently: a problem inside item ``i`` (or a rule about it, such as a name
used twice) goes to ``item_errors[(key, i)]`` instead of ``errors``, and the item is
still built, with defaults for what could not be read, so the others keep their
positions and the owner can leave that one item out.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Collection, Iterable
from typing import Any, Literal, Union

from host.config.lines import KeyPath
from host.config.secrets import Secret, SecretUnavailable, resolve_secret
from host.errors import ConfigError

Check = Callable[[Any], "str | None"]


class RawTable(dict):  # type: ignore[type-arg]
    """A TOML table kept as it is, checked later by whoever owns it (a sink's settings)."""
Locate = Callable[[KeyPath], tuple["str | None", "int | None"]]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    check: Check | None = None,
    factory: Callable[[], Any] | None = None,
    doc_default: str | None = None,
) -> Any:
    """Declare one setting: its default (omit for a required one), help and check."""
    meta = {"help": help, "check": check, "doc_default": doc_default}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def key_text(path: KeyPath) -> str:
    """``("listeners", 1, "port")`` → ``listeners[1].port``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class Converter:
    """Converts one parsed document tree, collecting errors."""

    def __init__(self, locate: Locate, environ: dict[str, str] | None = None, *,
                 defer_secrets: bool = False, isolated: Collection[str] = ()) -> None:
        self.locate = locate
        self.environ = environ
        self.defer_secrets = defer_secrets  # an unreadable secret fails when revealed
        self.isolated = frozenset(isolated)
        self.errors: list[ConfigError] = []
        self.item_errors: dict[tuple[str, int], list[ConfigError]] = {}

    def error(self, path: KeyPath, message: str) -> None:
        error = self._problem(path, message)
        item = self._item(path)
        if item is None:
            self.errors.append(error)
        else:
            self.item_errors.setdefault(item, []).append(error)

    def _problem(self, path: KeyPath, message: str) -> ConfigError:
        file, line = self.locate(path)
        return ConfigError(message, file=file, line=line, key=key_text(path) or None)

    def _item(self, path: KeyPath) -> tuple[str, int] | None:
        """``(key, i)`` when ``path`` lies inside item ``i`` of an isolated array."""
        if len(path) >= 2 and path[0] in self.isolated and isinstance(path[1], int):
            return str(path[0]), path[1]
        return None

    def convert(self, tp: Any, raw: Any, path: KeyPath) -> Any:
        """Convert ``raw`` to ``tp``; on error record it and return ``_INVALID``."""
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            return self.convert(options[0], raw, path)
        if dataclasses.is_dataclass(tp):
            return self.section(typing.cast(type, tp), raw, path)
        if tp is RawTable:
            if not isinstance(raw, dict):
                return self._fail(path, f"expected a table, got {_toml_type(raw)}")
            return RawTable(raw)
        if tp is Secret:
            try:
                return resolve_secret(raw, self.environ)
            except SecretUnavailable as exc:
                if self.defer_secrets:
                    return Secret.unavailable(exc.source, self._problem(path, str(exc)))
                return self._fail(path, str(exc))
            except ValueError as exc:
                return self._fail(path, str(exc))
        if origin is Literal:
            choices = typing.get_args(tp)
            if raw in choices:
                return raw
            return self._fail(path, f"must be one of {', '.join(map(repr, choices))}; got {raw!r}")
        if origin is tuple:
            return self._sequence(typing.get_args(tp)[0], raw, path)
        if origin is dict:
            return self._mapping(typing.get_args(tp)[1], raw, path)
        return self._scalar(tp, raw, path)

    def _fail(self, path: KeyPath, message: str) -> Any:
        self.error(path, message)
        return _INVALID

    def _scalar(self, tp: Any, raw: Any, path: KeyPath) -> Any:
        ok = {
            bool: isinstance(raw, bool),
            int: isinstance(raw, int) and not isinstance(raw, bool),
            float: isinstance(raw, int | float) and not isinstance(raw, bool),
            str: isinstance(raw, str),
        }.get(tp)
        if ok is None:
            raise TypeError(f"unsupported setting type {tp!r} at {key_text(path)}")
        if not ok:
            return self._fail(path, f"expected {_type_name(tp)}, got {_toml_type(raw)} {raw!r}")
        return float(raw) if tp is float else raw

    def _sequence(self, item: Any, raw: Any, path: KeyPath) -> Any:
        if not isinstance(raw, list):
            return self._fail(path, f"expected an array, got {_toml_type(raw)}")
        items = tuple(self.convert(item, value, path + (i,)) for i, value in enumerate(raw))
        if len(path) == 1 and path[0] in self.isolated:  # a stand-in keeps each position
            items = tuple(_placeholder(item) if v is _INVALID else v for v in items)
        elif self._item(path) is not None:
            items = tuple(v for v in items if v is not _INVALID)
        return _INVALID if any(v is _INVALID for v in items) else items

    def _mapping(self, item: Any, raw: Any, path: KeyPath) -> Any:
        if not isinstance(raw, dict):
            return self._fail(path, f"expected a table, got {_toml_type(raw)}")
        items = {k: self.convert(item, v, path + (k,)) for k, v in raw.items()}
        if self._item(path) is not None:
            items = {k: v for k, v in items.items() if v is not _INVALID}
        return _INVALID if any(v is _INVALID for v in items.values()) else items

    def section(self, cls: type, raw: Any, path: KeyPath) -> Any:
        if not isinstance(raw, dict):
            return self._fail(path, f"expected a table, got {_toml_type(raw)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        for key in raw:
            if key not in fields:
                self.error(path + (key,), _unknown(key, fields))
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if name in raw:
                values[name] = self._checked(field, hints[name], raw[name], path + (name,))
            elif not _has_default(field):
                self.error(path + (name,), "missing value (this setting is required)")
                values[name] = _INVALID
        if self._item(path) is not None:  # lenient: what could not be read takes its default
            values = {name: _fallback(fields[name], hints[name]) if v is _INVALID else v
                      for name, v in values.items()}
        if any(v is _INVALID for v in values.values()):
            return _INVALID
        obj = cls(**values)
        for rel, message in _problems(obj):
            self.error(path + rel, message)
        return obj

    def _checked(self, field: dataclasses.Field[Any], tp: Any, raw: Any, path: KeyPath) -> Any:
        value = self.convert(tp, raw, path)
        check: Check | None = field.metadata.get("check")
        if value is not _INVALID and check is not None:
            problem = check(value)
            if problem:
                return self._fail(path, problem)
        return value


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


def _problems(obj: Any) -> Iterable[tuple[KeyPath, str]]:
    finder = getattr(obj, "problems", None)
    return list(finder()) if finder is not None else []


def _fallback(field: dataclasses.Field[Any], tp: Any) -> Any:
    """The value standing in for a setting that could not be read: its default, or
    "" for a required string; _INVALID for anything else."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return "" if tp is str else _INVALID


def _placeholder(cls: Any) -> Any:
    """An item built from defaults alone (its table could not be read at all)."""
    if not dataclasses.is_dataclass(cls):
        return _INVALID
    hints = typing.get_type_hints(cls)
    values = {f.name: _fallback(f, hints[f.name]) for f in dataclasses.fields(cls)
              if not f.metadata.get("internal")}
    if any(v is _INVALID for v in values.values()):
        return _INVALID
    return typing.cast(Callable[..., Any], cls)(**values)


def _has_default(field: dataclasses.Field[Any]) -> bool:
    return (
        field.default is not dataclasses.MISSING
        or field.default_factory is not dataclasses.MISSING
    )


def _unknown(key: str, fields: dict[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(fields)}"
    return f"unknown key {key!r}{hint}"


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _toml_type(raw: Any) -> str:
    return {
        bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
        dict: "table",
    }.get(type(raw), type(raw).__name__)


# -- checks used by the declarations ------------------------------------------------

HOUR, DAY = 3600.0, 86400.0
"""Units of the upper bounds of durations. Every duration setting has one: a duration
becomes a cutoff or a timer, beyond its bound it protects nothing any more, and at the
extreme it overflowed a date (a purge of 400000 days cut at the year 931, which sorted
after every stored time and deleted everything)."""


def greater_than(limit: float, most: float | None = None) -> Check:
    """More than ``limit`` (and at most ``most``, when given). NaN never passes."""
    def check(value: Any) -> str | None:
        if value > limit and (most is None or value <= most):
            return None
        bound = "" if most is None else f" and at most {most:.15g}"
        return f"must be greater than {limit:g}{bound}; got {value!r}"
    return check


def at_least(limit: float, most: float | None = None) -> Check:
    """``limit`` or more (and at most ``most``, when given). NaN never passes."""
    def check(value: Any) -> str | None:
        if value >= limit and (most is None or value <= most):
            return None
        if most is None:
            return f"must be at least {limit:g}; got {value!r}"
        return f"must be between {limit:g} and {most:.15g}; got {value!r}"
    return check


def each(check: Check) -> Check:
    """``check`` applied to every item of an array; the first problem, with its index."""
    def check_all(values: Any) -> str | None:
        for i, value in enumerate(values):
            problem = check(value)
            if problem:
                return f"item {i}: {problem}"
        return None
    return check_all


def between(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else \
            f"must be between {low:g} and {high:g}; got {value!r}"
    return check


def port_number(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a TCP port (0-65535); got {value!r}"


def time_of_day(value: Any) -> str | None:
    parts = value.split(":")
    if len(parts) == 2 and all(p.isdigit() and len(p) == 2 for p in parts):
        hour, minute = int(parts[0]), int(parts[1])
        if hour < 24 and minute < 60:
            return None
    return f'must be a time of day "HH:MM" (24-hour); got {value!r}'


MAX_NAME = 100


def a_name(value: Any) -> str | None:
    """A name shown in lists, logs and history: one line of 1 to 100 printable
    characters, without spaces at either end."""
    if not value or len(value) > MAX_NAME:
        return f"must be 1 to {MAX_NAME} characters; got {len(value)}"
    if not value.isprintable() or value != value.strip():
        return (f"must be one line of printable characters without spaces at either end; "
                f"got {value!r}")
    return None
