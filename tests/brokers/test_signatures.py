"""The engine's signature schemes agree with the brokers' own SDKs on random inputs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import string
from urllib.parse import urlencode

import pytest

from host.brokers.definition import SignatureSpec
from host.brokers.http import InboundRequest
from host.brokers.signatures import SignatureError, plivo_v3_base, verify
from host.brokers.templates import Template

RANDOM = random.Random(20261127)
ALPHABET = string.ascii_letters + string.digits + " &=+%/é"


def word(alphabet: str) -> str:
    return "".join(RANDOM.choice(alphabet) for _ in range(RANDOM.randint(1, 8)))


def cases(n: int, alphabet: str = ALPHABET) -> list[tuple[str, str, dict[str, str]]]:
    out = []
    for _ in range(n):
        query = {word(alphabet): word(alphabet) for _ in range(RANDOM.randint(0, 2))}
        url = "https://sms.example.com/hook" + (f"?{urlencode(query)}" if query else "")
        method = RANDOM.choice(["GET", "POST"])
        form = ({word(alphabet): word(alphabet) for _ in range(RANDOM.randint(0, 3))}
                if method == "POST" else {})
        out.append((method, url, form))
    return out


def test_plivo_v3_matches_the_plivo_sdk() -> None:
    from plivo.utils.signature_v3 import validate_v3_signature

    for method, url, form in cases(400, ALPHABET.replace("é", "")):  # the SDK fails on é
        base = plivo_v3_base(url, method, {k: [v] for k, v in form.items()})
        signature = base64.b64encode(hmac.new(b"token", f"{base}.n0nce".encode(),
                                              hashlib.sha256).digest()).decode()
        assert validate_v3_signature(method, url, "n0nce", "token", signature, form), (method,
                                                                                      url, form)


def test_twilio_matches_the_twilio_sdk() -> None:
    from twilio.request_validator import RequestValidator

    spec = SignatureSpec("twilio", Template("k"))
    validator = RequestValidator("auth-token")
    for method, url, form in cases(300):
        if method != "POST":
            continue
        signature = validator.compute_signature(url, form)
        request = InboundRequest("POST", url, {
            "x-twilio-signature": signature,
            "content-type": "application/x-www-form-urlencoded"}, urlencode(form).encode())
        verify(request, ["auth-token"], spec)
        with pytest.raises(SignatureError):
            verify(request, ["other-token"], spec)


def test_twilio_repeated_fields_are_signed_like_the_sdk() -> None:
    from twilio.request_validator import RequestValidator

    class MultiDict(dict):  # type: ignore[type-arg]
        def getall(self, name: str) -> list[str]:
            return self[name]  # type: ignore[no-any-return]

    url = "https://sms.example.com/twilio/mo"
    signature = RequestValidator("tok").compute_signature(
        url, MultiDict({"A": ["2", "1", "2"], "B": ["x"]}))
    request = InboundRequest("POST", url, {"x-twilio-signature": signature,
                                           "content-type": "application/x-www-form-urlencoded"},
                             b"A=2&B=x&A=1&A=2")
    verify(request, ["tok"], SignatureSpec("twilio", Template("k")))


def test_only_the_named_accounts_key_verifies(tmp_path: object) -> None:
    """With two Twilio accounts, a request naming account B must be signed with B's token."""
    from pathlib import Path

    from twilio.request_validator import RequestValidator

    from host.config import load_settings
    from host.core import Host
    from tests.brokers.conftest import broker_config, serving, stored

    cfg = broker_config(Path(str(tmp_path)), """
[[brokers]]
name = "tw"
definition = "twilio"

[[brokers.accounts]]
id = "a"
login = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
password = "token-a"
local_address = "+14155550100"

[[brokers.accounts]]
id = "b"
login = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
password = "token-b"
local_address = "+14155550101"
""")
    host = Host(load_settings(cfg), config_dir=cfg)
    url = "https://smshost.example.com/twilio/mo"
    form = {"MessageSid": "SM" + "1" * 32, "AccountSid": "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "From": "+14155550123", "To": "+14155550101", "Body": "hi", "NumMedia": "0"}
    with serving(host) as client:
        wrong = client.post("/twilio/mo", data=form, headers={
            "X-Twilio-Signature": RequestValidator("token-a").compute_signature(url, form)})
        right = client.post("/twilio/mo", data=form, headers={
            "X-Twilio-Signature": RequestValidator("token-b").compute_signature(url, form)})
        rows = stored(client, host)
    assert (wrong.status_code, right.status_code) == (403, 200)
    assert [r["account"] for r in rows] == ["b"]
