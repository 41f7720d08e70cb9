"""Secrets masked in configuration text: what the history shows of a change (SPEC P3).

A value is a secret when the settings declare it so: a field typed :class:`Secret` of
the core's settings (``api.token``, an account's ``password``, a proxy's ``password``,
a broker's ``options``) or of a sink's settings class (the webhook sink's signing
``secret``, the email sink's SMTP ``password``). A broker option is shown only when
the broker's definition is known and declares it not secret (telnyx's ``PublicKey``);
every option of an unknown definition is masked. Besides the declarations, as a safety
net, a string under a key named like a secret (``password``, ``token``, ``secret``,
``api_key``, ``authorization``...: a webhook target's ``Authorization`` header) is
masked, and so is the password of a URL (``https://user:PASSWORD@host``).

Only values written inline are secrets: ``{ env = "NAME" }`` and ``{ file = "PATH" }``
are references, shown as they are. :func:`mask` replaces each string literal (any of
TOML's four kinds) whose value is a secret by ``"••••••"``, then any other occurrence
of a secret of four characters or more (a comment quoting it). :func:`diff` is the
unified diff of two versions' masked texts; a secret whose value changed keeps its
line in the diff as ``password = "••••••"  # changed``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints

from host.config.secrets import Secret
from host.config.settings import Settings

SHOWN = '"••••••"'
"""What a masked string literal becomes."""
HIDDEN = "••••••"
CHANGED = "  # changed"
MIN_LOOSE = 4
"""Secrets at least this long are also masked outside string literals (comments): a
shorter one would mask letters everywhere."""
ANY = "*"
Path = tuple[str, ...]
_SECRET_NAME = re.compile(r"passw|passphrase|secret|token|api[-_]?key|authori[sz]ation|"
                          r"credential|private[-_]?key", re.IGNORECASE)
# The password runs to the last @ of the authority (as urlsplit reads it: an @ in it).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@\s:'\"]*:)(?P<pw>[^/\s'\"]+)@",
                           re.IGNORECASE)
_MARK = "\x00"  # marks a changed secret until its line gets CHANGED (TOML holds no NUL)


def secret_paths(cls: type, prefix: Path = ()) -> list[Path]:
    """The key paths of every Secret field of settings class ``cls`` (``*``: any
    array item or table key)."""
    found: list[Path] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("internal"):
            found += _walk(hints[f.name], (*prefix, f.name))
    return found


def _walk(tp: Any, path: Path) -> list[Path]:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Secret:
        return [path]
    if origin in (Union, types.UnionType):
        return [p for arg in args for p in _walk(arg, path)]
    if origin is tuple and args:
        return _walk(args[0], (*path, ANY))
    if origin is dict and len(args) == 2:
        return _walk(args[1], (*path, ANY))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return secret_paths(tp, path)
    return []


class SecretKeys:
    """Which values of the configuration are secrets. ``sinks``: each sink kind's
    settings class; ``public_options``: for each broker definition, the options it
    declares not secret."""

    def __init__(self, sinks: Mapping[str, type] | None = None,
                 public_options: Mapping[str, Collection[str]] | None = None) -> None:
        self.paths = secret_paths(Settings)
        for kind, cls in (sinks or {}).items():
            if isinstance(cls, type) and dataclasses.is_dataclass(cls):
                self.paths += secret_paths(cls, ("sinks", kind))
        self.public_options = {k: frozenset(v) for k, v in (public_options or {}).items()}

    def values(self, name: str, text: str) -> dict[Path, str]:
        """The inline secrets of file ``name`` (its text ``text``) by key path; every
        string of a file that is not TOML."""
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return {("?", str(i)): v for i, (_, _, v) in enumerate(literals(text)) if v}
        if name == "sinks.toml":
            data = {"sinks": data}
        found: dict[Path, str] = {}
        for pattern in self.paths:
            for path, value in _matches(data, pattern, ()):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    value = str(value)  # not a valid secret, yet one (masked loosely)
                if isinstance(value, str) and not self._public(data, path):
                    found[path] = value
        for path, value in _named(data, ()):
            found.setdefault(path, value)
        return found

    def _public(self, data: Any, path: Path) -> bool:
        """A broker option its definition declares not secret."""
        if len(path) != 4 or path[0] != "brokers" or path[2] != "options":
            return False
        broker = data["brokers"][int(path[1])]
        definition = broker.get("definition") if isinstance(broker, dict) else None
        return path[3] in self.public_options.get(str(definition), ())


def _matches(data: Any, pattern: Path, at: Path) -> Iterator[tuple[Path, Any]]:
    if not pattern:
        yield at, data
        return
    head, rest = pattern[0], pattern[1:]
    if isinstance(data, dict):
        keys = list(data) if head == ANY else [head] if head in data else []
        for key in keys:
            yield from _matches(data[key], rest, (*at, str(key)))
    elif isinstance(data, list) and head == ANY:
        for i, item in enumerate(data):
            yield from _matches(item, rest, (*at, str(i)))


def _named(data: Any, at: Path) -> Iterator[tuple[Path, str]]:
    """Strings under a key named like a secret (any depth), and URL passwords."""
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list) else ()
    for key, value in items:
        path = (*at, str(key))
        if isinstance(value, str):
            if isinstance(key, str) and _SECRET_NAME.search(key) and value:
                yield path, value
            for match in _URL_PASSWORD.finditer(value):
                yield (*path, "url-password"), match.group("pw")
        else:
            yield from _named(value, path)


def literals(text: str) -> Iterator[tuple[int, int, str | None]]:
    """Each string literal of TOML ``text`` outside comments: (start, end, its value;
    None when it does not read as one)."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            end = _literal_end(text, i, quote)
            yield i, end, _value(text[i:end])
            i = end
        else:
            i += 1


def _literal_end(text: str, start: int, quote: str) -> int:
    i, n = start + len(quote), len(text)
    while i < n:
        if quote[0] == '"' and text[i] == "\\":
            i += 2
            continue
        if len(quote) == 1 and text[i] == "\n":
            return i
        if text.startswith(quote, i):
            end = i + len(quote)
            for _ in range(2 if len(quote) == 3 else 0):  # up to two more quotes: part of the text
                if end < n and text[end] == quote[0]:
                    end += 1
            return end
        i += 1
    return n


def _value(literal: str) -> str | None:
    try:
        value = tomllib.loads(f"x = {literal}")["x"]
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


def mask(text: str, secrets: Collection[str], changed: Collection[str] = ()) -> str:
    """``text`` with each secret masked (see the module text); a literal whose value
    is in ``changed`` gets CHANGED at the end of its line."""
    out: list[str] = []
    last = 0
    for start, end, value in literals(text):
        out.append(text[last:start])
        literal = text[start:end]
        if value is not None and value in secrets:
            literal = SHOWN + (_MARK if value in changed else "")
        else:
            literal = _URL_PASSWORD.sub(lambda m: m.group("head") + HIDDEN + "@" + (
                _MARK if m.group("pw") in changed else ""), literal)
        out.append(literal)
        last = end
    masked = "".join(out) + text[last:]
    for secret in sorted((s for s in secrets if len(s) >= MIN_LOOSE), key=len, reverse=True):
        masked = masked.replace(secret, HIDDEN)
    if _MARK in masked:
        masked = "\n".join(line.replace(_MARK, "") + CHANGED if _MARK in line else line
                           for line in masked.split("\n"))
    return masked


def diff(before: Mapping[str, str], after: Mapping[str, str], keys: SecretKeys) -> str:
    """The unified diff from ``before`` to ``after`` (files by name), secrets masked."""
    out: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        old_secrets = keys.values(name, old) if old is not None else {}
        new_secrets = keys.values(name, new) if new is not None else {}
        secrets = set(old_secrets.values()) | set(new_secrets.values())
        changed = {v for p, v in new_secrets.items()
                   if old is not None and old_secrets.get(p) != v}
        old_lines = mask(old, secrets).splitlines(keepends=True) if old is not None else []
        new_lines = mask(new, secrets, changed).splitlines(keepends=True) \
            if new is not None else []
        out += _ended(difflib.unified_diff(
            old_lines, new_lines, fromfile=f"a/{name}" if old is not None else "/dev/null",
            tofile=f"b/{name}" if new is not None else "/dev/null"))
    return "".join(out)


def _ended(lines: Iterator[str]) -> list[str]:
    """Diff lines, each ending with a newline (a file's last line may have none)."""
    return [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines]


def sections(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The top-level sections that differ (``inbound``, ``brokers``, ``sinks.webhook``);
    a file that is not TOML counts as its name."""
    found: set[str] = set()
    for name in set(before) | set(after):
        if before.get(name) == after.get(name):
            continue
        try:
            old = tomllib.loads(before.get(name, ""))
            new = tomllib.loads(after.get(name, ""))
        except tomllib.TOMLDecodeError:
            found.add(name)
            continue
        prefix = "sinks." if name == "sinks.toml" else ""
        found |= {prefix + k for k in set(old) | set(new) if old.get(k) != new.get(k)}
    return sorted(found)
