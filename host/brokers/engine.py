"""``XmlBroker``: the XML-driven implementation of every broker step (SPEC B1, B2).

An adapter is a subclass placed beside the XML (same stem) that overrides any of the
:data:`STEPS` and calls ``super()`` for the XML-driven default where it wants. Steps
are plain synchronous methods: they only read and build data, no I/O.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from host.brokers import coverage
from host.brokers.fields import MoFields as MoFields
from host.brokers.fields import OutboundMessage as OutboundMessage
from host.brokers.fields import ParseError as ParseError
from host.brokers.fields import ReceiptFields as ReceiptFields
from host.brokers.fields import read_count, read_int
from host.brokers.specs import (Answer, BrokerDefinition, FieldSpec, InboundSpec,
                                SignatureSpec)
from host.brokers.extract import TRANSFORMS, ExtractError, Source
from host.brokers.http import BodyError, InboundRequest, MtRequest, MtResponse, MtResult
from host.brokers.payloads import RequestPayload, ResponsePayload
from host.brokers.requests import default_outcome, included, listed, nest, retry_after
from host.brokers.signatures import verify as verify_with_scheme
from host.brokers.templates import Context, Template, XmlContext
from host.config.secrets import Secret

STEPS = ("classify", "verify_signature", "signed_part", "parse_mo", "parse_dlr", "answer_mo",
         "answer_dlr", "answer_ignored", "build_mt_request", "read_mt_response")


class XmlBroker:
    """One configured broker, driven by its definition. Subclass to adapt a step."""

    clock: Callable[[], float] = staticmethod(time.time)
    """Seconds since the epoch, for signature timestamps (the conformance kit fixes it)."""

    def __init__(self, definition: BrokerDefinition, *, name: str | None = None,
                 options: Mapping[str, Any] | None = None,
                 broker_values: Mapping[str, str] | None = None,
                 attrs: Mapping[str, str] | None = None) -> None:
        self.definition = definition
        self.name = name or definition.name
        self.broker_values = dict(broker_values or {})
        self.attrs = dict(attrs or {})
        self.options = self._resolve_options(options or {})

    def option_text(self, name: str) -> str:
        """Option ``name`` as plain text: its secret revealed (values set in brokers.toml
        are ``Secret``s), its default, or "" when it has none."""
        value = self.options.get(name)
        return value.reveal() if isinstance(value, Secret) else str(value or "")

    def _resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        base = Context({"broker": self.broker_values, "attrs": self.attrs})
        out: dict[str, Any] = {}
        for name, spec in self.definition.options.items():
            if name in given:
                out[name] = given[name]
            else:
                out[name] = Template(spec.default).render(base)
        return out

    # -- inbound --------------------------------------------------------------------

    def classify(self, request: InboundRequest, kinds: Sequence[str]) -> str | None:
        """Which of ``kinds`` ("mo", "receipt") this request is, "ignore" when an
        ``<ignore>`` block matches it, None if nothing fits."""
        for ignore in self.definition.ignore:
            payload = RequestPayload(request, "auto")
            try:
                if all(test.holds(payload) for test in ignore.when):
                    return "ignore"
            except (BodyError, ExtractError):
                continue
        for kind in kinds:
            spec = self._spec(kind)
            if spec is None or request.method not in spec.methods:
                continue
            payload = RequestPayload(request, spec.body)
            try:
                if all(test.holds(payload) for test in spec.when):
                    return kind
            except (BodyError, ExtractError) as exc:
                raise ParseError(str(exc)) from None
        return None

    def _spec(self, kind: str) -> InboundSpec | None:
        return self.definition.mo if kind == "mo" else self.definition.receipt

    def verify_signature(self, request: InboundRequest, keys: Sequence[str]) -> None:
        """Raise ``SignatureError`` unless ``request`` is signed with one of ``keys``.

        Called only when the definition declares a scheme and a key is configured.
        """
        assert self.definition.signature is not None
        verify_with_scheme(request, keys, self.definition.signature, self.clock())

    def signed_part(self, request: InboundRequest) -> InboundRequest:
        """``request`` reduced to what its signature covers: what the other inbound
        steps read when a signature is checked (see ``coverage.py``). An adapter whose
        ``verify_signature`` covers something else says so here."""
        assert self.definition.signature is not None
        return coverage.signed_part(self.definition.signature, request)

    def signature_keys(self, accounts: Sequence[Mapping[str, Any]],
                       request: InboundRequest | None = None,
                       kind: str | None = None) -> list[str]:
        """Every key a request may be signed with: ``<signature key>`` rendered for each
        account (only for the account the request names, its ``account`` field, when
        that is one of them), then ``<signature broker-key>`` (one key for the whole
        instance, e.g. a main account's token).

        This is the one place that says which keys there are. The webhook code asks
        it whether anything is configured (nothing: the request is not checked, and
        read whole) and hands exactly these to :meth:`verify_signature`; an adapter
        with a key of its own adds it here, never inside ``verify_signature`` alone
        (which is not called at all when this returns none).
        """
        spec = self.definition.signature
        if spec is None:
            return []
        named = (self._named_account(request, kind)
                 if request is not None and kind and len(accounts) > 1 else None)
        chosen = [a for a in accounts if named in (a.get("login"), a.get("id"))] if named else []
        if chosen:
            keys = self._keys_of(spec, chosen)
            if keys:
                return keys + [k for k in self._broker_keys(spec) if k not in keys]
            # The named account has no key: the request names it, so it must not decide
            # that nothing is checked; any configured key must have signed it.
        cached = self.__dict__.get("_all_keys")
        if cached is not None and cached[0] is accounts:
            return list(cached[1])
        keys = self._keys_of(spec, accounts)  # every account's: the same each time, kept
        keys += [k for k in self._broker_keys(spec) if k not in keys]
        self.__dict__["_all_keys"] = (accounts, tuple(keys))
        return keys

    def _keys_of(self, spec: SignatureSpec, accounts: Sequence[Mapping[str, Any]]) -> list[str]:
        keys: list[str] = []
        for account in accounts:
            ctx = Context({"account": account, "options": self.options,
                           "broker": self.broker_values, "attrs": self.attrs})
            key = spec.key.render(ctx)
            if key and key not in keys:
                keys.append(key)
        return keys

    def _broker_keys(self, spec: SignatureSpec) -> list[str]:
        if spec.broker_key is None:
            return []
        key = spec.broker_key.render(Context({"options": self.options, "account": {},
                                              "broker": self.broker_values,
                                              "attrs": self.attrs}))
        return [key] if key else []

    def _named_account(self, request: InboundRequest, kind: str) -> str | None:
        spec = self._spec(kind)
        field = next((f for f in spec.fields if f.name == "account"), None) if spec else None
        if spec is None or field is None:
            return None
        try:
            return field.source.read(RequestPayload(request, spec.body))
        except (BodyError, ExtractError):
            return None

    def _read_fields(self, spec: InboundSpec, request: InboundRequest,
                     specs: Sequence[FieldSpec]) -> dict[str, str]:
        payload = RequestPayload(request, spec.body)
        values: dict[str, str] = {}
        params: dict[str, list[str]] | None = None
        for fs in specs:
            source = fs.source
            try:
                if source.kind == "param":  # the common case, read without indirection
                    if params is None:
                        params = request.params(spec.body)
                    found = params.get(source.expr)
                    value = found[0] if found else None
                else:
                    value = source.read(payload)
                # The pattern is the form the broker sends: checked on the value as sent,
                # before a transform could bring a re-cut or padded one into that form
                # (docs/broker-plugins.md, "Fields").
                if value and fs.pattern is not None and not _in_form(fs.pattern, value):
                    raise ParseError(f"{fs.name} ({_describe(fs.source)}) is not in the "
                                     f"form the broker sends: {value[:40]!r}")
                if value is not None and fs.transform:
                    value = TRANSFORMS[fs.transform](value)
            except (BodyError, ExtractError) as exc:
                raise ParseError(str(exc)) from None
            if value is None or value == "":
                value = fs.default
            if value is None:
                if fs.required:
                    raise ParseError(f"missing {fs.name} ({_describe(fs.source)})")
                continue
            values[fs.name] = value
        return values

    def parse_mo(self, request: InboundRequest) -> MoFields:
        spec = self.definition.mo
        if spec is None:
            raise ParseError(f"broker {self.definition.name} receives no MO")
        v = self._read_fields(spec, request, spec.fields)
        if not v.get("from"):
            raise ParseError("missing from (the sender's number)")
        return MoFields(
            id=v.get("id"), from_=v["from"], to=v.get("to"), text=v.get("text", ""),
            account=v.get("account"), segments=read_count(v, "segments"),
            encoding=v.get("encoding"), timestamp=v.get("timestamp"), udh=v.get("udh"),
            concat_ref=v.get("concat-ref"), concat_total=read_int(v, "concat-total"),
            concat_part=read_int(v, "concat-part"),
            attrs=self._read_fields(spec, request, spec.attributes),
        )

    def parse_dlr(self, request: InboundRequest) -> ReceiptFields:
        spec = self.definition.receipt
        if spec is None:
            raise ParseError(f"broker {self.definition.name} sends no delivery receipts")
        v = self._read_fields(spec, request, spec.fields)
        if not v.get("id") and not v.get("ref"):
            raise ParseError("missing id (the broker's message id)")
        raw = v.get("status", "")
        return ReceiptFields(
            id=v.get("id"), status=self.normalize_status(raw), raw_status=raw, ref=v.get("ref"),
            error=v.get("error"), error_text=v.get("error-text"), account=v.get("account"),
            to=v.get("to"), timestamp=v.get("timestamp"),
            attrs=self._read_fields(spec, request, spec.attributes),
        )

    def normalize_status(self, raw: str) -> str:
        spec = self.definition.receipt
        assert spec is not None
        return spec.status_map.get(raw.strip().lower(), spec.status_default)

    def answer_mo(self, fields: MoFields | None) -> Answer:
        spec = self.definition.mo
        return spec.answer if spec is not None else Answer()

    def answer_dlr(self, fields: ReceiptFields | None) -> Answer:
        spec = self.definition.receipt
        return spec.answer if spec is not None else Answer()

    def answer_ignored(self, request: InboundRequest) -> Answer:
        for spec in self.definition.ignore:
            payload = RequestPayload(request, "auto")
            try:
                if all(test.holds(payload) for test in spec.when):
                    return spec.answer
            except (BodyError, ExtractError):
                continue
        return Answer()

    # -- outbound -------------------------------------------------------------------

    def mt_context(self, message: OutboundMessage, account: Mapping[str, Any]) -> Context:
        ucs2 = message.encoding == "ucs2"
        return Context({
            "message": {"id": message.id, "ref": message.ref, "to": message.to,
                        "from": message.from_, "text": message.text,
                        "encoding": message.encoding, "segments": message.segments,
                        "udh": message.udh, "coding": "2" if ucs2 else "0",
                        "charset": "UTF-16BE" if ucs2 else "UTF-8"},
            "account": account, "options": self.options, "broker": self.broker_values,
            "attrs": self.attrs,
        })

    def build_mt_request(self, message: OutboundMessage,
                         account: Mapping[str, Any]) -> MtRequest:
        """The HTTP request that sends ``message`` from ``account``."""
        mt = self.definition.mt
        if mt is None:
            raise ValueError(f"broker {self.definition.name} defines no MT request")
        spec = mt.request
        ctx = self.mt_context(message, account)
        url = spec.url.render(ctx, url=True)
        headers: dict[str, str] = {}
        query: list[tuple[str, str]] = []
        derived: set[str] = set()  # secrets made of secrets: a Basic token
        for auth in spec.auth:
            t = {k: v.render(ctx) for k, v in auth.templates.items()}
            if auth.type == "basic":
                token = base64.b64encode(f"{t['user']}:{t['password']}".encode()).decode()
                headers["Authorization"] = f"Basic {token}"
                derived.add(token)
            elif auth.type == "bearer":
                headers["Authorization"] = f"Bearer {t['token']}"
            elif auth.type == "header":
                headers[t["name"]] = t["value"]
            else:
                query.append((t["name"], t["value"]))
        for header in spec.headers:
            if included(header, ctx):
                headers[header.name] = header.template.render(ctx)
        params = [(p, p.template.render(ctx)) for p in spec.params if included(p, ctx)]
        params = [(p, v) for p, v in params if v != ""]
        body = b""
        if spec.body in ("form", "query"):
            pairs = [(p.name, v) for p, v in params for v in listed(p, v)]
            if spec.body == "query":
                query += pairs
            else:
                body = urlencode(pairs).encode()
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif spec.body == "json":
            body = json.dumps(nest(params), ensure_ascii=False).encode()
            headers.setdefault("Content-Type", "application/json")
        elif spec.body == "xml":
            assert spec.template is not None
            body = spec.template.render(XmlContext(ctx)).encode()
            headers.setdefault("Content-Type", "application/xml; charset=utf-8")
        if query:
            parts = urlsplit(url)
            joined = "&".join(x for x in (parts.query, urlencode(query)) if x)
            url = urlunsplit(parts._replace(query=joined))
        # Masked in every form a server may echo (MtRequest.redacted).
        secrets = {secret for secret in ctx.revealed | derived if secret}
        return MtRequest(spec.method, url, headers, body, frozenset(secrets))

    def read_mt_response(self, response: MtResponse, message: OutboundMessage,
                         account: Mapping[str, Any]) -> MtResult:
        """Accepted (with the broker's message id), retry, or fail."""
        mt = self.definition.mt
        spec = mt.response if mt is not None else None
        payload = ResponsePayload(response)
        ctx = self.mt_context(message, account)
        outcome = default_outcome(response.status)
        for rule in spec.rules if spec is not None else ():
            try:
                ok = rule.status_matches(response.status) and (
                    rule.test is None or rule.test.holds(payload, ctx))
            except (ExtractError, BodyError):
                ok = False
            if ok:
                outcome = rule.outcome  # type: ignore[assignment]  # checked by the schema
                break

        def read(source: Source | None) -> str | None:
            if source is None:
                return None
            try:
                return source.read(payload, ctx) or None
            except (ExtractError, BodyError):
                return None

        message_id = read(spec.message_id) if spec is not None else None
        error = read(spec.error) if spec is not None else None
        code = read(spec.error_code) if spec is not None else None
        if outcome != "accepted" and error is None:
            error = f"HTTP {response.status}: {response.text[:200]}"
        return MtResult(outcome, message_id if outcome == "accepted" else None, error, code,
                        retry_after(response) if outcome == "retry" else None, response.status)


def _in_form(pattern: Any, value: str) -> bool:
    """Whether ``value`` is whole in the form ``pattern`` (RE2, linear time) gives. Short
    values are memoized: most patterned fields repeat theirs from one request to the next
    (an account id, a count), and a call through RE2's binding costs ~4 us against ~0.1
    from the cache (docs/benchmarks.md, "Issue 18: the levers together")."""
    if len(value) > _MEMO_LONGEST:
        return pattern.fullmatch(value) is not None
    return _memo_in_form(pattern, value)


_MEMO_LONGEST = 128  # a value kept in the memo at most this long: ~1 MB in all


@functools.lru_cache(maxsize=4096)
def _memo_in_form(pattern: Any, value: str) -> bool:
    return pattern.fullmatch(value) is not None


def _describe(source: Source) -> str:
    return f"{source.kind} {source.expr!r}"
