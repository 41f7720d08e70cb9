"""The webhook sink's settings (``[webhook]`` of ``config/sinks.toml``) and its retry
schedule."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from host.api import DAY, HOUR, Secret, at_least, greater_than, grown, is_decimal, setting

if TYPE_CHECKING:
    pass



SIGNATURE_HEADER = "X-Smshost-Signature"
DELIVERY_HEADER = "X-Smshost-Delivery"
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host",
                              SIGNATURE_HEADER.lower(), DELIVERY_HEADER.lower()})
ERROR_BODY_CHARS = 300  # of a refusing receiver's answer, kept as the error text
RESPONSE_READ_LIMIT = 65536  # bytes of a response read (the rest is dropped)
IDLE_WAKEUP = 60.0  # seconds the worker sleeps at most without news
STATUSES = ("pending", "delivered", "dead")


# -- settings ---------------------------------------------------------------------------

def http_url(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) URL a webhook can be posted to, or None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc}): {value!r}"
    if parts.scheme not in ("http", "https"):
        return f"must be an http:// or https:// URL; got {value!r}"
    if not parts.hostname:
        return f"must name a host; got {value!r}"
    if parts.fragment:
        return f"must not have a #fragment; got {value!r}"
    return None


def _fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be from 0 to 1; got {value!r}"


@dataclass(frozen=True, slots=True)
class TargetSettings:
    """One webhook target (``[webhook.targets.NAME]``); a route names it in ``target``."""

    url: str = setting(help="The http:// or https:// URL the JSON is POSTed to.",
                       check=http_url)
    secret: Secret = setting(
        help='Key of the HMAC-SHA256 signature (X-Smshost-Signature); a string, '
        '{ env = "NAME" } or { file = "PATH" }.')
    headers: dict[str, str] = setting(
        factory=dict, help="Extra request headers (e.g. an API key of the receiver).")
    timeout: float = setting(10.0, help="Seconds one POST may take (connect, send, answer); "
                             "then it is retried (at most an hour).",
                             check=greater_than(0, HOUR))

    def secrets(self) -> list[str]:
        """What is masked in a delivery's error: the signing secret, the extra headers'
        values (an API key of the receiver) and a password in the URL."""
        password = urlsplit(self.url).password
        return [self.secret.reveal(), *self.headers.values(), *([password] if password else [])]

    def problems(self) -> Iterator[tuple[tuple[str, ...], str]]:
        if not self.secret:
            yield ("secret",), "the signing secret must not be empty"
        for name in self.headers:
            if name.lower() in RESERVED_HEADERS:
                yield ("headers", name), f"header {name!r} is set by smshost itself"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The ``[webhook]`` table of ``config/sinks.toml``."""

    targets: dict[str, TargetSettings] = setting(
        factory=dict, help="Named targets ([webhook.targets.NAME] tables).")
    default_target: str = setting(
        "", help="The target of routes that name none (empty: such routes are an error).")
    status_target: str = setting(
        "", help="Target that receives every status change of outbound messages (queued, "
        "sent, delivered, failed...) as a JSON event (empty: none).")
    max_attempts: int = setting(10, help="Attempts before a delivery becomes a dead letter "
                                "(at most 1000).", check=at_least(1, 1000))
    first_delay: float = setting(2.0, help="Seconds before the first retry (at most a day).",
                                 check=greater_than(0, DAY))
    factor: float = setting(2.0, help="Each further retry waits this many times longer (at "
                            "most 100).", check=at_least(1, 100))
    max_delay: float = setting(900.0, help="Longest wait between two attempts (seconds, at "
                               "most a day).", check=greater_than(0, DAY))
    jitter: float = setting(0.2, help="Random spread of each wait, as a fraction of it (0.2: "
                            "+/-20%), so receivers coming back are not hit all at once.",
                            check=_fraction)
    max_retry_after: float = setting(
        3600.0, help="Longest Retry-After (seconds) of a 429 or 503 answer that is honoured "
        "(at most a day).", check=at_least(0, DAY))
    max_in_flight: int = setting(32, help="POSTs under way at the same time (all targets; "
                                 "at most 10000).", check=at_least(1, 10_000))
    stop_grace: float = setting(
        5.0, help="At shutdown, seconds POSTs under way may take to finish; the others are "
        "sent again after the restart (at most an hour).", check=at_least(0, HOUR))

    def problems(self) -> Iterator[tuple[tuple[str, ...], str]]:
        if self.status_target and self.status_target not in self.targets:
            yield ("status_target",), (f"no target named {self.status_target!r}; targets: "
                                       f"{', '.join(sorted(self.targets)) or 'none'}")
        if self.default_target and self.default_target not in self.targets:
            yield ("default_target",), (f"no target named {self.default_target!r}; targets: "
                                        f"{', '.join(sorted(self.targets)) or 'none'}")
        if self.max_delay < self.first_delay:
            yield ("max_delay",), (f"must be at least first_delay ({self.first_delay:g}); "
                                   f"got {self.max_delay:g}")


def backoff(settings: WebhookSettings, failed_attempts: int,
            rand: random.Random | None = None) -> float:
    """Seconds to wait after the ``failed_attempts``-th failed attempt (1 = the first)."""
    base = grown(settings.first_delay, settings.factor, failed_attempts - 1,
                 settings.max_delay)
    if settings.jitter:
        base *= 1 + (rand or random).uniform(-settings.jitter, settings.jitter)
    return max(0.0, min(settings.max_delay, base))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    if is_decimal(value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)
