"""Settings of configured broker instances, ``config/brokers.toml`` (SPEC B5).

Checks that need the broker definitions (does the definition exist, which paths does it
default to, are the options declared) run once plugins are loaded, in
``host.brokers.instances``; the rest run here when the file is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from host.config.lines import KeyPath
from host.config.schema import DAY, HOUR, a_name, at_least, greater_than, port_number, setting
from host.config.secrets import Secret


def _region(value: str) -> str | None:
    if value == "" or (len(value) == 2 and value.isalpha() and value.isupper()):
        return None
    return f'must be a two-letter ISO country code such as "US" or "GB"; got {value!r}'


def _account_id(value: str) -> str | None:
    """An account id is one segment of the admin's and the API's paths
    (``/brokers/NAME/accounts/ID``): a ``/`` or a dot segment would name another page."""
    if value.strip() in ("", ".", "..") or "/" in value or "\\" in value:
        return f"must be a name without / or \\, and not empty, . or ..; got {value!r}"
    return None


def _broker_name(value: str) -> str | None:
    """A broker's name is a name (:func:`a_name`) and, like an account id, one segment of
    the admin's and the API's paths (``/brokers/NAME``)."""
    return a_name(value) or _account_id(value)


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """One account (credentials and number) at a broker."""

    id: str = setting(help="Account id, unique within the broker.", check=_account_id)
    login: str = setting("", help="Login, account SID, API key or user name at the broker.")
    password: Secret | None = setting(
        None, help="Password, auth token or API secret. Usually an environment reference.")
    local_address: str | None = setting(
        None, help="The account's own number or sender id. Used when an MO names no "
        "recipient, and as the sender of outbound messages. Unique within the broker.")
    region: str = setting(
        "", help="Country (ISO 3166 alpha-2) for reading national numbers; default: the "
        "broker's region.", check=_region)
    attrs: dict[str, str] = setting(factory=dict, help="Custom attributes, visible to handlers.",
                                    doc_default="{}")
    opt_out: bool = setting(True, help="Handle STOP/START/HELP keywords for this account "
                            "(routes.toml [optout]).")


@dataclass(frozen=True, slots=True)
class BrokerMoSettings:
    """Inbound (MO) webhooks and delivery receipts."""

    enabled: bool = setting(True, help="Accept MO and delivery receipts.")
    port: int | None = setting(
        None, help="Listener port the broker calls; default: the API listener's port.",
        check=port_number)
    path: str | None = setting(None, help="MO path; default: the definition's incoming path.")
    receipt_path: str | None = setting(
        None, help="Delivery receipt path; default: the definition's receipt path.")
    concat_timeout: float = setting(
        300.0, help="Seconds to wait for the missing parts of a concatenated MO before "
        "delivering what arrived, marked incomplete (at most a day).",
        check=greater_than(0, DAY))

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        for key in ("path", "receipt_path"):
            value = getattr(self, key)
            if value is not None and not value.startswith("/"):
                yield (key,), f"a path starts with '/'; got {value!r}"


@dataclass(frozen=True, slots=True)
class BrokerMtSettings:
    """Outbound (MT) sending."""

    enabled: bool = setting(True, help="Send outbound messages through this broker.")
    gateway: str | None = setting(None, help="Base URL of the broker's API; default: the "
                                  "definition's gateway.")
    path: str | None = setting(None, help="Outgoing path; default: the definition's.")
    timeout: float = setting(60.0, help="Seconds before a send attempt times out (at most "
                             "an hour).", check=greater_than(0, HOUR))
    internationalize: bool = setting(
        True, help="Send numbers in E.164 (+CC...) form.")
    parsing: Literal["none", "split", "truncate"] = setting(
        "none", help="Long messages: none sends them as they are (the broker concatenates), "
        "split sends one message per segment, in order (each once the broker accepted "
        "the one before), truncate cuts to one segment.")
    rate: float = setting(0.0, help="Messages per second per account; 0 means no limit "
                          "(at most 100000).", check=at_least(0, 100_000))
    consolidate: bool = setting(
        False, help="Merge a new message into one still waiting to the same number from "
        "the same account when the result still fits one segment.")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """HTTP proxy for outbound requests."""

    address: str | None = setting(
        None, help="Proxy host and port (proxy.local:3128) or URL (http://proxy.local:3128; "
        "https:// connects to the proxy over TLS).")
    login: str = setting("", help="Proxy user (sent as Proxy-Authorization: Basic).")
    password: Secret | None = setting(None, help="Proxy password.")
    ssl: bool = setting(False, help="Connect to the proxy itself over TLS (the same as an "
                        "https:// address).")

    @property
    def url(self) -> str | None:
        """The proxy's URL, its scheme from ``address`` or else from ``ssl``."""
        if not self.address:
            return None
        if "://" in self.address:
            return self.address
        return f"{'https' if self.ssl else 'http'}://{self.address}"

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        if self.address is None:
            if self.login or self.password is not None:
                yield ("address",), "proxy login or password set, but no proxy address"
            return
        url = self.url or ""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port, parts = None, parts._replace(netloc="")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            yield ("address",), (f"expected host:port or an http:// or https:// URL; got "
                                 f"{self.address!r}")
        elif parts.path not in ("", "/") or parts.query or parts.fragment:
            yield ("address",), f"a proxy address has no path or query; got {self.address!r}"
        elif port is None and "://" not in self.address:
            yield ("address",), f"no port in {self.address!r}; write host:port"
        elif self.ssl and parts.scheme == "http":
            yield ("ssl",), (f"ssl = true but the address is {self.address!r}; write "
                             "https:// (or leave the scheme out)")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """One configured broker instance."""

    name: str = setting(help="Instance name, unique; stored with every message.",
                        check=_broker_name)
    definition: str = setting(help="Broker definition (XML) name, e.g. twilio.")
    profile: str | None = setting(None, help="Profile of the definition to use.")
    enabled: bool = setting(True, help="Master switch: false turns MO and MT off whatever "
                            "their own switches say.")
    encryption: Literal["http", "https"] = setting(
        "https", help="Scheme of MO and MT alike: MT gateway URLs and the MO listener (or "
        "server.public_url) must use it.")
    region: str = setting("US", help="Default country for reading national numbers.",
                          check=_region)
    options: dict[str, Secret] = setting(
        factory=dict, help="Values of the definition's declared options; secret ones may "
        "be environment references.", doc_default="{}")
    attrs: dict[str, str] = setting(factory=dict, help="Custom attributes, visible to "
                                    "handlers and broker templates as {attrs.NAME}.",
                                    doc_default="{}")
    accounts: tuple[AccountSettings, ...] = setting(
        (), help="Accounts ([[brokers.accounts]]).", doc_default="[]")
    mo: BrokerMoSettings = setting(factory=BrokerMoSettings, help="Inbound.")
    mt: BrokerMtSettings = setting(factory=BrokerMtSettings, help="Outbound.")
    proxy: ProxySettings = setting(factory=ProxySettings, help="Proxy.")
    config_problems: tuple[str, ...] = field(default=(), compare=False, repr=False,
                                             metadata={"internal": True})
    """Problems of this instance's own table (``file:line: key: what``), found when the
    file was read; an instance with any is not started, the others run."""

    @property
    def mo_active(self) -> bool:
        return self.enabled and self.mo.enabled

    @property
    def mt_active(self) -> bool:
        return self.enabled and self.mt.enabled

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        ids: set[str] = set()
        numbers: dict[str, str] = {}
        for i, account in enumerate(self.accounts):
            if account.id in ids:
                yield ("accounts", i, "id"), f"account id {account.id!r} is used twice"
            ids.add(account.id)
            number = account.local_address
            if number is not None:
                if number in numbers:
                    yield ("accounts", i, "local_address"), (
                        f"local address {number} is already used by account {numbers[number]!r}")
                numbers.setdefault(number, account.id)
        gateway = self.mt.gateway
        if gateway is not None and not gateway.startswith(f"{self.encryption}://"):
            yield ("mt", "gateway"), (f"encryption is {self.encryption!r} but the gateway is "
                                      f"{gateway!r}; MO and MT must use the same scheme")


def broker_problems(brokers: tuple[BrokerSettings, ...]) -> Iterator[tuple[KeyPath, str]]:
    names: set[str] = set()
    for i, broker in enumerate(brokers):
        if broker.name in names:
            yield ("brokers", i, "name"), f"broker name {broker.name!r} is used twice"
        names.add(broker.name)
