"""Edits of the inbound and outbound routes of ``routes.toml`` ([[inbound]],
[[outbound]]): ordered, named, unique. Inbound routes keep the default route's rules:
it cannot be removed or moved, and stays last (409 with the reason)."""

from __future__ import annotations

from typing import Any, Literal

from tomlkit.container import Container

from host.config.documents import Entries, merge, new_table, plain
from host.config.routes import InboundRouteSettings, OutboundRouteSettings
from host.config.views import shown
from host.errors import ApiError
from host.jsontext import kind_of

FILE = "routes.toml"
Kind = Literal["inbound", "outbound"]
SETTINGS: dict[str, type] = {"inbound": InboundRouteSettings,
                             "outbound": OutboundRouteSettings}
WHAT = {"inbound": "inbound route", "outbound": "outbound route"}


def listing(doc: Container, kind: Kind) -> list[dict[str, Any]]:
    return [shown(SETTINGS[kind], table) for table in Entries(doc, kind)]


def one(doc: Container, kind: Kind, name: str) -> dict[str, Any]:
    return shown(SETTINGS[kind], Entries(doc, kind).find(name, WHAT[kind])[1])


def add(doc: Container, kind: Kind, data: dict[str, Any],
        position: int | None) -> dict[str, Any]:
    """A new route at ``position`` (default: last, before the default route)."""
    entries = Entries(doc, kind)
    name = _name(data)
    if entries.index(name) is not None:
        raise ApiError(409, "conflict", f"there is already an {WHAT[kind]} named {name!r}")
    default = _default_at(entries, kind)
    if kind == "inbound" and data.get("default") is True:
        if default is not None:
            raise ApiError(409, "default_route", "there is already a default route "
                           f"({entries.names()[default]!r}); change that one instead")
        position = _position(position, len(entries), len(entries))
        if position != len(entries):
            raise ApiError(409, "default_route", "the default route is the last one")
    else:
        last = default if default is not None else len(entries)
        position = _position(position, last, len(entries))
        if position > last:
            raise ApiError(409, "default_route", "the default route stays last; add "
                           f"the route at position {last} or before")
    table = new_table()
    merge(table, data, SETTINGS[kind], replace=False)
    entries.insert(position, table)
    return shown(SETTINGS[kind], table)


def change(doc: Container, kind: Kind, name: str, data: dict[str, Any], *,
           replace: bool) -> dict[str, Any]:
    """Replace (PUT) or patch (PATCH) route ``name``; a ``name`` in ``data`` renames."""
    entries = Entries(doc, kind)
    _, table = entries.find(name, WHAT[kind])
    new = data.get("name", name)
    if new != name and entries.index(_name(data)) is not None:
        raise ApiError(409, "conflict", f"there is already an {WHAT[kind]} named {new!r}")
    merge(table, {**data, "name": new}, SETTINGS[kind], replace=replace)
    return shown(SETTINGS[kind], table)


def remove(doc: Container, kind: Kind, name: str) -> None:
    entries = Entries(doc, kind)
    i, table = entries.find(name, WHAT[kind])
    if kind == "inbound" and plain(table.get("default")) is True:
        raise ApiError(409, "default_route", "the default route cannot be removed: every "
                       "message ends there when no other route takes it; change its "
                       "destination instead")
    entries.remove(i)


def move(doc: Container, kind: Kind, name: str, direction: str | None,
         to: int | None) -> list[dict[str, Any]]:
    """Move route ``name`` one place ``up``/``down`` or ``to`` an index; answer the
    new order."""
    entries = Entries(doc, kind)
    i, table = entries.find(name, WHAT[kind])
    default = _default_at(entries, kind)
    if default == i:
        raise ApiError(409, "default_route", "the default route stays last; move the "
                       "other routes instead")
    last = (default if default is not None else len(entries)) - 1
    if to is None:
        to = i - 1 if direction == "up" else i + 1
        if to < 0:
            raise ApiError(409, "at_the_end", f"{name!r} is the first route already")
        if to > last:
            raise ApiError(409, "default_route" if default is not None else "at_the_end",
                           f"{name!r} is the last route already"
                           + (" before the default route, which stays last"
                              if default is not None else ""))
    elif not 0 <= to <= last:
        raise ApiError(409 if to == last + 1 and default is not None else 400,
                       "default_route" if to == last + 1 and default is not None
                       else "bad_parameter",
                       f"to: must be from 0 to {last}"
                       + (" (the default route stays last)" if default is not None else ""))
    if to != i:
        entries.move(i, to)
    return listing(doc, kind)


def _default_at(entries: Entries, kind: Kind) -> int | None:
    if kind != "inbound":
        return None
    return next((i for i, t in enumerate(entries) if plain(t.get("default")) is True), None)


def _name(data: dict[str, Any]) -> str:
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "bad_parameter", "name is required (a non-empty string)"
                       + ("" if name is None else f"; got {kind_of(name)}"))
    return name


def _position(position: int | None, default: int, size: int) -> int:
    if position is None:
        return default
    if not 0 <= position <= size:
        raise ApiError(400, "bad_parameter", f"position: must be from 0 to {size}")
    return position
