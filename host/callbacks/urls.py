"""Which status callback URLs smshost will POST to (SSRF guard).

A URL is checked twice: when the send names it (:func:`refusal`: http or https, a host
``[callbacks] allowed_hosts`` allows, and no literal non-public address unless
``allow_private``), and on each delivery, where the addresses its name resolves to are
checked again (:func:`address_refusal`, used by the worker's resolver), so a name that
an attacker points at 127.0.0.1 or 10.0.0.1 after the check is refused all the same.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from host.config.callbacks import CallbackSettings
from host.config.compat import CompatSettings

MAX_URL = 2000


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """``host`` (lower case, no brackets) matches one of ``allowed``: the same host, or
    ``*.domain`` and a subdomain of it (not the domain itself)."""
    for pattern in allowed:
        if pattern == "*":  # [compat] allowed_hosts = ["*"], set by the operator
            return True
        pattern = pattern.lower().strip("[]").rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def address_refusal(address: str) -> str | None:
    """Why ``address`` (an IP address) is not a public one, or None."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            address.split("%", 1)[0])
    except ValueError:
        try:  # 2130706433, 0177.0.0.1, 127.1: what the resolver reads as 127.0.0.1
            ip = ipaddress.IPv4Address(socket.inet_aton(address))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return f"{address} is a loopback address"
    if not ip.is_global or ip.is_multicast:
        return f"{address} is a private or reserved address"
    return None


def refusal(url: str, settings: CallbackSettings) -> str | None:
    """Why a send may not name ``url`` as its status callback, or None."""
    return url_refusal(url, settings.allowed_hosts, settings.allow_private, "[callbacks]",
                       "[callbacks]")


def dlr_rules(callbacks: CallbackSettings, compat: CompatSettings
              ) -> tuple[tuple[str, ...], bool, str, str]:
    """The hosts and private addresses a dlr-url may name: ``[compat]``'s when set,
    else ``[callbacks]``'s (and where each is set, for the refusals)."""
    hosts, hosts_at = ((compat.allowed_hosts, "[compat]") if compat.allowed_hosts
                       else (callbacks.allowed_hosts, "[callbacks]"))
    private, private_at = ((callbacks.allow_private, "[callbacks]")
                           if compat.allow_private is None
                           else (compat.allow_private, "[compat]"))
    return hosts, private, hosts_at, private_at


def dlr_refusal(url: str, callbacks: CallbackSettings, compat: CompatSettings) -> str | None:
    """Why a Kannel or Jasmin send may not name ``url`` as its dlr-url, or None (its
    credentials, if any, are the application's: Kannel passes them on)."""
    return url_refusal(url, *dlr_rules(callbacks, compat), credentials=True)


def url_refusal(url: str, allowed: tuple[str, ...], allow_private: bool, hosts_at: str,
                private_at: str, *, credentials: bool = False) -> str | None:
    """Why ``url`` may not be called back, or None."""
    if len(url) > MAX_URL:
        return f"at most {MAX_URL} characters"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        # urlsplit drops tabs and line ends, a dlr-url is sent as written: refused
        return "must not contain spaces or control characters (percent-encode them)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "must name a host"
    if not credentials and (parts.username is not None or parts.password is not None):
        return "must not carry credentials (the callbacks are signed instead)"
    if not host_allowed(host, allowed):
        return (f"host {host!r} is not allowed ({hosts_at} allowed_hosts: "
                f"{', '.join(allowed) or 'none'})")
    if not allow_private:
        problem = address_refusal(host)
        if problem:
            return f"{problem} ({private_at} allow_private is false)"
    return None
