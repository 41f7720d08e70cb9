"""Webhook signature schemes brokers use (SPEC B4), selected by ``<signature scheme>``.

Each scheme checks one request against candidate keys (one per configured account, or
one option value) and raises :class:`SignatureError` (401: no signature; 403: wrong or
stale) when none matches. Comparisons are constant-time.

* ``twilio``: ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + sorted form
  fields name+value)); JSON bodies are signed through the URL's ``bodySHA256``.
* ``vonage``: ``sig`` parameter over ``&key=value`` of the other parameters, sorted;
  ``algorithm`` md5hash (default), md5, sha1, sha256 or sha512 (HMAC); ``timestamp``
  required and checked against ``tolerance`` (Vonage retries for 24 hours with the
  first attempt's timestamp, so its definition allows 25 hours).
* ``plivo-v3``: ``X-Plivo-Signature-V3`` or ``-Ma-V3`` (comma-separated lists) =
  base64(HMAC-SHA256(auth token, :func:`plivo_v3_base` + "." + nonce)), as Plivo's SDKs
  compute it.
* ``telnyx-ed25519``: Ed25519 over ``timestamp|body`` with the account's public key;
  ``telnyx-timestamp`` checked against ``tolerance`` (300 s by default).
* ``hmac-sha256``: generic: HMAC-SHA256 of ``payload`` (default ``{body}``, may use
  ``{timestamp}`` and ``{url}``, the URL called with its query) in ``header``, hex or
  base64, optional timestamp header + tolerance.

What each scheme covers, and so what a signed request's fields may be read from, is
in ``coverage.py``. Fields signed as parsed values are checked as sent
(``form_as_sent``, ``params_as_sent``), before text that cannot round-trip is replaced.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import math
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

from host.brokers.specs import SignatureSpec
from host.brokers.http import InboundRequest
from host.errors import SmshostError


class SignatureError(SmshostError):
    """A webhook's signature is missing (401) or wrong or stale (403)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


Verifier = Callable[[InboundRequest, Sequence[str], SignatureSpec, float], None]


def _b64_hmac(key: str, data: bytes, digest: str) -> str:
    return base64.b64encode(hmac.digest(key.encode(), data, digest)).decode()


def _any_equal(expected: str, candidates: Sequence[str]) -> bool:
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(expected.encode(), candidate.encode())
    return found


def _required_header(request: InboundRequest, name: str) -> str:
    value = request.headers.get(name.lower())
    if not value:
        raise SignatureError(401, f"missing signature header {name}")
    return value


def _check_age(timestamp: str, tolerance: float, now: float) -> None:
    try:
        sent = float(timestamp)
    except ValueError:
        sent = math.nan
    if not math.isfinite(sent):  # "inf" and "nan" parse, and nan would pass any age
        raise SignatureError(403, f"bad signature timestamp {timestamp[:40]!r}")
    if abs(now - sent) > tolerance:
        raise SignatureError(403, f"stale signature: timestamp {int(sent)} is more than "
                             f"{int(tolerance)} s from now")


# -- twilio ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def _url_variants(url: str) -> tuple[str, ...]:
    """The URL as given, then as Twilio's SDKs also try it: with the scheme's default
    port added when it has no port, without its port when it has one. The host is
    kept as written (case, IPv6 brackets, user info)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return (url,)
    if port is None:
        default = {"https": 443, "http": 80}.get(parts.scheme)
        if default is None:
            return (url,)
        return url, urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}"))
    return url, urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0]))


TWILIO_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
_TWILIO_ALGORITHMS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def twilio_shared_key_algorithm(request: InboundRequest) -> str | None:
    """The ``algorithm`` named by ``X-Twilio-Webhooks-Signature-Settings``
    (``key=...,algorithm=HMAC_SHA256``): set when Twilio signed with a shared key of its
    Webhooks configuration API. None without one (no header, an empty one, or one
    without ``algorithm=``): the auth token's HMAC-SHA1, as Twilio's SDKs read it."""
    settings = request.headers.get(TWILIO_SETTINGS_HEADER.lower(), "")
    for part in settings.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip()
    return None


def twilio_algorithm(request: InboundRequest) -> str:
    """The hash of a Twilio signature: SHA-1, or SHA-256 when the settings header says
    so; 403 for an algorithm Twilio's SDKs do not know."""
    named = twilio_shared_key_algorithm(request)
    if named is None:
        return "sha1"
    found = _TWILIO_ALGORITHMS.get(named.upper())
    if found is None:
        raise SignatureError(403, f"unsupported Twilio signature algorithm in "
                             f"{TWILIO_SETTINGS_HEADER}")
    return found


def verify_twilio(request: InboundRequest, keys: Sequence[str], spec: SignatureSpec,
                  now: float) -> None:
    signature = _required_header(request, spec.params.get("header", "X-Twilio-Signature"))
    if request.is_json:
        expected_hash = request.query.get("bodySHA256", [""])[0]
        actual_hash = hashlib.sha256(request.body).hexdigest()
        if not hmac.compare_digest(expected_hash, actual_hash):
            raise SignatureError(403, "bodySHA256 does not match the body")
        fields = ""
    else:
        # as Twilio's SDKs: names sorted, each name's distinct values sorted
        items = sorted(request.form_as_sent.items())
        try:  # the usual case, one value per name; unpacking refuses any other count
            fields = "".join([k + v for k, (v,) in items])
        except ValueError:
            fields = "".join(k + v for k, vs in items for v in sorted(set(vs)))
    algorithm = twilio_algorithm(request)
    given = signature.encode()
    for key in keys:  # one HMAC in the usual case: the first key and URL match
        for url in _url_variants(request.url):
            expected = _b64_hmac(key, (url + fields).encode(), algorithm)
            if hmac.compare_digest(given, expected.encode()):
                return
    raise SignatureError(403, "X-Twilio-Signature does not match")


# -- vonage ---------------------------------------------------------------------------

def vonage_signature(params: dict[str, str], secret: str, algorithm: str) -> str:
    """The ``sig`` Vonage computes over ``params`` (without ``sig``)."""
    text = "".join(
        f"&{key}={value.replace('&', '_').replace('=', '_')}"
        for key, value in sorted(params.items()) if key != "sig")
    data = text.encode("utf-8", "surrogatepass")  # as sent: a lone surrogate must not raise
    if algorithm == "md5hash":
        return hashlib.md5(data + secret.encode()).hexdigest()
    digest = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}[algorithm]
    return hmac.new(secret.encode(), data, digest).hexdigest()


def verify_vonage(request: InboundRequest, keys: Sequence[str], spec: SignatureSpec,
                  now: float) -> None:
    flat = {k: v[0] for k, v in request.params_as_sent("auto").items()}
    sig = flat.get("sig")
    if not sig:
        raise SignatureError(401, "missing sig parameter")
    tolerance = float(spec.params.get("tolerance", "300"))
    if "timestamp" not in flat:
        raise SignatureError(403, "signed request without a timestamp")
    _check_age(flat["timestamp"], tolerance, now)
    algorithm = spec.params.get("algorithm", "md5hash")
    candidates = [vonage_signature(flat, key, algorithm) for key in keys]
    if not _any_equal(sig.lower(), [c.lower() for c in candidates]):
        raise SignatureError(403, "sig does not match")


# -- plivo ----------------------------------------------------------------------------

def plivo_v3_base(url: str, method: str, form: dict[str, list[str]]) -> str:
    """What Plivo's SDKs sign for V3 (plivo-python ``signature_v3.py``), without
    ``.nonce``: the URL without its query, then ``?`` and the decoded query sorted as
    ``k=v`` joined by ``&`` when there is a query or POST fields, ``.`` when there are
    both, then the sorted POST fields as ``name+value``."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    query_text = "&".join(f"{k}={v}" for k in sorted(query) for v in sorted(query[k]))
    fields = form if method.upper() == "POST" else {}
    text = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if query_text or fields:
        text += "?" + query_text
    if query_text and fields:
        text += "."
    return text + "".join(k + v for k in sorted(fields) for v in sorted(fields[k]))


def verify_plivo_v3(request: InboundRequest, keys: Sequence[str], spec: SignatureSpec,
                    now: float) -> None:
    names = [spec.params.get("header", "X-Plivo-Signature-V3"), "X-Plivo-Signature-Ma-V3"]
    given = [part.strip() for name in names
             for part in request.headers.get(name.lower(), "").split(",") if part.strip()]
    if not given:
        raise SignatureError(401, f"missing signature header {names[0]}")
    nonce = _required_header(request, spec.params.get("nonce-header",
                                                      "X-Plivo-Signature-V3-Nonce"))
    data = (plivo_v3_base(request.url, request.method, request.form_as_sent)
            + "." + nonce).encode()
    candidates = [_b64_hmac(key, data, "sha256") for key in keys]
    if not any(_any_equal(g, candidates) for g in given):
        raise SignatureError(403, "X-Plivo-Signature-V3 does not match")


# -- telnyx ---------------------------------------------------------------------------

def verify_telnyx(request: InboundRequest, keys: Sequence[str], spec: SignatureSpec,
                  now: float) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signature = _required_header(request, spec.params.get("header", "telnyx-signature-ed25519"))
    timestamp = _required_header(request, spec.params.get("timestamp-header",
                                                          "telnyx-timestamp"))
    _check_age(timestamp, float(spec.params.get("tolerance", "300")), now)
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise SignatureError(403, "telnyx-signature-ed25519 is not base64") from None
    message = timestamp.encode() + b"|" + request.body
    for key in keys:
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(key)).verify(raw_signature,
                                                                             message)
            return
        except (InvalidSignature, ValueError, binascii.Error):
            continue
    raise SignatureError(403, "telnyx-signature-ed25519 does not match")


# -- generic --------------------------------------------------------------------------

def verify_hmac_sha256(request: InboundRequest, keys: Sequence[str], spec: SignatureSpec,
                       now: float) -> None:
    signature = _required_header(request, spec.params.get("header", "X-Signature"))
    timestamp = ""
    ts_header = spec.params.get("timestamp-header")
    if ts_header:
        timestamp = _required_header(request, ts_header)
        _check_age(timestamp, float(spec.params.get("tolerance", "300")), now)
    payload = spec.params.get("payload", "{body}")
    head, _, tail = payload.partition("{body}")

    def fill(text: str) -> bytes:
        return text.replace("{timestamp}", timestamp).replace("{url}", request.url).encode()

    data = fill(head) + request.body + fill(tail)
    signature = signature.removeprefix("sha256=")
    encode = (lambda d: d.hex()) if spec.params.get("encoding", "hex") == "hex" else \
        (lambda d: base64.b64encode(d).decode())
    candidates = [encode(hmac.new(key.encode(), data, "sha256").digest()) for key in keys]
    if not _any_equal(signature, candidates):
        raise SignatureError(403, f"{spec.params.get('header', 'X-Signature')} does not match")


def ed25519_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be an Ed25519 public key (base64 of 32 bytes), or None."""
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        return "is not base64"
    if len(raw) != 32:
        return f"decodes to {len(raw)} bytes; an Ed25519 public key has 32"
    return None


# Checked when the instance is built: a malformed key would otherwise refuse every
# webhook as forged (403), which reads like an attack rather than a typo.
KEY_CHECKS: dict[str, Callable[[str], str | None]] = {
    "telnyx-ed25519": ed25519_key_problem,
}

SCHEMES: dict[str, Verifier] = {
    "twilio": verify_twilio,
    "vonage": verify_vonage,
    "plivo-v3": verify_plivo_v3,
    "telnyx-ed25519": verify_telnyx,
    "hmac-sha256": verify_hmac_sha256,
}


def verify(request: InboundRequest, keys: Sequence[str], spec: SignatureSpec,
           now: float | None = None) -> None:
    """Check ``request`` with ``spec``'s scheme against ``keys``."""
    SCHEMES[spec.scheme](request, keys, spec, time.time() if now is None else now)
