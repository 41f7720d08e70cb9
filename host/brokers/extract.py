"""Reading values out of requests and responses: the ``Source`` of definitions.

A source is one of ``param`` (a flat field: query string, form field or top-level JSON
key), ``query`` (query string only), ``pointer`` (RFC 6901 JSON pointer), ``xpath``,
``header``, ``regex`` (first group, or the match, on the raw body) or ``value`` (a
template). A ``Test`` compares what a source read: ``equals``, ``in``, ``not-in``,
``matches`` (a regular expression searched in the value) or ``present``. Regular
expressions are RE2 (:mod:`host.regex`): linear time, whatever a broker sends.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lxml import etree

from host.brokers.templates import Context, Template
from host.models import bounded_int
from host.quoting import quoted
from host.regex import compile_re2


class Payload(Protocol):
    """Something sources can read: an inbound request or an MT response."""

    def param(self, name: str) -> str | None: ...
    def query_param(self, name: str) -> str | None: ...
    def json_data(self) -> Any: ...
    def xml_root(self) -> etree._Element: ...
    def header(self, name: str) -> str | None: ...
    def text(self) -> str: ...


class ExtractError(ValueError):
    """A value could not be read (bad body, wrong shape)."""


_MISSING = object()


def json_pointer(data: Any, pointer: str) -> Any:
    """Resolve an RFC 6901 pointer; ``_MISSING`` when any step is absent."""
    if pointer in ("", "/"):
        return data
    for raw in pointer.lstrip("/").split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(data, dict):
            data = data.get(token, _MISSING)
        elif isinstance(data, list) and (index := bounded_int(token, len(data) - 1)) is not None:
            data = data[index]
        else:
            return _MISSING
        if data is _MISSING:
            return _MISSING
    return data


def _text_of(value: Any) -> str | None:
    if value is _MISSING or value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, etree._Element):
        return "".join(value.itertext())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _decode_hex_utf16(value: str) -> str:
    try:
        return bytes.fromhex(value).decode("utf-16-be")
    except (ValueError, UnicodeDecodeError):
        raise ExtractError("value is not hex-encoded UTF-16BE") from None


def _decode_base64(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ExtractError("value is not base64-encoded UTF-8") from None


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "trim": str.strip,
    "lower": str.lower,
    "upper": str.upper,
    "plus": lambda v: v if v.startswith("+") or not v.isdigit() or len(v) <= 6 else "+" + v,
    "hex-utf16be": _decode_hex_utf16,
    "base64": _decode_base64,
}


_PROBE = etree.fromstring(b"<probe/>")
_BAD_ESCAPE = re.compile(r"~(?![01])")


@dataclass(frozen=True, slots=True)
class Source:
    kind: str  # param, query, pointer, xpath, header, regex, value
    expr: str
    compiled: Any = None  # XPath, regex or Template

    @classmethod
    def make(cls, kind: str, expr: str, options: frozenset[str] | None = None) -> Source:
        compiled: Any = None
        if kind == "xpath":
            compiled = etree.XPath(expr)
            compiled(_PROBE)  # an unknown variable, prefix or function fails here, once
        elif kind == "regex":
            compiled = compile_re2(expr)
        elif kind == "value":
            compiled = Template(expr, options)
        elif kind == "pointer" and expr and not expr.startswith("/"):
            raise ValueError(f"a JSON pointer starts with '/'; got {quoted(expr, 80)}")
        elif kind == "pointer" and _BAD_ESCAPE.search(expr):
            raise ValueError("in a JSON pointer ~ is written ~0 and / is written ~1")
        return cls(kind, expr, compiled)

    def read(self, payload: Payload, ctx: Context | None = None) -> str | None:
        kind = self.kind
        if kind == "param":
            return payload.param(self.expr)
        if kind == "query":
            return payload.query_param(self.expr)
        if kind == "header":
            return payload.header(self.expr)
        if kind == "pointer":
            return _text_of(json_pointer(payload.json_data(), self.expr))
        if kind == "xpath":
            result = self.compiled(payload.xml_root())
            if isinstance(result, list):
                return _text_of(result[0]) if result else None
            return _text_of(result) if result != "" else None
        if kind == "regex":
            match = self.compiled.search(payload.text())
            if match is None:
                return None
            return str(match.group(1) if self.compiled.groups else match.group(0))
        return str(self.compiled.render(ctx or Context({})))


@dataclass(frozen=True, slots=True)
class Test:
    source: Source
    op: str  # equals, in, not-in, matches, present
    values: tuple[str, ...] = ()
    pattern: Any = None  # RE2 (host.regex), for matches

    def holds(self, payload: Payload, ctx: Context | None = None) -> bool:
        value = self.source.read(payload, ctx)
        if self.op == "present":
            return (value is not None and value != "") == (self.values != ("false",))
        if value is None:
            return False
        if self.op == "matches":
            assert self.pattern is not None
            return self.pattern.search(value) is not None
        if self.op == "not-in":
            return value not in self.values
        return value in self.values
