"""One attempt of one queued callback, whatever its kind: the request as the row holds
it (a ``status`` callback gets its ``delivery_id`` and signature here, at the time it
is sent), the answer judged by one rule for every kind: 2xx delivered; a network
error, a timeout, 5xx or 429 tried again after ``first_delay * factor ** n`` (at most
``max_delay``; a Retry-After in seconds honoured within it); a redirect, any other
answer or the last of ``max_attempts`` dead. Only the numbers differ by kind: the
``[callbacks]`` settings for ``status``, ``[compat] callback_*`` for ``kannel`` and
``jasmin`` (:func:`policy_of`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from host.backoff import grown
from host.signing import DELIVERY_HEADER, SIGNATURE_HEADER, signature

if TYPE_CHECKING:
    from host.config.callbacks import CallbackSettings
    from host.config.compat import CompatSettings

ERROR_CHARS = 300


class AddressRefused(OSError):
    """A callback's host resolves to an address that is not public."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The retry numbers of one kind of callback."""

    max_attempts: int
    first_delay: float
    factor: float
    max_delay: float
    timeout: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended: ``delivered``, ``retry`` (at ``next_at``) or ``dead``."""

    outcome: str
    http_status: int | None
    error: str | None
    next_at: float | None = None


def policy_of(kind: str, callbacks: CallbackSettings, compat: CompatSettings) -> Policy:
    if kind == "status":
        return Policy(callbacks.max_attempts, callbacks.first_delay, callbacks.factor,
                      callbacks.max_delay, callbacks.timeout)
    return Policy(compat.callback_attempts, compat.callback_first_delay, 2.0,
                  compat.callback_max_delay, compat.callback_timeout)


def request_of(row: dict[str, Any], secret: str) -> tuple[URL, dict[str, str], bytes | None]:
    """What to send for ``row``: the URL (a dlr-url as filled, not normalised: its
    encoding is the application's), headers and body."""
    headers: dict[str, str] = json.loads(row["headers"] or "{}")
    body = row["body"].encode() if row["body"] is not None else None
    if row["kind"] != "status":
        return URL(row["url"], encoded=True), headers, body
    assert body is not None
    body = f'{{"delivery_id":{row["id"]:d},'.encode() + body[1:]
    headers.update({DELIVERY_HEADER: str(row["id"]),
                    SIGNATURE_HEADER: signature(secret, int(time.time()), body)})
    return URL(row["url"]), headers, body


async def attempt(session: aiohttp.ClientSession, row: dict[str, Any], policy: Policy,
                  secret: str, now: float) -> Outcome:
    """Send ``row`` once and judge the answer (``now``: the worker's clock)."""
    url, headers, body = request_of(row, secret)
    status: int | None = None
    retry_after: float | None = None
    try:
        async with session.request(
                row["method"], url, data=body, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=policy.timeout)) as answer:
            status = answer.status
            text = (await answer.content.read(ERROR_CHARS)).decode("utf-8", "replace")
            retry_after = seconds(answer.headers.get("Retry-After"))
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, AddressRefused):
            return Outcome("dead", None, f"refused: {exc.os_error}")
        error = f"cannot connect: {exc.os_error or exc}"
    except TimeoutError:
        error = f"no answer within {policy.timeout:g} s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    else:
        if 200 <= status < 300:
            return Outcome("delivered", status, None)
        error = f"HTTP {status}" + (f": {text.strip()}" if text.strip() else "")
    return judged(row["attempts"], policy, status, error, retry_after, now)


def judged(attempts: int, policy: Policy, status: int | None, error: str,
           retry_after: float | None, now: float) -> Outcome:
    """A failed attempt (the ``attempts + 1``-th): retried, or dead."""
    retryable = status is None or status >= 500 or status == 429
    if status is not None and 300 <= status < 400:
        error += " (redirects are not followed)"
    if not retryable or attempts + 1 >= policy.max_attempts:
        return Outcome("dead", status, error)
    delay = grown(policy.first_delay, policy.factor, attempts, policy.max_delay)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    return Outcome("retry", status, error, now + delay)


def seconds(value: str | None) -> float | None:
    """A Retry-After of delta seconds (a date is ignored: the backoff stands)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip()[:9])
