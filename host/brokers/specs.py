"""The frozen data a broker definition is read into (see ``definition.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from host.brokers.extract import Source, Test
from host.brokers.templates import Condition, Template


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    source: Source
    required: bool = False
    default: str | None = None
    transform: str | None = None
    pattern: Any = None  # RE2 (host.regex): the value read must match it whole


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    body: str = ""


@dataclass(frozen=True, slots=True)
class InboundSpec:
    """How to recognise and read an MO or a delivery receipt."""

    body: str = "auto"
    methods: tuple[str, ...] = ("GET", "POST")
    when: tuple[Test, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    attributes: tuple[FieldSpec, ...] = ()
    answer: Answer = Answer()
    status_map: dict[str, str] = field(default_factory=dict)
    status_default: str = "unknown"


@dataclass(frozen=True, slots=True)
class IgnoreSpec:
    """Requests to acknowledge and drop (e.g. event types a broker also sends)."""

    when: tuple[Test, ...]
    answer: Answer = Answer()


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    template: Template
    condition: Condition | None = None
    negate: bool = False
    type: str = "string"


@dataclass(frozen=True, slots=True)
class AuthSpec:
    type: str
    templates: dict[str, Template]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    method: str
    url: Template
    body: str
    auth: tuple[AuthSpec, ...] = ()
    headers: tuple[ParamSpec, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    template: Template | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    outcome: str  # accepted, retry, fail
    statuses: tuple[str, ...] = ()  # "200", "2xx"
    test: Test | None = None

    def status_matches(self, status: int) -> bool:
        if not self.statuses:
            return True
        code = str(status)
        return any(s == code or (len(s) == 3 and s[1:] == "xx" and s[0] == code[0])
                   for s in self.statuses)


@dataclass(frozen=True, slots=True)
class ResponseSpec:
    body: str = "text"
    rules: tuple[RuleSpec, ...] = ()
    message_id: Source | None = None
    error: Source | None = None
    error_code: Source | None = None


@dataclass(frozen=True, slots=True)
class MtSpec:
    request: RequestSpec
    response: ResponseSpec


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    default: str = ""
    secret: bool = False
    help: str = ""


@dataclass(frozen=True, slots=True)
class SignatureSpec:
    scheme: str
    key: Template  # rendered for each account
    params: dict[str, str] = field(default_factory=dict)
    broker_key: Template | None = None  # rendered once: a key for every request


@dataclass(frozen=True, slots=True)
class Endpoints:
    gateway: str = ""
    outgoing_path: str = ""
    incoming_path: str = ""
    receipt_path: str = ""


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    name: str
    single: int
    multi: int


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    defaults: dict[str, str]
    options: dict[str, str]


@dataclass(frozen=True, slots=True)
class BrokerDefinition:
    name: str
    path: Path
    title: str = ""
    description: str = ""
    defaults: Endpoints = Endpoints()
    options: dict[str, OptionSpec] = field(default_factory=dict)
    encodings: dict[str, EncodingSpec] = field(default_factory=dict)
    max_segments: int = 10
    splits: str = "broker"
    signature: SignatureSpec | None = None
    mo: InboundSpec | None = None
    receipt: InboundSpec | None = None
    mt: MtSpec | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    ignore: tuple[IgnoreSpec, ...] = ()

    def with_profile(self, name: str | None) -> BrokerDefinition:
        """This definition with a profile's defaults and option defaults applied."""
        if not name:
            return self
        profile = self.profiles[name]
        endpoints = replace(self.defaults, **profile.defaults)
        options = {k: replace(v, default=profile.options.get(k, v.default))
                   for k, v in self.options.items()}
        return replace(self, defaults=endpoints, options=options)
