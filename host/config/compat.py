"""The gateway-compatible send APIs (issue 16 points 4 and 5): Kannel's
``/cgi-bin/sendsms`` and Jasmin's ``/send`` and ``/rate`` (host.compat), off unless
enabled, and the delivery of their status callbacks (``dlr-url``). Part of the settings
declared in host.config.settings (``[compat]`` of smshost.toml)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from host.config.callbacks import host_pattern
from host.config.lines import KeyPath
from host.config.schema import between, greater_than, setting


def a_path(value: Any) -> str | None:
    """A URL path outside /api: starts with ``/``, no query, no spaces."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 200:
        return f"must be a path starting with / (at most 200 characters); got {value!r}"
    if any(c in value for c in "?# \t\r\n") or value == "/api" or value.startswith("/api/"):
        return f"must be a plain path outside /api, without query or spaces; got {value!r}"
    return None


def a_prefix(value: Any) -> str | None:
    """A path prefix: empty (the root) or a path not ending in /."""
    if value == "":
        return None
    return a_path(value) or (f"must not end with /; got {value!r}"
                             if str(value).endswith("/") else None)


@dataclass(frozen=True, slots=True)
class KannelSettings:
    """Kannel's sendsms interface (docs/migrating.md)."""

    enabled: bool = setting(False, help="Answer Kannel's sendsms requests on `path`.")
    path: str = setting("/cgi-bin/sendsms", help="The sendsms path (Kannel's "
                        "`sendsms-url`).", check=a_path)
    listener: str | None = setting(
        None, help="Name of the listener serving it; unset: the API listener. A listener "
        "of its own (e.g. port 13013, Kannel's `sendsms-port`) lets applications keep "
        "their port too.")


@dataclass(frozen=True, slots=True)
class JasminSettings:
    """Jasmin's HTTP API (docs/migrating.md)."""

    enabled: bool = setting(False, help="Answer Jasmin's /send and /rate under `prefix`.")
    prefix: str = setting("", help="Path prefix of /send and /rate (empty: the root, as "
                          "Jasmin serves them).", check=a_prefix)
    listener: str | None = setting(
        None, help="Name of the listener serving them; unset: the API listener. A listener "
        "of its own (e.g. port 1401, Jasmin's) lets applications keep their port too.")


@dataclass(frozen=True, slots=True)
class CompatSettings:
    """Gateway-compatible send APIs and their status callbacks."""

    kannel: KannelSettings = setting(factory=KannelSettings, help="Kannel's sendsms.")
    jasmin: JasminSettings = setting(factory=JasminSettings, help="Jasmin's HTTP API.")
    callback_attempts: int = setting(
        6, help="Attempts of one status callback (a dlr-url) before it is given up "
        "(1 to 50).", check=between(1, 50))
    callback_first_delay: float = setting(
        10.0, help="Seconds before the first retry of a failed callback; doubled at each "
        "next one, at most `callback_max_delay`.", check=greater_than(0, 86400))
    callback_max_delay: float = setting(
        600.0, help="Longest wait between two attempts of a callback (seconds).",
        check=greater_than(0, 86400))
    callback_timeout: float = setting(
        10.0, help="Seconds a callback request may take.", check=greater_than(0, 300))
    allowed_hosts: tuple[str, ...] = setting(
        (), help='Hosts a dlr-url may name, as `[callbacks] allowed_hosts` (which applies '
        'when this is empty, the default); ["*"] alone: any host (the operator trusts '
        "every application with the send scope). Others are refused at the send and at "
        "each delivery.", doc_default="[]")
    allow_private: bool | None = setting(
        None, help="Allow dlr-urls to loopback, private and other non-public addresses; "
        "unset: as `[callbacks] allow_private`.")

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        if "*" in self.allowed_hosts:
            if len(self.allowed_hosts) > 1:
                yield ("allowed_hosts",), '"*" (any host) stands alone'
            return
        for n, value in enumerate(self.allowed_hosts):
            problem = host_pattern(value)
            if problem:
                yield ("allowed_hosts", n), problem

    def unknown_listeners(self, listeners: tuple[str, ...]
                          ) -> Iterator[tuple[KeyPath, str]]:
        for name, part in (("kannel", self.kannel), ("jasmin", self.jasmin)):
            if part.listener is not None and part.listener not in listeners:
                yield (("compat", name, "listener"), f"no listener named {part.listener!r} (the "
                       f"listeners: {', '.join(listeners)})")
