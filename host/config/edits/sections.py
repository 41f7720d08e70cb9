"""Edits of single sections: ``[purge]`` and the SMS-level ``[attrs]`` of
smshost.toml, ``[optout]`` of routes.toml, and any one setting by its dotted key
(``purge.days``, ``attrs.region``, ``brokers.twilio.mt.rate``,
``brokers.twilio.accounts.main.login``) for ``smshost config get|set|unset``."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from typing import Any, Literal

from tomlkit.container import Container

from host.config.documents import Entries, TableLike, assign, child, merge, plain, \
    secret_field, set_map, toml_value
from host.config.editor import home_of
from host.config.routes import OptOutSettings
from host.config.settings import PurgeSettings, Settings
from host.config.views import shown
from host.errors import ApiError

SECTIONS: dict[str, type] = {"purge": PurgeSettings, "optout": OptOutSettings}
"""The sections edited as a whole: ``purge`` (its own path under /api/config, and the
admin's settings page) and ``optout`` of routes.toml (the settings page)."""


def section(doc: Container, key: str) -> dict[str, Any]:
    return shown(SECTIONS[key], doc.get(key))


def set_section(doc: Container, key: str, data: dict[str, Any], *,
                replace: bool) -> dict[str, Any]:
    merge(child(doc, key), data, SECTIONS[key], replace=replace, where=f"{key}.")
    if not len(doc[key]):
        del doc[key]
    return section(doc, key)


def attrs(doc: Container) -> dict[str, Any]:
    value = plain(doc.get("attrs", {}))
    return value if isinstance(value, dict) else {}


def set_attrs(doc: Container, data: dict[str, Any], *, replace: bool) -> dict[str, Any]:
    set_map(doc, "attrs", data, "attrs", replace=replace)
    return attrs(doc)


# -- one setting by its dotted key ---------------------------------------------------

ENTRY_KEYS = {"accounts": "id"}
"""The key naming the entries of an array of tables (``name`` for the others)."""


@dataclass
class Setting:
    """Where a dotted key lives: its file, table and key there, and its type."""

    file: str
    key: str
    hint: Any
    parts: tuple[str, ...]


def locate(dotted: str) -> Setting:
    """The setting ``dotted`` names (400 when there is none)."""
    parts = tuple(dotted.split("."))
    if not all(parts):
        raise ApiError(400, "bad_parameter", f"{dotted!r} is not a dotted key")
    hints = typing.get_type_hints(Settings)
    if parts[0] not in hints or parts[0] in ("sinks", "listeners"):
        raise ApiError(400, "bad_parameter", f"no setting {dotted!r} to edit this way "
                       "(sections: purge, attrs, logging, brokers, inbound, outbound...)")
    hint: Any = hints[parts[0]]
    i = 1
    while i < len(parts) and not _leaf(hint):
        hint, i = _step(hint, parts, i, dotted)
    if i != len(parts) or not _leaf(hint):
        raise ApiError(400, "bad_parameter", f"{dotted!r} is not one setting")
    if secret_field(hint):
        raise ApiError(400, "bad_parameter", f"{dotted} is a secret: write it in the file "
                       'as { env = "NAME" } or set it through the API')
    return Setting(home_of(parts[0]), parts[-1], hint, parts)


def _step(hint: Any, parts: tuple[str, ...], i: int, dotted: str) -> tuple[Any, int]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0], i + 1  # parts[i] names the entry
    if origin is dict:
        return args[1], i + 1
    fields = typing.get_type_hints(hint)
    if parts[i] not in fields:
        raise ApiError(400, "bad_parameter", f"{dotted}: no setting {parts[i]!r}; "
                       f"known: {', '.join(fields)}")
    return fields[parts[i]], i + 1


def _leaf(hint: Any) -> bool:
    if dataclasses.is_dataclass(hint):
        return False
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is dict:
        return False
    return not (origin is tuple and args and dataclasses.is_dataclass(args[0]))


def _table(doc: Container, setting: Setting, *, create: bool) -> TableLike | None:
    """The table holding the setting (created on the way with ``create``)."""
    hints: Any = typing.get_type_hints(Settings)
    table: Any = doc
    hint: Any = None
    i = 0
    parts = setting.parts
    while i < len(parts) - 1:
        hint = hints[parts[i]] if hint is None else _field(hint, parts[i])
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is tuple:
            entries = Entries(table, parts[i], ENTRY_KEYS.get(parts[i], "name"))
            table = entries.find(parts[i + 1], parts[i].rstrip("s"))[1]
            hint, i = args[0], i + 2
            continue
        if parts[i] not in table and not create:
            return None
        table = child(table, parts[i])
        if origin is dict:
            return typing.cast(TableLike, table)
        i += 1
    return typing.cast(TableLike, table)


def _field(hint: Any, name: str) -> Any:
    return typing.get_type_hints(hint)[name] if dataclasses.is_dataclass(hint) else hint


def get(doc: Container, setting: Setting) -> tuple[Any, bool]:
    """The setting's value and whether the file writes it (else its default)."""
    table = _table(doc, setting, create=False)
    if table is not None and setting.key in table:
        return plain(table[setting.key]), True
    parent = setting.parts[:-1]
    if len(parent) >= 1 and parent[-1] == "attrs":
        raise ApiError(404, "not_found", f"no attribute {setting.key!r} is set")
    return _default(setting), False


def _default(setting: Setting) -> Any:
    """The declared default of the setting (its section's, shown as the API shows it)."""
    hints: Any = typing.get_type_hints(Settings)
    owner: Any = None
    parts, i = setting.parts[:-1], 0
    while i < len(parts):
        owner = hints[parts[i]] if owner is None else _field(owner, parts[i])
        if typing.get_origin(owner) is tuple:  # the next part names the entry
            owner, i = typing.get_args(owner)[0], i + 1
        i += 1
    return shown(owner, {}).get(setting.key) if owner is not None else None


def put(doc: Container, setting: Setting, text: str | None) -> Any:
    """Write ``text`` (read by the setting's type) or, with None, remove the line."""
    table = _table(doc, setting, create=text is not None)
    if text is None:
        if table is not None:
            table.pop(setting.key, None)
        return None
    assert table is not None
    value = parse(setting, text)
    assign(table, setting.key, toml_value(value, ".".join(setting.parts)))
    return value


def parse(setting: Setting, text: str) -> Any:
    """``text`` as a value of the setting's type: a string as it is; numbers, true or
    false; an array as TOML writes it (``[1, 5, 30]``) or comma-separated."""
    hint = setting.hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, type(int | None)) and args:
        hint = args[0]
    if hint is str or typing.get_origin(hint) is Literal:
        return text
    if typing.get_origin(hint) is tuple:
        if text.strip().startswith("["):
            return _toml(text, setting)
        return [_item(typing.get_args(hint)[0], p.strip(), setting)
                for p in text.split(",") if p.strip()]
    return _item(hint, text, setting)


def _item(hint: Any, text: str, setting: Setting) -> Any:
    return text if hint is str else _toml(text, setting)


def _toml(text: str, setting: Setting) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        raise ApiError(400, "bad_parameter", f"{'.'.join(setting.parts)}: {text!r} is not "
                       "a value of its type (a number, true or false, [an, array])") from None
