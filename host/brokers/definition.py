"""Broker definitions: XML validated against ``schema/broker.xsd``, read into frozen data.

Parsing never loads a DTD, expands an entity or touches the network. Every error names
the file and line: schema violations come from lxml's error log; checks the schema
cannot express (templates naming unknown things or with unbalanced braces, regular
expressions RE2 refuses, XPath that does not evaluate, a signature key that is not a
key, a source attribute missing or doubled) come from the element's ``sourceline``.
Anything else that fails while one definition is read is its load error too, with the
line of the element being read (:func:`host.brokers.reading.at`): never a crash of
``serve`` or ``check``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from host.brokers import coverage
from host.brokers.extract import TRANSFORMS, Source, Test
from host.brokers.keys import key_problem
from host.brokers.reading import ElementReader, at, elements
from host.brokers.specs import (
    Answer,
    AuthSpec,
    BrokerDefinition,
    EncodingSpec,
    Endpoints,
    FieldSpec,
    IgnoreSpec,
    InboundSpec,
    MtSpec,
    OptionSpec,
    ParamSpec,
    Profile,
    RequestSpec,
    ResponseSpec,
    RuleSpec,
    SignatureSpec,
)
from host.brokers.templates import TemplateError, parse_condition
from host.quoting import quoted
from host.regex import PatternError, compile_re2
from host.xmlsafe import check_xml
from host.errors import DefinitionError, PluginError

SCHEMA_PATH = Path(__file__).with_name("schema") / "broker.xsd"
SOURCE_KINDS = ("param", "query", "pointer", "xpath", "header", "regex", "value")
TEST_KINDS = ("equals", "in", "not-in", "matches", "present")


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))


# -- parsing --------------------------------------------------------------------------

def load_definition(path: Path) -> BrokerDefinition:
    """Parse and validate ``path``; raise :class:`DefinitionError` naming file and line."""
    try:
        tree = check_xml(path)
    except PluginError as exc:
        raise DefinitionError(_strip_where(str(exc), path), file=str(path),
                              line=_line_of(str(exc), path)) from None
    xsd = schema()
    if not xsd.validate(tree):
        error = xsd.error_log.filter_from_errors()[0]
        raise DefinitionError(_schema_message(error.message), file=str(path), line=error.line)
    reader = _Reader(path)
    try:
        return reader.broker(tree.getroot())
    except DefinitionError:
        raise
    # Whatever reading one definition raises is that definition's load error, with the
    # line of the element being read: never a crash of serve or check (BLE001).
    except Exception as exc:  # noqa: BLE001
        line = reader.where.sourceline if reader.where is not None else None
        raise DefinitionError(f"cannot read this element: {type(exc).__name__}: "
                              f"{str(exc)[:200]}", file=str(path), line=line) from None


def _strip_where(message: str, path: Path) -> str:
    prefix = str(path)
    if message.startswith(prefix):
        message = message[len(prefix):].lstrip(":0123456789").lstrip()
    return message


def _line_of(message: str, path: Path) -> int | None:
    match = re.match(re.escape(str(path)) + r":(\d+):", message)
    return int(match.group(1)) if match else None


def _schema_message(message: str) -> str:
    message = re.sub(r"\{[^}]*\}", "", message).replace("Element '", "element '")
    return re.sub(r"'([^']{80})[^']+'", r"'\1...'", message)  # a value quoted, shortened


class _Reader(ElementReader):
    """Reads a validated definition's elements into its frozen data (checks the schema
    cannot express fail with the element's line)."""

    def broker(self, root: etree._Element) -> BrokerDefinition:
        options = {o.name: o for o in self.option_list(root.find("options"))}
        self.options = frozenset(options)
        self.option_specs = options
        enc = root.find("encodings")
        signature = root.find("signature")
        self.signed = self.signature(signature) if signature is not None else None
        mt = root.find("mt")
        definition = BrokerDefinition(
            name=root.get("name"), path=self.path, title=root.get("title", ""),
            description=(root.findtext("description") or "").strip(),
            defaults=Endpoints(**self.endpoints(root.find("defaults"))),
            options=options,
            encodings=dict(self.encoding(e) for e in elements(enc)),
            max_segments=int(enc.get("max-segments", "10")) if enc is not None else 10,
            splits=enc.get("splits", "broker") if enc is not None else "broker",
            signature=self.signed,
            mo=self.inbound(root.find("mo")),
            receipt=self.inbound(root.find("receipt")),
            mt=self.mt(mt) if mt is not None else None,
            profiles={p.get("name"): self.profile(p, options) for p in root.findall("profile")},
            ignore=tuple(self.ignore(i) for i in root.findall("ignore")),
        )
        if definition.name != self.path.stem:
            raise self.fail(root, f"broker name {definition.name!r} must match the file name "
                            f"{self.path.stem!r}")
        return definition

    @at
    def encoding(self, el: etree._Element) -> tuple[str, EncodingSpec]:
        name = el.get("name")
        return name, EncodingSpec(name, int(el.get("single")), int(el.get("multi")))

    def endpoints(self, el: etree._Element | None) -> dict[str, str]:
        if el is None:
            return {}
        return {child.tag.replace("-", "_"): (child.text or "").strip()
                for child in elements(el)}

    def option_list(self, el: etree._Element | None) -> list[OptionSpec]:
        return [self.option(o) for o in elements(el)]

    @at
    def option(self, el: etree._Element) -> OptionSpec:
        return OptionSpec(el.get("name"), self.option_default(el), el.get("secret") == "true",
                          " ".join((el.text or "").split()))

    def option_default(self, el: etree._Element) -> str:
        """An option's default: a template over ``broker`` and ``attrs`` (what is known
        when an instance is built, before any message)."""
        default = str(el.get("default", ""))
        for ref in self.template(el, default, options=()).refs:
            if ref.namespace not in ("broker", "attrs"):
                raise self.fail(el, f"default {quoted(default, 80)}: an option's default may use "
                                "{broker.*} and {attrs.*} only (it is rendered once, when "
                                "the broker is configured)")
        return default

    @at
    def profile(self, el: etree._Element, options: dict[str, OptionSpec]) -> Profile:
        overrides = {}
        for opt in el.iterfind("options/option"):
            if opt.get("name") not in options:
                raise self.fail(opt, f"profile option {opt.get('name')!r} is not declared in "
                                "the broker's <options>")
            overrides[opt.get("name")] = self.option_default(opt)
        return Profile(el.get("name"), self.endpoints(el.find("defaults")), overrides)

    @at
    def signature(self, el: etree._Element) -> SignatureSpec:
        params = {k: v for k, v in el.attrib.items() if k not in ("scheme", "key", "broker-key")}
        algorithm = params.get("algorithm")
        allowed = ("md5hash", "md5", "sha1", "sha256", "sha512")
        if algorithm is not None and (el.get("scheme") != "vonage" or algorithm not in allowed):
            raise self.fail(el, f"algorithm {algorithm!r}: the vonage scheme takes one of "
                            f"{', '.join(allowed)}; other schemes take none")
        payload = params.get("payload")
        if payload is not None:
            rest = re.sub(r"\{(?:body|timestamp|url)\}", "", payload)
            if el.get("scheme") != "hmac-sha256" or "{" in rest or "}" in rest:
                raise self.fail(el, f"payload {quoted(payload, 80)}: the hmac-sha256 "
                                "scheme's payload may use {body}, {timestamp} and {url}; "
                                "other schemes take none")
        for name in ("header", "timestamp-header", "nonce-header"):
            self.header_name(el, params.get(name))
        key = self.template(el, el.get("key"))
        broker_key = self.template(el, el.get("broker-key")) \
            if el.get("broker-key") is not None else None
        for attribute, template in (("key", key), ("broker-key", broker_key)):
            problem = key_problem(attribute, template, el.get("scheme"), self.option_specs) \
                if template is not None else None
            if problem:
                raise self.fail(el, problem)
        return SignatureSpec(el.get("scheme"), key, params, broker_key)

    def check_signed(self, el: etree._Element, source: Source) -> None:
        """A signed request's fields are read only from what its signature covers
        (SPEC P12, ``coverage.py``)."""
        if self.signed is None:
            return
        missing = coverage.uncovered(source, self.body, coverage.scheme_parts(self.signed))
        if missing is not None:
            raise self.fail(el, f"<{el.tag}> reads {source.kind} {quoted(source.expr, 80)} from "
                            f"{missing}, which the {self.signed.scheme} signature does not "
                            "cover: a signed request's fields are read only from what its "
                            "signature covers (a captured request could be sent again with "
                            "that part changed)")

    @at
    def source(self, el: etree._Element, required: bool = True,
               inbound: bool = True) -> Source | None:
        kinds = [k for k in SOURCE_KINDS if el.get(k) is not None]
        if len(kinds) > 1:
            raise self.fail(el, f"<{el.tag}> takes one source; it has {', '.join(kinds)}")
        if not kinds:
            if required:
                raise self.fail(el, f"<{el.tag}> needs a source: one of "
                                f"{', '.join(SOURCE_KINDS)}")
            return None
        kind = kinds[0]
        try:
            source = Source.make(kind, el.get(kind), self.options)
        except (etree.XPathError, ValueError) as exc:  # PatternError included
            raise self.fail(el, f"bad {kind} {quoted(el.get(kind), 80)}: {exc}") from None
        if inbound:
            self.check_signed(el, source)
        return source

    @at
    def test(self, el: etree._Element, source: Source) -> Test:
        ops = [k for k in TEST_KINDS if el.get(k) is not None]
        if len(ops) > 1:
            raise self.fail(el, f"<{el.tag}> takes one test; it has {', '.join(ops)}")
        op = ops[0] if ops else "present"
        raw = el.get(op) if ops else "true"
        if op == "matches":
            try:
                return Test(source, op, (), compile_re2(raw))
            except PatternError as exc:
                raise self.fail(el, f"bad regular expression {quoted(raw, 80)}: {exc}") from None
        values = tuple(raw.split()) if op in ("in", "not-in") else (raw,)
        return Test(source, op, values)

    @at
    def field(self, el: etree._Element) -> FieldSpec:
        source = self.source(el)
        assert source is not None
        transform = el.get("transform")
        assert transform is None or transform in TRANSFORMS
        pattern = el.get("pattern")
        try:
            compiled = compile_re2(pattern) if pattern is not None else None
        except PatternError as exc:
            raise self.fail(el, f"bad pattern {quoted(pattern, 80)}: {exc}") from None
        return FieldSpec(el.get("name"), source, el.get("required") == "true",
                         el.get("default"), transform, compiled)

    @at
    def inbound(self, el: etree._Element | None) -> InboundSpec | None:
        if el is None:
            return None
        req = el.find("request")
        answer = el.find("answer")
        self.body = req.get("body", "auto") if req is not None else "auto"
        status_map: dict[str, str] = {}
        smap = el.find("status-map")
        for status in elements(smap):
            for word in status.get("from").split():
                status_map[word.lower()] = status.get("to")
        fields = [self.field(f) for f in el.findall("field")]
        names = [f.name for f in fields]
        for dup in {n for n in names if names.count(n) > 1}:
            raise self.fail(el, f"field {dup!r} is declared twice")
        return InboundSpec(
            body=req.get("body", "auto") if req is not None else "auto",
            methods=tuple(((req.get("methods") if req is not None else None)
                           or "GET POST").split()),
            when=tuple(self.test(w, self.source(w)) for w in el.findall("when")),  # type: ignore[arg-type]
            fields=tuple(fields),
            attributes=tuple(self.field(a) for a in el.findall("attribute")),
            answer=Answer(int(answer.get("status", "200")),
                          answer.get("content-type", "text/plain; charset=utf-8"),
                          answer.text or "") if answer is not None else Answer(),
            status_map=status_map,
            status_default=smap.get("default", "unknown") if smap is not None else "unknown",
        )

    @at
    def ignore(self, el: etree._Element) -> IgnoreSpec:
        answer = el.find("answer")
        self.body = "auto"  # as classify reads it
        return IgnoreSpec(
            tuple(self.test(w, self.source(w)) for w in el.findall("when")),  # type: ignore[arg-type]
            Answer(int(answer.get("status", "200")),
                   answer.get("content-type", "text/plain; charset=utf-8"), answer.text or "")
            if answer is not None else Answer())

    @at
    def conditional(self, el: etree._Element) -> ParamSpec:
        cond, negate = None, False
        for attr, neg in (("if", False), ("unless", True)):
            if el.get(attr) is not None:
                if cond is not None:
                    raise self.fail(el, "use either if or unless, not both")
                try:
                    cond = parse_condition(el.get(attr), self.options)
                except TemplateError as exc:
                    raise self.fail(el, str(exc)) from None
                negate = neg
        if el.tag == "header":
            self.header_name(el, el.get("name"))
        return ParamSpec(el.get("name"), self.template(el, el.text), cond, negate,
                         el.get("type", "string"))

    @at
    def mt(self, el: etree._Element) -> MtSpec:
        req = el.find("request")
        auth = []
        for a in req.findall("auth"):
            keys = {"basic": ("user", "password"), "bearer": ("token",),
                    "header": ("name", "value"), "query": ("name", "value")}[a.get("type")]
            missing = [k for k in keys if a.get(k) is None]
            if missing:
                raise self.fail(a, f"auth type {a.get('type')!r} needs {', '.join(missing)}")
            if a.get("type") == "header":
                self.header_name(a, a.get("name"))
            auth.append(AuthSpec(a.get("type"), {k: self.template(a, a.get(k)) for k in keys}))
        body = req.get("body", "form")
        template_el = req.find("template")
        if body == "xml" and template_el is None:
            raise self.fail(req, 'body="xml" needs a <template> with the XML document')
        request = RequestSpec(
            method=req.get("method", "POST"),
            url=self.template(req, req.get("url", "{broker.gateway}{broker.outgoing_path}")),
            body=body, auth=tuple(auth),
            headers=tuple(self.conditional(h) for h in req.findall("header")),
            params=tuple(self.conditional(p) for p in req.findall("param")),
            template=self.template(template_el, template_el.text)
            if template_el is not None else None,
        )
        return MtSpec(request, self.response(el.find("response")))

    @at
    def response(self, el: etree._Element | None) -> ResponseSpec:
        if el is None:
            return ResponseSpec()
        rules = []
        for rule in elements(el):
            if rule.tag not in ("accepted", "retry", "fail"):
                continue
            source = self.source(rule, required=False, inbound=False)
            test = self.test(rule, source) if source is not None else None
            rules.append(RuleSpec(rule.tag, tuple((rule.get("status") or "").split()), test))
        extracts: dict[str, Any] = {}
        for tag in ("message-id", "error", "error-code"):
            child = el.find(tag)
            extracts[tag.replace("-", "_")] = (self.source(child, inbound=False)
                                               if child is not None else None)
        return ResponseSpec(el.get("body", "text"), tuple(rules), **extracts)
