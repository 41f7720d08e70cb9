"""Configured broker instances: settings bound to a loaded definition (SPEC B5, B6, B8).

``build_instances`` checks what needs the definitions (does it exist, its profile and
options, the paths it defaults to, schemes of MO and MT, listener ports, paths shared
by two brokers on one port). An instance with a problem, found here or when its table
was read (``BrokerSettings.config_problems``), is not started; the problem is reported
with the file and line of its ``[[brokers]]`` entry, and the others run.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from host.brokers.specs import BrokerDefinition
from host.brokers.engine import MoFields, XmlBroker
from host.brokers.registry import BrokerType
from host.brokers.signatures import KEY_CHECKS
from host.brokers.templates import Ref
from host.config.brokers import AccountSettings, BrokerSettings
from host.config.schema import key_text
from host.config.secrets import Secret, SecretUnavailable
from host.config.settings import Settings
from host.numbers import normalize


@dataclass(frozen=True, slots=True)
class InstanceProblem:
    broker: str
    message: str  # "file:line: key: what"


@dataclass
class BrokerInstance:
    """One running broker: its settings, definition (profile applied) and broker object."""

    settings: BrokerSettings
    definition: BrokerDefinition
    broker: XmlBroker
    port: int
    mo_path: str | None
    receipt_path: str | None
    accounts: dict[str, AccountSettings] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.settings.name

    def region(self, account: AccountSettings | None) -> str:
        return (account.region if account and account.region else self.settings.region)

    def account_values(self, account: AccountSettings) -> dict[str, Any]:
        values: dict[str, Any] = {
            "id": account.id, "login": account.login, "password": account.password,
            "local_address": account.local_address or "", "region": self.region(account),
        }
        values.update({f"attrs.{k}": v for k, v in account.attrs.items()})
        return values

    def secrets(self, account: AccountSettings | None = None) -> list[str]:
        """Every secret of this instance (secret options, the proxy's password and Basic
        token) and of ``account`` (its password), revealed: what is masked in anything
        smshost keeps or logs of a send (an error a gateway echoes, say)."""
        values = [v for v in self.broker.options.values() if isinstance(v, Secret)]
        out = [_revealed(v) for v in values]
        if account is not None:
            out.append(_revealed(account.password))
        proxy = self.settings.proxy
        password = _revealed(proxy.password)
        if password:
            token = f"{proxy.login}:{password}".encode()
            out += [password, base64.b64encode(token).decode()]
        return [s for s in out if s]

    def all_account_values(self) -> list[dict[str, Any]]:
        cached: list[dict[str, Any]] | None = self.__dict__.get("_all_accounts")
        if cached is None:
            cached = self.__dict__["_all_accounts"] = [
                self.account_values(a) for a in self.accounts.values()]
        return cached

    def account_for_mo(self, fields: MoFields) -> AccountSettings | None:
        """The account an MO belongs to: by broker account id, by number, or the only one."""
        accounts = list(self.accounts.values())
        if fields.account:
            for account in accounts:
                if account.login == fields.account or account.id == fields.account:
                    return account
        if fields.to:
            to = normalize(fields.to, self.settings.region)
            for account in accounts:
                if account.local_address and normalize(account.local_address,
                                                       self.region(account)) == to:
                    return account
        return accounts[0] if accounts else None


def public_base(settings: Settings, port: int | None = None) -> str:
    """The base URL brokers reach this node at (no trailing slash).

    ``server.public_url`` when set; otherwise the URL of the listener on ``port`` (the
    API listener by default), which only suits a broker on the same network.
    """
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    listener = next((lst for lst in settings.listeners if lst.port == port),
                    settings.api_listener)
    scheme = "https" if listener.certfile else "http"
    host = "127.0.0.1" if listener.host in ("0.0.0.0", "::", "") else listener.host
    return f"{scheme}://{host}:{listener.port}"


def _revealed(secret: Secret | None) -> str:
    """``secret``'s value; "" for none, or one never resolved (so never sent either)."""
    try:
        return secret.reveal() if secret is not None else ""
    except SecretUnavailable:
        return ""


def build_instances(settings: Settings, types: Mapping[str, BrokerType],
                    failed: Mapping[str, str] | None = None,
                    ) -> tuple[dict[str, BrokerInstance], list[InstanceProblem]]:
    """Instances that can run, and the problems of those that cannot."""
    instances: dict[str, BrokerInstance] = {}
    problems: list[InstanceProblem] = []
    taken: dict[tuple[int, str], str] = {}
    for index, config in enumerate(settings.brokers):
        if config.config_problems:
            name = config.name or f"brokers[{index}]"
            problems += [InstanceProblem(name, p) for p in config.config_problems]
            continue
        builder = _Builder(settings, index, config)
        instance = builder.build(types, failed or {}, taken)
        if builder.problems:
            problems += [InstanceProblem(config.name, p) for p in builder.problems]
            continue
        assert instance is not None
        for path in (instance.mo_path, instance.receipt_path):
            if path is not None:
                taken.setdefault((instance.port, path), config.name)
        instances[config.name] = instance
    return instances, problems


def unsigned_warnings(instances: Mapping[str, BrokerInstance]) -> list[str]:
    """One line per instance whose definition signs its webhooks while no signature key
    is configured (``signature_keys`` gives none): its webhooks are accepted and read
    unsigned. Allowed (a test set-up, a broker behind a private network), but said by
    ``smshost check`` and in the log at start."""
    out = []
    for name, instance in instances.items():
        spec = instance.definition.signature
        if spec is None or not instance.settings.mo_active:
            continue
        try:
            if instance.broker.signature_keys(instance.all_account_values()):
                continue
        except Exception as exc:  # noqa: BLE001 - the adapter's code: said, not raised
            out.append(f"broker {name}: the adapter's signature_keys failed "
                       f"({type(exc).__name__}: {str(exc)[:200]}): its webhooks will be "
                       "answered 500")
            continue
        keys = " or ".join(t.source for t in (spec.key, spec.broker_key) if t is not None)
        out.append(f"broker {name}: {instance.definition.name} signs its webhooks "
                   f"({spec.scheme}) but no key is configured ({keys} is empty): "
                   "webhooks are accepted unsigned")
    return out


def outbound_route_problems(settings: Settings, instances: Mapping[str, BrokerInstance],
                            ) -> list[tuple[str, str]]:
    """(route name, ``file:line: key: what``) for outbound routes naming a broker or an
    account that is not running. The route stays in its place (the order means what it
    says); a send it matches is refused with the reason (422)."""
    configured = {b.name for b in settings.brokers}
    out = []
    for i, route in enumerate(settings.outbound):
        if route.broker is not None and route.broker not in instances:
            why = ("is not running: its configuration has a problem (listed with it)"
                   if route.broker in configured else "is not configured in brokers.toml")
            out.append((route.name, _located(settings, f"broker {route.broker!r} {why}",
                                             "outbound", i, "broker")))
        elif route.account is not None and not any(
                route.account in instance.accounts for instance in instances.values()
                if route.broker in (None, instance.name)):
            out.append((route.name, _located(
                settings, f"no running broker has an account {route.account!r}"
                + (f" (looked in {route.broker!r})" if route.broker else ""),
                "outbound", i, "account")))
    return out


def _located(settings: Settings, message: str, *path: str | int) -> str:
    """``file:line: key: message`` for the setting at ``path``."""
    file, line = settings.where(*path)
    where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
    return f"{where}{key_text(path)}: {message}"


class _Builder:
    def __init__(self, settings: Settings, index: int, config: BrokerSettings) -> None:
        self.settings = settings
        self.index = index
        self.config = config
        self.problems: list[str] = []

    def problem(self, message: str, *key: str | int) -> None:
        self.problems.append(_located(self.settings, message, "brokers", self.index, *key))

    def build(self, types: Mapping[str, BrokerType], failed: Mapping[str, str],
              taken: dict[tuple[int, str], str]) -> BrokerInstance | None:
        c = self.config
        btype = types.get(c.definition)
        if btype is None:
            reason = failed.get(c.definition)
            self.problem(f"broker definition {c.definition!r} failed to load: {reason}"
                         if reason else f"no broker definition named {c.definition!r}; "
                         f"known: {', '.join(sorted(types)) or 'none'}", "definition")
            return None
        definition = btype.definition
        if c.profile is not None and c.profile not in definition.profiles:
            self.problem(f"definition {definition.name!r} has no profile {c.profile!r}; "
                         f"profiles: {', '.join(definition.profiles) or 'none'}", "profile")
            return None
        definition = definition.with_profile(c.profile)
        for key in c.options:
            if key not in definition.options:
                self.problem(f"option {key!r} is not declared by {definition.name}; options: "
                             f"{', '.join(definition.options) or 'none'}", "options")
        if not c.accounts:
            self.problem("a broker needs at least one [[brokers.accounts]]", "accounts")
        port = c.mo.port if c.mo.port is not None else self.settings.api_listener.port
        mo_path, receipt_path = self._paths(definition, port, taken)
        self._schemes(definition, port)
        if self.problems:
            return None
        broker_values = self._broker_values(definition, port, mo_path, receipt_path)
        try:  # the adapter's code runs here: whatever it raises is this instance's problem
            broker = btype.cls(definition, name=c.name, options=dict(c.options),
                               broker_values=broker_values,
                               attrs={**self.settings.attrs, **c.attrs})
            instance = BrokerInstance(c, definition, broker, port, mo_path, receipt_path,
                                      {a.id: a for a in c.accounts})
            self._signature_keys(instance)
        except Exception as exc:  # noqa: BLE001 - one broker's failure, never a crash
            self.problem(f"broker {c.name!r} could not be set up with definition "
                         f"{definition.name!r}: {type(exc).__name__}: {str(exc)[:200]}",
                         "definition")
            return None
        return None if self.problems else instance

    def _signature_keys(self, instance: BrokerInstance) -> None:
        spec = instance.definition.signature
        check = KEY_CHECKS.get(spec.scheme) if spec is not None else None
        if spec is None or check is None or not self.config.mo_active:
            return
        refs = [p.namespace for p in spec.key.parts if isinstance(p, Ref)]
        where = "accounts" if "account" in refs else "options"
        for key in instance.broker.signature_keys(instance.all_account_values()):
            problem = check(key)
            if problem:
                self.problem(f"the {spec.scheme} signature key ({spec.key.source}) {problem}; "
                             "no webhook could be verified", where)

    def _paths(self, definition: BrokerDefinition, port: int,
               taken: Mapping[tuple[int, str], str]) -> tuple[str | None, str | None]:
        c = self.config
        if not any(lst.port == port for lst in self.settings.listeners):
            self.problem(f"no listener on port {port}; add a [[listeners]] table with "
                         f"port = {port}", "mo", "port")
        mo_path = c.mo.path or definition.defaults.incoming_path or None
        receipt_path = c.mo.receipt_path or definition.defaults.receipt_path or None
        if definition.mo is None:
            mo_path = None
        elif mo_path is None:
            self.problem("the definition gives no incoming path; set mo.path", "mo", "path")
        if definition.receipt is None:
            receipt_path = None
        for key, path in (("path", mo_path), ("receipt_path", receipt_path)):
            if path is not None and (port, path) in taken:
                self.problem(f"path {path} on port {port} is already used by broker "
                             f"{taken[(port, path)]!r}; give each broker its own path",
                             "mo", key)
        return mo_path, receipt_path

    def _schemes(self, definition: BrokerDefinition, port: int) -> None:
        c = self.config
        scheme = c.encryption
        gateway = c.mt.gateway or definition.defaults.gateway
        if c.mt_active and definition.mt is not None and gateway \
                and "{" not in gateway and not gateway.startswith(f"{scheme}://"):
            self.problem(f"encryption is {scheme!r} but MT goes to {gateway}; MO and MT "
                         "must use the same scheme", "encryption")
        if c.mo_active and definition.mo is not None and not (
                self.settings.server.trusted_proxies and not self.settings.server.public_url):
            # (behind trusted proxies the scheme is only known per request)
            mo_scheme = self._mo_scheme(port)
            if mo_scheme != scheme:
                self.problem(f"encryption is {scheme!r} but MO arrives over {mo_scheme} "
                             f"(listener on port {port}); MO and MT must use the same scheme: "
                             "set certfile/keyfile on the listener or server.public_url",
                             "encryption")

    def _mo_scheme(self, port: int) -> str:
        public = self.settings.server.public_url
        if public:
            return public.split("://", 1)[0]
        listener = next((lst for lst in self.settings.listeners if lst.port == port), None)
        return "https" if listener is not None and listener.certfile else "http"

    def _broker_values(self, definition: BrokerDefinition, port: int, mo_path: str | None,
                       receipt_path: str | None) -> dict[str, str]:
        c = self.config
        base = public_base(self.settings, port)
        return {
            "name": c.name,
            "gateway": (c.mt.gateway or definition.defaults.gateway or base).rstrip("/"),
            "outgoing_path": c.mt.path or definition.defaults.outgoing_path,
            "incoming_path": mo_path or "",
            "receipt_path": receipt_path or "",
            "public_url": base,
            "mo_url": f"{base}{mo_path}" if mo_path else "",
            "receipt_url": f"{base}{receipt_path}" if receipt_path else "",
        }
