"""Broker definitions: XML validated against ``schema/broker.xsd``, read into frozen data.

Parsing never loads a DTD, expands an entity or touches the network. Every error names
the file and line: schema violations come from lxml's error log; checks the schema
cannot express (templates naming unknown things, bad regular expressions or XPath,
a source attribute missing or doubled) come from the element's ``sourceline``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from host.brokers import coverage
from host.brokers.extract import TRANSFORMS, Source, Test
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
from host.brokers.templates import Template, TemplateError, parse_condition
from host.xmlsafe import check_xml
from host.errors import DefinitionError, PluginError

SCHEMA_PATH = Path(__file__).with_name("schema") / "broker.xsd"
SOURCE_KINDS = ("param", "query", "pointer", "xpath", "header", "regex", "value")
TEST_KINDS = ("equals", "in", "matches", "present")


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
    return _Reader(path).broker(tree.getroot())


def _strip_where(message: str, path: Path) -> str:
    prefix = str(path)
    if message.startswith(prefix):
        message = message[len(prefix):].lstrip(":0123456789").lstrip()
    return message


def _line_of(message: str, path: Path) -> int | None:
    match = re.match(re.escape(str(path)) + r":(\d+):", message)
    return int(match.group(1)) if match else None


def _elements(el: etree._Element | None) -> list[etree._Element]:
    """Child elements, without comments and processing instructions."""
    return [] if el is None else [c for c in el if isinstance(c.tag, str)]


def _schema_message(message: str) -> str:
    return re.sub(r"\{[^}]*\}", "", message).replace("Element '", "element '")


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.options: frozenset[str] = frozenset()
        self.signed: SignatureSpec | None = None  # the scheme inbound sources must obey
        self.body = "auto"  # the body format of the <mo>, <receipt> or <ignore> being read

    def fail(self, el: etree._Element, message: str) -> DefinitionError:
        return DefinitionError(message, file=str(self.path), line=el.sourceline)

    def template(self, el: etree._Element, text: str | None) -> Template:
        try:
            return Template(text or "", self.options)
        except TemplateError as exc:
            raise self.fail(el, str(exc)) from None

    def broker(self, root: etree._Element) -> BrokerDefinition:
        options = {o.name: o for o in self.option_list(root.find("options"))}
        self.options = frozenset(options)
        enc = root.find("encodings")
        signature = root.find("signature")
        self.signed = self.signature(signature) if signature is not None else None
        mt = root.find("mt")
        definition = BrokerDefinition(
            name=root.get("name"), path=self.path, title=root.get("title", ""),
            description=(root.findtext("description") or "").strip(),
            defaults=Endpoints(**self.endpoints(root.find("defaults"))),
            options=options,
            encodings={e.get("name"): EncodingSpec(e.get("name"), int(e.get("single")),
                                                   int(e.get("multi")))
                       for e in _elements(enc)},
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

    def endpoints(self, el: etree._Element | None) -> dict[str, str]:
        if el is None:
            return {}
        return {child.tag.replace("-", "_"): (child.text or "").strip()
                for child in _elements(el)}

    def option_list(self, el: etree._Element | None) -> list[OptionSpec]:
        if el is None:
            return []
        return [OptionSpec(o.get("name"), o.get("default", ""), o.get("secret") == "true",
                           " ".join((o.text or "").split())) for o in _elements(el)]

    def profile(self, el: etree._Element, options: dict[str, OptionSpec]) -> Profile:
        overrides = {}
        for opt in el.iterfind("options/option"):
            if opt.get("name") not in options:
                raise self.fail(opt, f"profile option {opt.get('name')!r} is not declared in "
                                "the broker's <options>")
            overrides[opt.get("name")] = opt.get("default", "")
        return Profile(el.get("name"), self.endpoints(el.find("defaults")), overrides)

    def signature(self, el: etree._Element) -> SignatureSpec:
        params = {k: v for k, v in el.attrib.items() if k not in ("scheme", "key", "broker-key")}
        algorithm = params.get("algorithm")
        allowed = ("md5hash", "md5", "sha1", "sha256", "sha512")
        if algorithm is not None and (el.get("scheme") != "vonage" or algorithm not in allowed):
            raise self.fail(el, f"algorithm {algorithm!r}: the vonage scheme takes one of "
                            f"{', '.join(allowed)}; other schemes take none")
        payload = params.get("payload")
        if payload is not None:
            unknown = set(re.findall(r"\{[^}]*\}", payload)) - {"{body}", "{timestamp}", "{url}"}
            if el.get("scheme") != "hmac-sha256" or unknown:
                raise self.fail(el, f"payload {payload!r}: the hmac-sha256 scheme's payload "
                                "may use {body}, {timestamp} and {url}; other schemes take none")
        broker_key = el.get("broker-key")
        if broker_key is not None and "{account." in broker_key:
            raise self.fail(el, f"broker-key {broker_key!r} is one key for every request: it "
                            "cannot use {account.*} (key is rendered for each account)")
        return SignatureSpec(el.get("scheme"), self.template(el, el.get("key")), params,
                             self.template(el, broker_key) if broker_key else None)

    def check_signed(self, el: etree._Element, source: Source) -> None:
        """A signed request's fields are read only from what its signature covers
        (SPEC P12, ``coverage.py``)."""
        if self.signed is None:
            return
        missing = coverage.uncovered(source, self.body, coverage.scheme_parts(self.signed))
        if missing is not None:
            raise self.fail(el, f"<{el.tag}> reads {source.kind} {source.expr!r} from "
                            f"{missing}, which the {self.signed.scheme} signature does not "
                            "cover: a signed request's fields are read only from what its "
                            "signature covers (a captured request could be sent again with "
                            "that part changed)")

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
        except (etree.XPathSyntaxError, re.error, ValueError) as exc:
            raise self.fail(el, f"bad {kind} {el.get(kind)!r}: {exc}") from None
        if inbound:
            self.check_signed(el, source)
        return source

    def test(self, el: etree._Element, source: Source) -> Test:
        ops = [k for k in TEST_KINDS if el.get(k) is not None]
        if len(ops) > 1:
            raise self.fail(el, f"<{el.tag}> takes one test; it has {', '.join(ops)}")
        op = ops[0] if ops else "present"
        raw = el.get(op) if ops else "true"
        if op == "matches":
            try:
                return Test(source, op, (), re.compile(raw))
            except re.error as exc:
                raise self.fail(el, f"bad regular expression {raw!r}: {exc}") from None
        values = tuple(raw.split()) if op == "in" else (raw,)
        return Test(source, op, values)

    def field(self, el: etree._Element) -> FieldSpec:
        source = self.source(el)
        assert source is not None
        transform = el.get("transform")
        assert transform is None or transform in TRANSFORMS
        pattern = el.get("pattern")
        try:
            compiled = re.compile(pattern) if pattern is not None else None
        except re.error as exc:
            raise self.fail(el, f"bad pattern {pattern!r}: {exc}") from None
        return FieldSpec(el.get("name"), source, el.get("required") == "true",
                         el.get("default"), transform, compiled)

    def inbound(self, el: etree._Element | None) -> InboundSpec | None:
        if el is None:
            return None
        req = el.find("request")
        answer = el.find("answer")
        self.body = req.get("body", "auto") if req is not None else "auto"
        status_map: dict[str, str] = {}
        smap = el.find("status-map")
        for status in _elements(smap):
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

    def ignore(self, el: etree._Element) -> IgnoreSpec:
        answer = el.find("answer")
        self.body = "auto"  # as classify reads it
        return IgnoreSpec(
            tuple(self.test(w, self.source(w)) for w in el.findall("when")),  # type: ignore[arg-type]
            Answer(int(answer.get("status", "200")),
                   answer.get("content-type", "text/plain; charset=utf-8"), answer.text or "")
            if answer is not None else Answer())

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
        return ParamSpec(el.get("name"), self.template(el, el.text), cond, negate,
                         el.get("type", "string"))

    def mt(self, el: etree._Element) -> MtSpec:
        req = el.find("request")
        auth = []
        for a in req.findall("auth"):
            keys = {"basic": ("user", "password"), "bearer": ("token",),
                    "header": ("name", "value"), "query": ("name", "value")}[a.get("type")]
            missing = [k for k in keys if a.get(k) is None]
            if missing:
                raise self.fail(a, f"auth type {a.get('type')!r} needs {', '.join(missing)}")
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

    def response(self, el: etree._Element | None) -> ResponseSpec:
        if el is None:
            return ResponseSpec()
        rules = []
        for rule in _elements(el):
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
