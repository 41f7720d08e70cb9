"""Find the line of every key in a TOML document.

``tomllib`` gives values but no positions. Errors must name the line, so this module
scans the text once and maps each key path, e.g. ``("listeners", 1, "port")``, to the
line it is written on. It understands table headers, arrays of tables, dotted and
quoted keys, and skips the inside of multi-line strings and arrays. Keys inside an
inline table map to the line of the table's own key (``lookup`` falls back to the
nearest known parent).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

KeyPath = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_HEADER = re.compile(rf"^\s*\[\s*({_KEY})\s*\]\s*(?:#.*)?$")
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_KEY})\s*\]\]\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_KEY})\s*=\s*(.*)$")
_PART = re.compile(rf"{_BARE}|{_QUOTED}")


def _split_key(key: str) -> tuple[str, ...]:
    parts = []
    for raw in _PART.findall(key):
        if raw[0] in "\"'":
            raw = raw[1:-1]
        parts.append(raw)
    return tuple(parts)


def _open_brackets(value: str) -> int:
    """Net count of ``[``/``{`` minus closers outside strings and comments."""
    depth = 0
    quote = ""
    i = 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


class LineMap:
    """Key path → line number for one TOML text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        self._scan(text.splitlines())

    def _scan(self, lines: Sequence[str]) -> None:
        table: KeyPath = ()
        counts: dict[KeyPath, int] = {}  # by the array's path: [[a.b]] counts per a[i]
        skip_until: str | None = None
        depth = 0
        for number, line in enumerate(lines, start=1):
            if skip_until is not None:
                if skip_until in line:
                    skip_until = None
                continue
            if depth > 0:
                depth += _open_brackets(line)
                continue
            if m := _ARRAY_HEADER.match(line):
                array = self._resolve(_split_key(m.group(1)))
                index = counts.get(array, -1) + 1
                counts[array] = index
                table = array + (index,)
                self.lines.setdefault(table[:-1], number)
                self.lines[table] = number
            elif m := _HEADER.match(line):
                table = self._resolve(_split_key(m.group(1)))
                self.lines.setdefault(table, number)
            elif m := _ASSIGN.match(line):
                self.lines.setdefault(table + _split_key(m.group(1)), number)
                value = m.group(2)
                for quote in ('"""', "'''"):
                    if value.lstrip().startswith(quote) and value.count(quote) == 1:
                        skip_until = quote
                depth = max(_open_brackets(value), 0) if skip_until is None else 0

    def _resolve(self, key: tuple[str, ...]) -> KeyPath:
        """Map a header's plain key to a path, inserting the index of any enclosing array."""
        path: KeyPath = ()
        for i, part in enumerate(key):
            path = path + (part,)
            # [[a]] followed by [a.b] means the last element of a
            last = max(
                (p[-1] for p in self.lines if len(p) == len(path) + 1 and p[:-1] == path
                 and isinstance(p[-1], int)),
                default=None,
            )
            if last is not None and i < len(key) - 1:
                path = path + (last,)
        return path

    def lookup(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest parent that is written in the file."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return None
