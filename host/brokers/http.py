"""Plain HTTP descriptions shared by brokers, independent of any HTTP library.

* :class:`InboundRequest`: a webhook as the broker sent it (for MO and receipts).
* :class:`MtRequest`: the request to send for an outbound message.
* :class:`MtResponse`: what the broker answered.
* :class:`MtResult`: accepted (with the broker's message id), retry, or fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal
from urllib.parse import unquote_plus, unquote_to_bytes, urlsplit

from lxml import etree

from host import jsontext
from host.config.secrets import MASK, redact
from host.ledger import Exchange
from host.text import REPLACEMENT, clean
from host.xmlsafe import safe_parser


def parse_form(text: str, *, exact: bool = False) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` pairs, blank values kept (as parse_qsl,
    which costs more: webhook bodies are parsed on the hot path). A NUL (``%00``)
    becomes U+FFFD (:mod:`host.text`), as undecodable escapes already do, unless
    ``exact`` (what a signature was computed over)."""
    pairs = []
    for pair in text.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        pairs.append((key, value))
    if not exact and ("%00" in text or "\x00" in text):
        return [(clean(key), clean(value)) for key, value in pairs]
    return pairs


def form_fields(body: bytes, *, exact: bool = False) -> dict[str, list[str]]:
    """A form body's fields, each name with its values in order.

    When no separator is percent-encoded (``%26``, ``%3D``), the whole body is unquoted
    in one pass and then split, which gives what unquoting each name and value does at
    a fraction of the cost: decoding cannot create a separator then (``+`` becomes a
    space, and a UTF-8 sequence never contains an ASCII byte). Invalid UTF-8 in an
    escape becomes U+FFFD, as with ``unquote_plus``, and so does NUL unless ``exact``.
    """
    lowered = body.lower() if b"%" in body else body
    if b"%26" in lowered or b"%3d" in lowered:
        return _multi(parse_form(body.decode("utf-8"), exact=exact))
    if b"+" in body:
        body = body.replace(b"+", b" ")
    text = (unquote_to_bytes(body) if b"%" in body else body).decode("utf-8", "replace")
    if not exact and "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    out: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            found = out.get(key)
            if found is None:
                out[key] = [value]
            else:
                found.append(value)
    return out


def _multi(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


class BodyError(ValueError):
    """The request body is not what its content type says."""


@dataclass(eq=False)
class InboundRequest:
    """One webhook request. ``url`` is the URL the broker called (public, behind proxies).

    Its decoded parts (``query``, ``form``, ``json``, ``params``, ``text``) have text
    that cannot round-trip replaced (:mod:`host.text`); the ``*_as_sent`` variants are
    exact, for signature checks. ``body_signed`` is set on the request the parse steps
    read when a signature checked it (:meth:`signed_part`): "form" when only the
    body's form fields are covered, "no" when nothing of the body is; its body is then
    readable only that far.
    """

    method: str
    url: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    body_signed: str = "yes"  # yes, form, no
    parent: InboundRequest | None = field(default=None, repr=False)  # see signed_part

    @cached_property
    def path(self) -> str:
        return urlsplit(self.url).path

    @cached_property
    def query(self) -> dict[str, list[str]]:
        if "?" not in self.url:
            return {}
        if self.parent is not None and self.parent.url == self.url:
            return self.parent.query
        return _multi(parse_form(urlsplit(self.url).query))

    @cached_property
    def query_as_sent(self) -> dict[str, list[str]]:
        if "%00" not in self.url and "\x00" not in self.url:
            return self.query
        return _multi(parse_form(urlsplit(self.url).query, exact=True))

    @cached_property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @cached_property
    def form(self) -> dict[str, list[str]]:
        """The body as form fields (empty when the body is not form-encoded)."""
        parent = self.parent
        if parent is not None and self.body and parent.content_type == self.content_type:
            return parent.form
        return self._form(exact=False)

    @cached_property
    def form_as_sent(self) -> dict[str, list[str]]:
        if b"\x00" not in self.body and b"%00" not in self.body:
            return self.form
        return self._form(exact=True)

    def _form(self, *, exact: bool) -> dict[str, list[str]]:
        if self.content_type not in ("application/x-www-form-urlencoded", "") or not self.body:
            return {}
        try:
            self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BodyError("form body is not UTF-8") from None
        return form_fields(self.body, exact=exact)

    @cached_property
    def json(self) -> Any:
        self._readable("JSON")
        if not self.body:
            raise BodyError("empty body; expected JSON")
        if self.parent is not None:
            return self.parent.json
        try:
            return jsontext.loads(self.body, numbers=jsontext.FINITE)
        except jsontext.JsonError as exc:
            raise BodyError(f"body is not valid JSON: {exc}") from None

    @cached_property
    def json_as_sent(self) -> Any:
        if b"\\u" not in self.body and b"\xed" not in self.body:
            return self.json
        self._readable("JSON")
        try:
            return jsontext.loads(self.body, numbers=jsontext.FINITE, clean=False)
        except jsontext.JsonError as exc:
            raise BodyError(f"body is not valid JSON: {exc}") from None

    @cached_property
    def xml(self) -> etree._Element:
        self._readable("XML")
        try:
            root = etree.fromstring(self.body, safe_parser())
        except etree.XMLSyntaxError as exc:
            raise BodyError(f"body is not well-formed XML: {exc.msg}") from None
        if root is None:
            raise BodyError("empty XML body")
        return root

    def text(self) -> str:
        """The body as text (undecodable bytes and NUL as U+FFFD)."""
        self._readable("text")
        return clean(self.body.decode("utf-8", "replace"))

    def _readable(self, what: str) -> None:
        if self.body_signed != "yes":
            covers = "only its form fields" if self.body_signed == "form" else "none of it"
            raise BodyError(f"cannot read the body as {what}: the signature covers {covers}")

    @cached_property
    def is_json(self) -> bool:
        return self.content_type.endswith("json") or (
            self.content_type in ("", "text/plain") and self.body.lstrip()[:1] in (b"{", b"["))

    def params(self, body_format: str) -> dict[str, list[str]]:
        """Flat fields: the query string plus, by ``body_format``, form or top-level JSON."""
        cache = self.__dict__.setdefault("_params_cache", {})
        found = cache.get(body_format)
        if found is None:
            found = cache[body_format] = self._params(body_format, exact=False)
        return found  # type: ignore[no-any-return]

    def params_as_sent(self, body_format: str) -> dict[str, list[str]]:
        """:meth:`params` exactly as sent."""
        return self._params(body_format, exact=True)

    def _params(self, body_format: str, *, exact: bool) -> dict[str, list[str]]:
        merged = dict(self.query_as_sent if exact else self.query)
        form = self.form_as_sent if exact else self.form
        if body_format == "query":
            return merged
        if body_format in ("form", "auto") and not (body_format == "auto" and self.is_json):
            if self.body_signed == "no":
                return merged
            if not merged:
                return form  # the usual webhook: nothing in the query string
            for key, values in form.items():
                merged.setdefault(key, []).extend(values)
        elif body_format in ("json", "auto") and self.body and self.body_signed == "yes":
            data = self.json_as_sent if exact else self.json
            if isinstance(data, dict):
                for key, value in data.items():
                    if not isinstance(value, dict | list):
                        merged.setdefault(key, []).append(_scalar_text(value))
        return merged

    def signed_part(self, *, query: bool, body: str, headers: Iterable[str] = ()
                    ) -> InboundRequest:
        """This request reduced to what a signature covers: the query string when
        ``query``, the body as ``body`` says (yes, form, no; see the class text), and
        the ``headers`` named (lower case; the others are dropped). What both read
        alike is decoded once, by this request."""
        url = self.url if query else self.url.partition("?")[0]
        kept = {name: self.headers[name] for name in headers if name in self.headers}
        return InboundRequest(self.method, url, kept, b"" if body == "no" else self.body,
                              body, self)


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class MtRequest:
    """An outbound HTTP request, ready for any client."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    def redacted(self, text: str) -> str:
        """``text`` with every secret of this request masked, in each form a server
        may echo it (percent-encoded, base64: :func:`host.config.secrets.redact`)."""
        return redact(text, self.secrets)

    def describe(self) -> str:
        """One line for logs, with every secret replaced by ``********``."""
        headers = {k: (MASK if k.lower() in ("authorization", "proxy-authorization") else v)
                   for k, v in self.headers.items()}
        return self.redacted(f"{self.method} {self.url} {headers} "
                             f"{self.body.decode('utf-8', 'replace')}")

    def __repr__(self) -> str:
        return f"MtRequest({self.describe()})"


@dataclass(frozen=True)
class MtResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    @cached_property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class MtResult:
    """What a send came to. ``retry_after`` is seconds the broker asked us to wait."""

    outcome: Literal["accepted", "retry", "fail"]
    message_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    status: int | None = None
    exchange: Exchange | None = field(default=None, repr=False, compare=False)
    """The request and answer as kept with the message (host.brokers.exchanges)."""

    def redacted(self, secrets: Iterable[str]) -> MtResult:
        """This result with ``secrets`` masked in every text it carries from the broker's
        answer or the request (a gateway may echo the query string, password
        included, in its error)."""
        error = redact(self.error, secrets) if self.error else self.error
        code = redact(self.error_code, secrets) if self.error_code else self.error_code
        if (error, code) == (self.error, self.error_code):
            return self
        return replace(self, error=error, error_code=code)
