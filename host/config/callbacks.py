"""Per-message status callbacks (``[callbacks]`` of smshost.toml; host.callbacks): which
URLs a send may name, how they are signed, and how their deliveries are retried."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from host.config.lines import KeyPath
from host.config.schema import DAY, HOUR, at_least, greater_than, setting
from host.config.secrets import Secret


def host_pattern(value: str) -> str | None:
    """Why ``value`` is not a host name, ``*.domain`` or IP address, or None."""
    name = value.removeprefix("*.")
    if not name or "/" in name or ":" in name.strip("[]") and not _is_ip(name.strip("[]")):
        return f"must be a host name, *.domain or an IP address; got {value!r}"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    """Status callbacks: a send's ``status_callback`` URL, POSTed each status change."""

    allowed_hosts: tuple[str, ...] = setting(
        (), help='Hosts a status_callback URL may name: "example.com" (that host), '
        '"*.example.org" (its subdomains), or an IP address. Default: none, so every '
        "status_callback is refused (400) until the operator allows its host.",
        doc_default="[]")
    allow_private: bool = setting(
        False, help="Allow callbacks to loopback, private, link-local and other "
        "non-public addresses (checked in the URL and again on each resolution of its "
        "name, so a name that resolves to one is refused too). Keep false unless the "
        "receivers are on your own network.")
    secret: Secret | None = setting(
        None, help="Key of the HMAC-SHA256 signature of every callback "
        "(X-Smshost-Signature, as the webhook sink signs); usually "
        '{ env = "SMSHOST_CALLBACK_SECRET" }. Required once allowed_hosts names a host.')
    max_attempts: int = setting(8, help="Attempts before a callback is a dead letter (at "
                                "most 100).", check=greater_than(0, 100))
    first_delay: float = setting(5.0, help="Seconds before the first retry; each next one "
                                 "waits `factor` times longer (at most an hour).",
                                 check=greater_than(0, HOUR))
    factor: float = setting(2.0, help="Backoff factor between retries (at most 100).",
                            check=at_least(1, 100))
    max_delay: float = setting(600.0, help="Longest wait between two attempts (at most a "
                               "day).", check=greater_than(0, DAY))
    timeout: float = setting(10.0, help="Seconds a receiver has to answer (at most 300).",
                             check=greater_than(0, 300))
    max_in_flight: int = setting(16, help="Callbacks under way at once (at most 1000).",
                                 check=greater_than(0, 1000))

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        for n, value in enumerate(self.allowed_hosts):
            problem = host_pattern(value)
            if problem:
                yield ("allowed_hosts", n), problem
        if self.allowed_hosts and self.secret is None:
            yield ("secret",), ("needed once allowed_hosts names a host: every callback "
                                "is signed with it")
