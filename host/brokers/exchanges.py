"""What is kept of a broker exchange with its message (host.ledger.Exchange): an MO's
webhook as the broker sent it, an MT's request and the broker's answer.

Kept for the admin's message page (issue 15 point 4), so bounded and masked when it is
built, before it is stored: each body and URL at most :data:`MAX_TEXT` characters;
headers that carry credentials (authorization, cookies, signatures, API keys) masked
whole; form fields and query parameters named like a password masked; and every secret
of the broker instance and account (host.config.secrets.redact) wherever it appears.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from host.brokers.http import InboundRequest, MtRequest, MtResponse
from host.config.secrets import MASK, redact
from host.ledger import Exchange

MAX_TEXT = 8192
"""Characters kept of a body or URL (the rest cut, and said so)."""
MAX_HEADERS = 50
SECRET_HEADERS = ("authorization", "cookie", "signature", "token", "secret", "api-key",
                  "apikey", "password", "x-auth")
_SECRET_FIELDS = re.compile(
    r"(?i)((?:^|[?&;\s\"'])(?:password|passwd|pass|pwd|secret|token|auth_token|api_?key|"
    r"apisecret|api_secret|key)(?:\"?\s*[:=]\s*\"?))([^&\"'\s,}]*)")

_FIELD_WORDS = ("pass", "pwd", "secret", "token", "key")


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` (lower-case names), those that carry a credential masked, at most
    :data:`MAX_HEADERS` of them."""
    out = {}
    for name, value in islice(headers.items(), MAX_HEADERS):
        lowered = name.lower()
        out[lowered] = MASK if _secret_header(lowered) else _bounded(value, 1024)
    return out


@functools.lru_cache(maxsize=1024)
def _secret_header(lowered: str) -> bool:
    """Whether header ``lowered`` carries a credential (asked for every header of every
    MO kept: the names repeat, so the answer is kept; ~1 us a header otherwise)."""
    return any(word in lowered for word in SECRET_HEADERS)


def masked_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` bounded, its password-like fields and every secret masked."""
    cut = len(text) > MAX_TEXT
    text = text[:MAX_TEXT]
    lowered = text.lower()
    if any(word in lowered for word in _FIELD_WORDS):  # the regex costs; most have none
        text = _SECRET_FIELDS.sub(lambda m: m.group(1) + (MASK if m.group(2) else ""), text)
    text = redact(text, secrets)
    return text + f"… (cut at {MAX_TEXT} characters)" if cut else text


def webhook(inbound: InboundRequest, secrets: Iterable[str]) -> Exchange:
    """An MO's webhook as kept with its message."""
    secrets = list(secrets)
    return Exchange("webhook", {
        "method": inbound.method, "url": masked_text(inbound.url, secrets),
        "headers": masked_headers(inbound.headers),
        "body": masked_text(inbound.body.decode("utf-8", "replace"), secrets)})


def mt(request: MtRequest, response: MtResponse | None, secrets: Iterable[str]) -> Exchange:
    """A send's request and the broker's answer (None: no answer came)."""
    secrets = [*secrets, *request.secrets]
    answer: dict[str, Any] | None = None
    if response is not None:
        answer = {"status": response.status, "headers": masked_headers(response.headers),
                  "body": masked_text(response.text, secrets)}
    return Exchange("mt", {
        "method": request.method, "url": masked_text(request.url, secrets),
        "headers": masked_headers(request.headers),
        "body": masked_text(request.body.decode("utf-8", "replace"), secrets)}, answer)


def _bounded(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size] + "…"
