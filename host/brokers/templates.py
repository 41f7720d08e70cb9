"""Field templates of broker definitions: ``{namespace.name|filter}``.

A template is compiled once (when the definition loads) into literal text and
references; rendering is a join. Namespaces are ``message``, ``account``, ``options``,
``broker`` and ``attrs`` (custom attributes). ``{{`` and ``}}`` are literal braces.
Secret values (``account.password``, secret options) are revealed only while rendering,
and every revealed value is remembered so logs can redact it.

Conditions (``if``/``unless`` of params and headers) are ``name`` (non-empty),
``name=value`` or ``name!=value``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

from host.config.secrets import Secret
from host.quoting import quoted

NAMESPACES: dict[str, frozenset[str] | None] = {
    "message": frozenset({"id", "ref", "to", "from", "text", "encoding", "segments", "udh",
                          "coding", "charset"}),
    "account": frozenset({"id", "login", "password", "local_address", "region"}),
    "broker": frozenset({"name", "gateway", "outgoing_path", "incoming_path", "receipt_path",
                         "mo_url", "receipt_url", "public_url"}),
    "options": None,  # checked against the declared options
    "attrs": None,  # free-form custom attributes
}
RAW_IN_URLS = frozenset({"broker.gateway", "broker.outgoing_path", "broker.incoming_path",
                         "broker.receipt_path", "broker.public_url"})


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch in "0123456789")


def _plus(value: str) -> str:
    """Add the + of an international number; short codes (6 digits or fewer) stay."""
    if value.startswith("+") or not value.isdigit() or len(value) <= 6:
        return value
    return "+" + value


FILTERS: dict[str, Callable[[str], str]] = {
    "digits": _digits,
    "plus": _plus,
    "lower": str.lower,
    "upper": str.upper,
    "trim": str.strip,
    "hex-utf16be": lambda v: v.encode("utf-16-be").hex().upper(),
    "base64": lambda v: base64.b64encode(v.encode()).decode(),
    "urlencode": lambda v: quote(v, safe=""),
}

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


class TemplateError(ValueError):
    """A template refers to something that does not exist."""


@dataclass(frozen=True, slots=True)
class Ref:
    namespace: str
    name: str
    filters: tuple[Callable[[str], str], ...]

    @property
    def dotted(self) -> str:
        return f"{self.namespace}.{self.name}"


@dataclass
class Context:
    """Values for rendering, plus the secrets revealed while doing it."""

    values: Mapping[str, Mapping[str, Any]]
    revealed: set[str] = field(default_factory=set)

    def lookup(self, namespace: str, name: str) -> str:
        value = self.values.get(namespace, {}).get(name)
        if value is None:
            return ""
        if isinstance(value, Secret):
            text = value.reveal()
            if text:
                self.revealed.add(text)
            return text
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


class XmlContext(Context):
    """Renders values XML-escaped (for ``body="xml"`` templates)."""

    def __init__(self, inner: Context) -> None:
        super().__init__(inner.values, inner.revealed)

    def lookup(self, namespace: str, name: str) -> str:
        return xml_escape(super().lookup(namespace, name), {'"': "&quot;"})


class Template:
    """A compiled template."""

    __slots__ = ("source", "parts")

    def __init__(self, source: str, options: Iterable[str] | None = None) -> None:
        self.source = source
        self.parts: list[str | Ref] = []
        declared = frozenset(options) if options is not None else None
        last = 0
        for match in _TOKEN.finditer(source):
            self.parts.append(_literal(source, last, match.start()))
            token = match.group(0)
            if token in ("{{", "}}"):
                self.parts.append(token[0])
            else:
                self.parts.append(parse_ref(match.group(1), declared))
            last = match.end()
        self.parts.append(_literal(source, last, len(source)))
        self.parts = [p for p in self.parts if p != ""]

    @property
    def refs(self) -> list[Ref]:
        return [p for p in self.parts if isinstance(p, Ref)]

    @property
    def is_constant(self) -> bool:
        return not self.refs

    def render(self, ctx: Context, *, url: bool = False) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = ctx.lookup(part.namespace, part.name)
            for fn in part.filters:
                value = fn(value)
            if url and part.dotted not in RAW_IN_URLS:
                value = quote(value, safe="")
            out.append(value)
        return "".join(out)


def _literal(source: str, start: int, end: int) -> str:
    """The text of ``source`` between two references: a brace there is unbalanced (a
    reference left open, or a brace not doubled), which would be sent as it is."""
    text = source[start:end]
    if "{" in text or "}" in text:
        raise TemplateError(f"unbalanced brace in {quoted(source, 80)} at "
                            f"{start + _brace(text)}: a "
                            "reference is {namespace.name}; write {{ or }} for a literal "
                            "brace")
    return text


def _brace(text: str) -> int:
    return min(i for i in (text.find("{"), text.find("}")) if i >= 0)


def _cut(text: str) -> str:
    return text if len(text) <= 80 else text[:80] + "..."


def parse_ref(text: str, options: frozenset[str] | None) -> Ref:
    """``message.to|digits`` → a checked :class:`Ref`."""
    expr, *filter_names = [piece.strip() for piece in text.split("|")]
    namespace, _, name = expr.partition(".")
    if namespace not in NAMESPACES or not name:
        raise TemplateError(f"unknown template name {{{_cut(text)}}}; names start with "
                            f"{', '.join(NAMESPACES)} (e.g. {{message.to}})")
    known = NAMESPACES[namespace]
    if namespace == "options" and options is not None and name not in options:
        raise TemplateError(f"{{{_cut(text)}}} refers to option {quoted(name, 80)}, which is "
                            "not declared")
    if known is not None and name not in known and not (
            namespace == "account" and name.startswith("attrs.")):
        raise TemplateError(f"unknown name {quoted(expr, 80)}; {namespace} has "
                            f"{', '.join(sorted(known))}")
    filters = []
    for fname in filter_names:
        if fname not in FILTERS:
            raise TemplateError(f"unknown filter {quoted(fname, 40)}; filters: "
                                f"{', '.join(FILTERS)}")
        filters.append(FILTERS[fname])
    return Ref(namespace, name, tuple(filters))


@dataclass(frozen=True, slots=True)
class Condition:
    """``if``/``unless`` test over one template name."""

    ref: Ref
    op: str  # "truthy", "=", "!="
    value: str = ""

    def holds(self, ctx: Context) -> bool:
        actual = ctx.lookup(self.ref.namespace, self.ref.name)
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        return bool(actual)


def parse_condition(text: str, options: frozenset[str] | None) -> Condition:
    for op in ("!=", "="):
        if op in text:
            name, _, value = text.partition(op)
            return Condition(parse_ref(name.strip(), options), op, value.strip())
    return Condition(parse_ref(text.strip(), options), "truthy")
