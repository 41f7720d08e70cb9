"""TOML documents edited in place with tomlkit: what an edit leaves untouched stays as
written (comments, order, spacing, quoting).

:class:`Entries` is an array of tables (``[[inbound]]``, ``[[brokers.accounts]]``) as
an ordered list of named entries. A comment block written above an entry's header
belongs to that entry: it moves and goes with it (tomlkit keeps such a block at the end
of the entry before, so :class:`Entries` carries it in the header's own indent while it
reorders). :func:`merge` writes a JSON object into a table by the settings' declaration
(:mod:`host.config.schema`): values that did not change keep their line and comment,
secrets follow the write-only rule (:func:`secret_field`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, cast

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Comment, InlineTable, Item, Table, Whitespace

from host.config.secrets import Secret
from host.errors import ApiError
from host.jsontext import kind_of

Doc = Container
TableLike = Table | InlineTable


def etag(data: bytes) -> str:
    """The strong ETag of a file's bytes (an absent file is empty)."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def plain(value: Any) -> Any:
    """A tomlkit value as plain Python (JSON-ready)."""
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if unwrap is not None else value


def toml_value(value: Any, field: str) -> Item:
    """A JSON value as a TOML item; null has no TOML form (400 naming the field)."""
    _no_null(value, field)
    if isinstance(value, str) and "\\" in value and not set("'\n\r") & set(value) \
            and value.isprintable():
        return tomlkit.string(value, literal=True)  # a pattern reads as written
    item: Item = tomlkit.item(value)
    return item


def _no_null(value: Any, field: str) -> None:
    if value is None:
        raise ApiError(400, "bad_parameter", f"{field}: null has no TOML form here")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _no_null(item, f"{field}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_null(item, f"{field}.{key}")


def new_table() -> Table:
    return tomlkit.table()


def assign(table: Doc | TableLike, key: str, item: Item) -> None:
    """``table[key] = item``; a new key goes above the blank lines and comments that end
    the table (they are about what follows it)."""
    if not isinstance(table, Table) or key in table:
        table[key] = item
        return
    body = table.value.body
    tail: list[Item] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], Comment | Whitespace):
        tail.insert(0, body.pop()[1])
    table[key] = item
    for line in tail:
        table.value.append(None, line)


def child(parent: Doc | TableLike, key: str) -> Table:
    """The sub-table ``key`` of ``parent``, created (empty) when missing."""
    if key not in parent:
        assign(parent, key, new_table())
    table = parent[key]
    if not isinstance(table, Table | InlineTable):
        raise ApiError(409, "not_a_table", f"{key} is written as {kind_of(plain(table))} "
                       "in the file, not a table; fix the file first")
    return cast(Table, table)


class Entries:
    """The array of tables ``key`` inside ``parent``, each entry named by ``id_key``."""

    def __init__(self, parent: Doc | TableLike, key: str, id_key: str = "name") -> None:
        self.parent = parent
        self.key = key
        self.id_key = id_key
        found = parent.get(key)
        if found is not None and not isinstance(found, AoT):
            raise ApiError(409, "not_editable", f"{key} is not written as [[{key}]] tables "
                           "in the file; edit it by hand, or write it that way")
        self.aot = found

    def __iter__(self) -> Iterator[Table]:
        return iter(self.aot.body if self.aot is not None else [])

    def __len__(self) -> int:
        return len(self.aot.body) if self.aot is not None else 0

    def names(self) -> list[str]:
        return [str(plain(t.get(self.id_key, ""))) for t in self]

    def index(self, name: str) -> int | None:
        names = self.names()
        return names.index(name) if name in names else None

    def find(self, name: str, what: str) -> tuple[int, Table]:
        i = self.index(name)
        if i is None:
            raise ApiError(404, "not_found", f"no {what} named {name!r}")
        return i, list(self)[i]

    def insert(self, position: int, table: Table) -> None:
        if self.aot is None:
            if len(self.parent) and "\n" not in table.trivia.indent:
                table.trivia.indent = "\n"
            self.parent[self.key] = tomlkit.aot()
            self.aot = cast(AoT, self.parent[self.key])
            self.aot.append(table)
            return
        self.reorder(lambda tables: tables[:position] + [table] + tables[position:])

    def remove(self, position: int) -> None:
        assert self.aot is not None
        self.reorder(lambda tables: tables[:position] + tables[position + 1:])

    def move(self, old: int, new: int) -> None:
        def moved(tables: list[Table]) -> list[Table]:
            table = tables.pop(old)
            return tables[:new] + [table] + tables[new:]
        self.reorder(moved)

    def reorder(self, change: typing.Callable[[list[Table]], list[Table]]) -> None:
        """Rebuild the array in the order ``change`` gives, each entry with the comment
        block above its header."""
        assert self.aot is not None
        tables = list(self.aot.body)
        before_of = {id(t): (tables[i - 1] if i else None) for i, t in enumerate(tables)}
        _lead_of_first(self.parent, self.aot, tables)
        for before, table in zip(tables, tables[1:], strict=False):
            table.trivia.indent = _pop_trailing(before) + table.trivia.indent
        tail = _pop_trailing(tables[-1]) if tables else ""
        ordered = change(tables)
        for i, table in enumerate(ordered):
            moved = before_of.get(id(table), False) is not (ordered[i - 1] if i else None)
            if i > 0 and moved and not table.trivia.indent.startswith("\n"):
                table.trivia.indent = "\n" + table.trivia.indent
            elif i == 0 and moved:  # what is above it is the array's own
                table.trivia.indent = table.trivia.indent.lstrip("\n")
        while len(self.aot.body):
            del self.aot[0]
        for table in ordered:
            self.aot.append(table)
        if ordered and tail:
            _deepest(ordered[-1]).append(None, Whitespace(tail))
        elif not ordered:
            del self.parent[self.key]
            self.aot = None


def _lead_of_first(parent: Doc | TableLike, aot: AoT, tables: list[Table]) -> None:
    """Move the comment lines right above the first header (in the container before
    the array) into its indent, leaving empty placeholders (indices stay)."""
    body = parent.body if isinstance(parent, Container) else parent.value.body
    at = next((i for i, (_, item) in enumerate(body) if item is aot), None)
    if at is None or not tables:
        return
    lead = ""
    i = at - 1
    while i >= 0 and body[i][0] is None and isinstance(body[i][1], Comment):
        lead = body[i][1].as_string() + lead
        body[i] = (None, Whitespace(""))
        i -= 1
    tables[0].trivia.indent = lead + tables[0].trivia.indent


def _deepest(table: Table) -> Container:
    """The container a table's last lines are in (its last sub-table's, if any)."""
    body = table.value
    while body.body:
        last = body.body[-1][1]
        if isinstance(last, Table):
            body = last.value
        elif isinstance(last, AoT) and last.body:
            body = last.body[-1].value
        else:
            break
    return body


def _pop_trailing(table: Table) -> str:
    """Take the blank lines and comments that end ``table`` (the block above the next
    header) out of it, as text."""
    body = _deepest(table)
    text = ""
    while body.body and body.body[-1][0] is None and \
            isinstance(body.body[-1][1], Comment | Whitespace):
        text = body.body.pop()[1].as_string() + text
    return text


# -- writing JSON into a table by the declaration ------------------------------------

KEEP = "set"
"""A secret given as an object with this key (``{"set": true, ...}``, as answered) is
kept as stored: a client may send back what it read."""


def merge(table: TableLike, data: Mapping[str, Any], cls: type, *, replace: bool,
          where: str = "") -> None:
    """Write ``data`` into ``table``. ``replace`` (PUT): a setting left out goes back
    to its default, except secrets (kept) and arrays of tables (their own resources);
    otherwise (PATCH) only what is given changes, null resetting it. Keys the
    declaration does not know are written as given (validation then names them)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key, value in data.items():
        field = f"{where}{key}"
        if key in fields:
            _merge_field(table, key, value, hints[key], replace=replace, field=field)
        elif value is None:
            table.pop(key, None)
        else:
            _set(table, key, value, field)
    if replace:
        for key in [k for k in table.keys() if k not in data]:
            hint = hints.get(key)
            section = _section(hint)
            if hint is not None and _kept(hint):
                continue
            if section is not None:
                merge(child(table, key), {}, section, replace=True, where=f"{where}{key}.")
                if not len(table[key]):
                    del table[key]
            else:
                del table[key]


def _merge_field(table: TableLike, key: str, value: Any, hint: Any, *, replace: bool,
                 field: str) -> None:
    section = _section(hint)
    if secret_field(hint):
        _secret(table, key, value, field)
    elif _secret_map(hint):
        _secrets(table, key, value, field, replace=replace)
    elif section is not None and value is not None:
        if not isinstance(value, dict):
            raise ApiError(400, "bad_parameter", f"{field} must be an object; got "
                           f"{kind_of(value)}")
        merge(child(table, key), value, section, replace=replace, where=f"{field}.")
        if not len(table[key]):
            del table[key]
    elif value is None:
        table.pop(key, None)
    elif _entries_of(hint) is not None:
        raise ApiError(400, "bad_parameter", f"{field}: change these through their own "
                       "path")
    elif _is_plain_map(hint) and isinstance(value, dict):
        set_map(table, key, value, field, replace=replace)
    else:
        _set(table, key, value, field)


def _set(table: TableLike, key: str, value: Any, field: str) -> None:
    if key in table and plain(table[key]) == value and \
            type(plain(table[key])) is type(value):
        return  # unchanged: the line, its comment and its quoting stay
    assign(table, key, toml_value(value, field))


def set_map(table: Doc | TableLike, key: str, value: dict[str, Any], field: str, *,
            replace: bool) -> None:
    """A table of plain values (attrs): the keys given change, null removes one;
    ``replace`` removes the keys not given."""
    target = child(table, key)
    for name in [k for k in target.keys() if replace and k not in value]:
        del target[name]
    for name, item in value.items():
        if item is None:
            target.pop(name, None)
        else:
            _set(target, name, item, f"{field}.{name}")
    if not len(target):
        del table[key]


def _secret(table: TableLike, key: str, value: Any, field: str) -> None:
    """Write-only: absent or ``{"set": ...}`` keeps it, null removes it, a string or an
    ``{"env": ...}`` / ``{"file": ...}`` reference replaces it."""
    if value is None:
        table.pop(key, None)
    elif isinstance(value, dict) and KEEP in value:
        return
    elif isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update({k: toml_value(v, f"{field}.{k}") for k, v in value.items()})
        assign(table, key, inline)
    else:
        _set(table, key, value, field)


def _secrets(table: TableLike, key: str, value: Any, field: str, *, replace: bool) -> None:
    if value is None:
        table.pop(key, None)
        return
    if not isinstance(value, dict):
        raise ApiError(400, "bad_parameter", f"{field} must be an object; got "
                       f"{kind_of(value)}")
    target = child(table, key)
    for name, item in value.items():
        _secret(target, name, item, f"{field}.{name}")
    if not len(target):
        del table[key]


def secret_field(hint: Any) -> bool:
    """``Secret`` or ``Secret | None``."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return hint is Secret or (union and Secret in typing.get_args(hint))


def _secret_map(hint: Any) -> bool:
    return typing.get_origin(hint) is dict and typing.get_args(hint)[1] is Secret


def _is_plain_map(hint: Any) -> bool:
    return typing.get_origin(hint) is dict and not _secret_map(hint)


def _kept(hint: Any) -> bool:
    """Left out of a PUT, these stay: secrets and arrays of tables."""
    return secret_field(hint) or _secret_map(hint) or _entries_of(hint) is not None


def _section(hint: Any) -> type | None:
    return hint if dataclasses.is_dataclass(hint) and isinstance(hint, type) else None


def _entries_of(hint: Any) -> type | None:
    if typing.get_origin(hint) is tuple:
        return _section(typing.get_args(hint)[0])
    return None
