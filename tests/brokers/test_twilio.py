"""The shipped twilio broker, through real interfaces, against Twilio's documentation.

Webhooks are posted over HTTP to the broker paths with the parameters Twilio documents
and signed at test time with Twilio's official SDK (``twilio.request_validator``); sends
are built by the broker, sent with a real HTTP client to a fake Twilio API over HTTPS on
127.0.0.1, and its documented answers are read back.

Twilio documentation relied on:
* incoming message webhook: https://www.twilio.com/docs/messaging/guides/webhook-request
* empty TwiML to receive without replying:
  https://www.twilio.com/docs/usage/webhooks/sms-webhooks
* status callbacks:
  https://www.twilio.com/docs/messaging/guides/track-outbound-message-status and
  https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks
* status values: https://www.twilio.com/docs/messaging/api/message-resource
* signatures: https://www.twilio.com/docs/usage/webhooks/webhooks-security
* sending: https://www.twilio.com/docs/messaging/api/message-resource (Create a Message)
* error bodies: https://www.twilio.com/docs/api/errors/400,
  https://www.twilio.com/docs/api/errors/20429
* regions:
  https://www.twilio.com/docs/global-infrastructure/using-the-twilio-rest-api-in-a-non-us-region
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx2
import pytest
import trustme
import uvicorn
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from host.brokers.definition import load_definition
from host.brokers.engine import OutboundMessage
from host.brokers.http import MtRequest, MtResponse
from host.config import load_settings
from host.core import Host
from host.messages import NewMessage
from tests.brokers.conftest import PUBLIC_URL, broker_config, serving, stored

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_SID = "AC8793b0bc873594ac86924154c70ca2b6"
AUTH_TOKEN = "test-auth-token-7c2d9e"
OTHER_SID = "AC8f1d0432bc99a072682b69bf8e3f5624"
OTHER_TOKEN = "test-auth-token-of-the-other-account"
SERVICE_SID = "MGb351bb9b0af6e4fc678749675c53ad67"
OUR_NUMBER = "+14155550100"
PHONE = "+14155550123"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

TWILIO = """
[[brokers]]
name = "tw"
definition = "twilio"
{extra}

[[brokers.accounts]]
id = "main"
login = "{sid}"
password = "{token}"
local_address = "{number}"
"""

SECOND_ACCOUNT = f"""
[[brokers.accounts]]
id = "second"
login = "{OTHER_SID}"
password = "{OTHER_TOKEN}"
local_address = "+14155550199"
"""


def twilio_toml(extra: str = "", accounts: str = "") -> str:
    return TWILIO.format(extra=extra, sid=ACCOUNT_SID, token=AUTH_TOKEN,
                         number=OUR_NUMBER) + accounts


def twilio_host(broker_host: Callable[..., Host], extra: str = "", accounts: str = "",
                **kwargs: Any) -> Host:
    return broker_host(twilio_toml(extra, accounts), **kwargs)


def signature(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature as Twilio computes it, by Twilio's own SDK."""
    return str(RequestValidator(token).compute_signature(url, params))


def inbound_sms(sid: str = "SMbea0a574d436676fa4e888ea71dd996f", *,
                body: str = "Hello from a phone: ça va? 1+1=2 & more",
                account_sid: str = ACCOUNT_SID, to: str = OUR_NUMBER,
                **extra: str) -> dict[str, str]:
    """An incoming message webhook, with the parameters of Twilio's webhook-request page."""
    params = {
        "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0",
        "ToCity": "SAN FRANCISCO", "FromZip": "94105", "SmsSid": sid, "FromState": "CA",
        "SmsStatus": "received", "FromCity": "SAN FRANCISCO", "Body": body,
        "FromCountry": "US", "To": to, "MessagingServiceSid": SERVICE_SID, "ToZip": "94105",
        "NumSegments": "1", "MessageSid": sid, "AccountSid": account_sid, "From": PHONE,
        "ApiVersion": "2010-04-01",
    }
    params.update(extra)
    return params


def status_callback(sid: str, status: str, **extra: str) -> dict[str, str]:
    """A status callback as Twilio posts it (track-outbound-message-status)."""
    return {"SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "To": PHONE,
            "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": OUR_NUMBER,
            "ApiVersion": "2010-04-01", **extra}


def post_signed(client: Any, path: str, params: dict[str, str], *, token: str = AUTH_TOKEN,
                signed_url: str | None = None) -> Any:
    url = signed_url or PUBLIC_URL + path
    return client.post(path, data=params,
                       headers={"X-Twilio-Signature": signature(url, params, token)})


def add_outbound(client: Any, host: Host, sid: str, status: str = "queued") -> int:
    async def add() -> int:
        message, _ = await host.messages.add(NewMessage(
            direction="out", body="Your code is 1234", status=status, broker="tw",
            account="main", local=OUR_NUMBER, remote=PHONE, broker_message_id=sid))
        return message.id
    return int(client.portal.call(add))


def attrs_of(row: dict[str, Any]) -> dict[str, str]:
    return json.loads(row["attrs"] or "{}")  # type: ignore[no-any-return]


# -- incoming messages -------------------------------------------------------------------


def test_documented_sms_is_stored_and_answered_with_empty_twiml(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    params = inbound_sms()
    with serving(host) as client:
        answer = post_signed(client, "/twilio/mo", params)
        rows = stored(client, host)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].split(";")[0] == "text/xml"
    root = etree.fromstring(answer.content)
    assert root.tag == "Response" and len(root) == 0 and not (root.text or "").strip()
    (row,) = rows
    assert (row["direction"], row["broker"], row["account"], row["remote"], row["local"],
            row["body"], row["broker_message_id"], row["status"], row["segments"]) == (
        "in", "tw", "main", PHONE, OUR_NUMBER, "Hello from a phone: ça va? 1+1=2 & more",
        "SMbea0a574d436676fa4e888ea71dd996f", "received", 1)
    attrs = attrs_of(row)
    assert {k: attrs.get(k) for k in ("AccountSid", "MessagingServiceSid", "NumMedia",
                                      "FromCountry", "FromState", "FromCity", "FromZip",
                                      "ToCountry", "ToState", "ToCity", "ToZip")} == {
        "AccountSid": ACCOUNT_SID, "MessagingServiceSid": SERVICE_SID, "NumMedia": "0",
        "FromCountry": "US", "FromState": "CA", "FromCity": "SAN FRANCISCO", "FromZip": "94105",
        "ToCountry": "US", "ToState": "CA", "ToCity": "SAN FRANCISCO", "ToZip": "94105"}
    assert "MediaUrl0" not in attrs and "SmsSid" not in attrs


def test_mms_media_urls_and_types_are_kept_as_attributes(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    sid = "MM490f223ff3b47cf4d13724184f37c885"
    base = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media"
    media = {"NumMedia": "3",
             "MediaContentType0": "image/jpeg", "MediaUrl0": f"{base}/ME01",
             "MediaContentType1": "image/png", "MediaUrl1": f"{base}/ME02",
             "MediaContentType2": "video/mp4", "MediaUrl2": f"{base}/ME03"}
    with serving(host) as client:
        answer = post_signed(client, "/twilio/mo", inbound_sms(sid, body="", **media))
        (row,) = stored(client, host)
    assert answer.status_code == 200
    attrs = attrs_of(row)
    assert {k: attrs.get(k) for k in media} == media
    assert "MediaUrl3" not in attrs and "MediaContentType3" not in attrs
    assert row["body"] == "" and row["broker_message_id"] == sid


def test_webhook_configured_as_get_is_read_from_the_query(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    params = {"MessageSid": "SMf82dea90729d29eeb7c697d2ec44021a", "AccountSid": ACCOUNT_SID,
              "From": PHONE, "To": OUR_NUMBER, "Body": "by GET", "NumMedia": "0"}
    path = "/twilio/mo?" + urlencode(params)
    with serving(host) as client:
        answer = client.get(path, headers={
            "X-Twilio-Signature": signature(PUBLIC_URL + path, {})})
        (row,) = stored(client, host)
    assert answer.status_code == 200 and answer.text == EMPTY_TWIML
    assert (row["remote"], row["body"], row["account"]) == (PHONE, "by GET", "main")


def test_account_sid_pairs_the_message_with_its_account(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host, accounts=SECOND_ACCOUNT)
    with serving(host) as client:
        first = post_signed(client, "/twilio/mo", inbound_sms("SM01" + "0" * 30))
        # Another number of the second Twilio account, not configured here: the Account
        # SID alone says whose message it is.
        second = post_signed(client, "/twilio/mo", inbound_sms(
            "SM02" + "0" * 30, account_sid=OTHER_SID, to="+14155550177"), token=OTHER_TOKEN)
        # An Account SID no account has: paired by the number it was sent to.
        by_number = post_signed(client, "/twilio/mo", inbound_sms(
            "SM03" + "0" * 30, account_sid="AC" + "f" * 32, to="+14155550199"),
            token=OTHER_TOKEN)
        rows = stored(client, host)
    assert [a.status_code for a in (first, second, by_number)] == [200, 200, 200]
    assert [(r["account"], r["local"], r["remote"]) for r in rows] == [
        ("main", OUR_NUMBER, PHONE), ("second", "+14155550177", PHONE),
        ("second", "+14155550199", PHONE)]


def test_a_retried_mo_is_stored_once_and_answered_alike(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    params = inbound_sms()
    with serving(host) as client:
        answers = [post_signed(client, "/twilio/mo", params) for _ in range(3)]
        rows = stored(client, host)
    assert [(a.status_code, a.headers["content-type"], a.text) for a in answers] == [
        (200, answers[0].headers["content-type"], EMPTY_TWIML)] * 3
    assert len(rows) == 1


def test_forged_or_unsigned_webhooks_are_refused_and_nothing_is_stored(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    genuine = inbound_sms(body="Pay 10 USD to Alice")
    forged = inbound_sms(body="Pay 1000 USD to Mallory")
    with serving(host) as client:
        mid = add_outbound(client, host, "SMbfc18160908af7e3e3c3b1e24e3638cc", "sent")
        tampered = client.post("/twilio/mo", data=forged, headers={
            "X-Twilio-Signature": signature(PUBLIC_URL + "/twilio/mo", genuine)})
        wrong_token = post_signed(client, "/twilio/mo", genuine, token="not-the-auth-token")
        unsigned = client.post("/twilio/mo", data=genuine)
        forged_status = post_signed(client, "/twilio/status", status_callback(
            "SMbfc18160908af7e3e3c3b1e24e3638cc", "delivered"), token="not-the-auth-token")
        unsigned_status = client.post("/twilio/status", data=status_callback(
            "SMbfc18160908af7e3e3c3b1e24e3638cc", "failed"))
        rows = stored(client, host)
        message = client.get(f"/api/messages/{mid}").json()
    assert [r.status_code for r in (tampered, wrong_token, unsigned, forged_status,
                                    unsigned_status)] == [403, 403, 401, 403, 401]
    assert [r["direction"] for r in rows] == ["out"]
    assert message["status"] == "sent" and [e["status"] for e in message["events"]] == ["sent"]


@pytest.mark.parametrize(("public", "signed_as", "status"), [
    ("https://smshost.example.com", "https://smshost.example.com:443", 200),
    ("https://Sms.Example.com:443", "https://Sms.Example.com", 200),
    ("https://Sms.Example.com:8443", "https://Sms.Example.com:8443", 200),
    ("https://Sms.Example.com:8443", "https://Sms.Example.com", 200),
    ("https://Sms.Example.com:8443", "https://sms.example.com:8443", 403),
    ("https://smshost.example.com", "https://smshost.example.com:8443", 403),
])
def test_signature_over_the_url_with_or_without_its_port_as_twilio_sdks_accept(
        broker_host: Callable[..., Host], public: str, signed_as: str, status: int) -> None:
    """Twilio's SDK accepts the URL with the default port added or the port removed;
    the host stays as written."""
    host = twilio_host(broker_host, public_url=public)
    params = inbound_sms(sid="SM" + "8" * 32)
    with serving(host) as client:
        answer = post_signed(client, "/twilio/mo", params, signed_url=signed_as + "/twilio/mo")
    assert answer.status_code == status, answer.text


# -- webhooks signed with a shared key (Webhooks configuration API) ----------------------

SHARED_KEY = "webhooks-shared-key-secret-9c41"
SETTINGS = "X-Twilio-Webhooks-Signature-Settings"


def post_shared(client: Any, params: dict[str, str], *, algorithm: str = "HMAC_SHA256",
                key: str = SHARED_KEY, header: str | None = None) -> Any:
    """Signed as Twilio signs under a Webhook Rule: the SharedKey secret and the
    Setting's algorithm, by Twilio's own SDK; the settings header names both."""
    url = PUBLIC_URL + "/twilio/mo"
    signed = RequestValidator(key).compute_signature(url, params, algorithm)
    return client.post("/twilio/mo", data=params, headers={
        "X-Twilio-Signature": str(signed),
        SETTINGS: header or f"key=KS{'a' * 32},algorithm={algorithm}"})


SHARED = f'options = {{ WebhookSharedKey = "{SHARED_KEY}" }}'


@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1"])
def test_webhook_signed_with_the_shared_key_is_accepted(
        broker_host: Callable[..., Host], algorithm: str) -> None:
    host = twilio_host(broker_host, extra=SHARED)
    with serving(host) as client:
        shared = post_shared(client, inbound_sms(sid="SM" + "a" * 32), algorithm=algorithm)
        legacy = post_signed(client, "/twilio/mo", inbound_sms(sid="SM" + "b" * 32))
        rows = stored(client, host)
    assert (shared.status_code, legacy.status_code) == (200, 200), shared.text
    assert sorted(r["broker_message_id"] for r in rows) == ["SM" + "a" * 32, "SM" + "b" * 32]


def test_shared_key_webhooks_are_refused_when_forged_or_not_configured(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host, extra=SHARED)
    with serving(host) as client:
        auth_token_signed = post_shared(client, inbound_sms(sid="SM" + "c" * 32),
                                        key=AUTH_TOKEN)
        wrong_hash = post_shared(client, inbound_sms(sid="SM" + "d" * 32),
                                 header="key=KSx,algorithm=HMAC_SHA1")  # signed SHA-256
        unknown = post_shared(client, inbound_sms(sid="SM" + "e" * 32),
                              header="key=KSx,algorithm=HMAC_MD5")
        rows = stored(client, host)
    assert [r.status_code for r in (auth_token_signed, wrong_hash, unknown)] == [403] * 3
    assert "unsupported Twilio signature algorithm" in unknown.text
    assert rows == []
    plain = twilio_host(broker_host)  # no WebhookSharedKey
    with serving(plain) as client:
        refused = post_shared(client, inbound_sms(sid="SM" + "f" * 32))
        assert stored(client, plain) == []
    assert refused.status_code == 403 and "WebhookSharedKey" in refused.text


@pytest.mark.parametrize("header", ["", "key=KS" + "b" * 32, " Algorithm=HMAC_SHA256"])
def test_a_settings_header_without_algorithm_means_the_auth_token(
        broker_host: Callable[..., Host], header: str) -> None:
    """As Twilio's SDKs read it: no ``algorithm=`` part, no shared key."""
    host = twilio_host(broker_host, extra=SHARED)
    params = inbound_sms(sid="SM" + "4" * 32)
    url = PUBLIC_URL + "/twilio/mo"
    with serving(host) as client:
        answer = client.post("/twilio/mo", data=params, headers={
            "X-Twilio-Signature": signature(url, params), SETTINGS: header})
    assert answer.status_code == 200, answer.text


def test_an_account_without_a_token_does_not_switch_the_check_off(
        broker_host: Callable[..., Host]) -> None:
    """Naming a configured account that has no auth token (the field is the sender's to
    choose) still needs a signature by one of the configured tokens."""
    tokenless = f"""
[[brokers.accounts]]
id = "second"
login = "{OTHER_SID}"
local_address = "+14155550199"
"""
    host = twilio_host(broker_host, accounts=tokenless)
    params = inbound_sms(sid="SM" + "5" * 32, account_sid=OTHER_SID)
    with serving(host) as client:
        unsigned = client.post("/twilio/mo", data=params)
        forged = post_signed(client, "/twilio/mo", params, token="guessed")
        genuine = post_signed(client, "/twilio/mo", params)  # by the configured token
        rows = stored(client, host)
    assert [r.status_code for r in (unsigned, forged, genuine)] == [401, 403, 200]
    assert [(r["broker_message_id"], r["account"]) for r in rows] == [
        ("SM" + "5" * 32, "second")]


def test_with_only_the_shared_key_every_webhook_must_carry_it(
        broker_host: Callable[..., Host]) -> None:
    toml = TWILIO.format(extra=SHARED, sid=ACCOUNT_SID, token="", number=OUR_NUMBER)
    host = broker_host(toml.replace('password = ""\n', ""))
    with serving(host) as client:
        unsigned = client.post("/twilio/mo", data=inbound_sms(sid="SM" + "1" * 32))
        token_signed = post_signed(client, "/twilio/mo", inbound_sms(sid="SM" + "2" * 32))
        shared = post_shared(client, inbound_sms(sid="SM" + "3" * 32))
        rows = stored(client, host)
    assert [r.status_code for r in (unsigned, token_signed, shared)] == [401, 403, 200]
    assert [r["broker_message_id"] for r in rows] == ["SM" + "3" * 32]


class _Repeated(dict[str, list[str]]):
    """Form fields with repeated names, as Twilio's SDK reads them (``getall``)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def test_repeated_parameter_names_are_signed_as_twilio_signs_them(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    pairs = [*inbound_sms(sid="SM" + "7" * 32).items(), ("Tag", "b"), ("Tag", "a"),
             ("Tag", "b")]
    fields = _Repeated()
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    url = PUBLIC_URL + "/twilio/mo"
    good = str(RequestValidator(AUTH_TOKEN).compute_signature(url, fields))
    first_only = _Repeated({k: v[:1] for k, v in fields.items()})
    bad = str(RequestValidator(AUTH_TOKEN).compute_signature(url, first_only))
    body = urlencode(pairs)
    ctype = {"content-type": "application/x-www-form-urlencoded"}
    with serving(host) as client:
        refused = client.post("/twilio/mo", content=body,
                              headers={**ctype, "X-Twilio-Signature": bad})
        accepted = client.post("/twilio/mo", content=body,
                               headers={**ctype, "X-Twilio-Signature": good})
        rows = stored(client, host)
    assert (refused.status_code, accepted.status_code) == (403, 200)
    assert len(rows) == 1


def test_status_callback_sent_to_the_mo_url_is_not_stored_as_an_sms(
        broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    with serving(host) as client:
        answer = post_signed(client, "/twilio/mo", status_callback("SM" + "1" * 32, "sent"))
        rows = stored(client, host)
    assert answer.status_code == 400 and rows == []


# -- signatures behind a reverse proxy ----------------------------------------------------


def test_signature_over_the_public_url_behind_a_proxy(
        broker_host: Callable[..., Host]) -> None:
    """server.public_url: Twilio called (and signed) https://sms.example.com/gw/twilio/mo;
    the proxy forwards it to smshost as /twilio/mo on another host name."""
    public = "https://sms.example.com/gw"
    host = twilio_host(broker_host, public_url=public)
    over_public = inbound_sms("SM" + "a" * 32)
    over_internal = inbound_sms("SM" + "b" * 32)
    with serving(host) as client:  # requests arrive at https://smshost.example.com/...
        good = post_signed(client, "/twilio/mo", over_public,
                           signed_url=f"{public}/twilio/mo")
        internal = post_signed(client, "/twilio/mo", over_internal,
                               signed_url=f"{PUBLIC_URL}/twilio/mo")
        rows = stored(client, host)
    assert (good.status_code, internal.status_code) == (200, 403)
    assert [r["broker_message_id"] for r in rows] == ["SM" + "a" * 32]
    # Status callbacks are requested at the public URL too.
    instance = host.brokers["tw"]
    request = instance.broker.build_mt_request(
        OutboundMessage(id=1, to=PHONE, from_=OUR_NUMBER, text="x"),
        instance.account_values(instance.accounts["main"]))
    assert parse_qs(request.body.decode())["StatusCallback"] == [f"{public}/twilio/status"]


@contextmanager
def uvicorn_in_thread(app: Any, sock: socket.socket, **config: Any) -> Iterator[uvicorn.Server]:
    """Serve ``app`` on an already bound 127.0.0.1 socket until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           proxy_headers=False, server_header=False,
                                           **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        for _ in range(2000):
            if server.started or not thread.is_alive() or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert server.started, "the server did not start"
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
    assert not thread.is_alive()


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "untrusted-proxy"])
def test_signature_over_the_public_url_from_forwarded_headers(
        tmp_path: Path, trusted: bool) -> None:
    """No public_url: a proxy on 127.0.0.1 forwards Twilio's request to smshost's own
    address with X-Forwarded-*; the signature is over the public URL Twilio called. Only
    a proxy listed in server.trusted_proxies is believed."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    cfg = broker_config(tmp_path, twilio_toml('encryption = "http"\nmt = { enabled = false }'))
    text = (cfg / "smshost.toml").read_text()
    proxies = '["127.0.0.1/32"]' if trusted else "[]"
    text = text.replace(f'public_url = "{PUBLIC_URL}"\n', f"trusted_proxies = {proxies}\n")
    (cfg / "smshost.toml").write_text(text.replace("port = 8080", f"port = {port}"))
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    assert not [r.error for r in host.plugins.failures]
    public = "https://sms.example.com/gw/twilio/mo"
    internal = f"http://127.0.0.1:{port}/twilio/mo"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.com",
                 "X-Forwarded-Prefix": "/gw"}
    signed_public = inbound_sms("SM" + "c" * 32)
    signed_internal = inbound_sms("SM" + "d" * 32)
    with uvicorn_in_thread(host.app_for(), sock, lifespan="on"), \
            httpx2.Client(trust_env=False, timeout=10.0) as http:
        over_public = http.post(internal, data=signed_public, headers={
            **forwarded, "X-Twilio-Signature": signature(public, signed_public)})
        over_internal = http.post(internal, data=signed_internal, headers={
            **forwarded, "X-Twilio-Signature": signature(internal, signed_internal)})
        listed = http.get(f"http://127.0.0.1:{port}/api/messages",
                          headers={"Authorization": "Bearer test-token"}).json()["messages"]
    if trusted:
        assert (over_public.status_code, over_internal.status_code) == (200, 403)
        assert [m["broker_message_id"] for m in listed] == ["SM" + "c" * 32]
    else:  # the forwarded headers are ignored: smshost checks the URL it was called at
        assert (over_public.status_code, over_internal.status_code) == (403, 200)
        assert [m["broker_message_id"] for m in listed] == ["SM" + "d" * 32]


# -- status callbacks --------------------------------------------------------------------


def test_status_history_moves_forward_only(broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    sid = "SMbfc18160908af7e3e3c3b1e24e3638cc"
    with serving(host) as client:
        mid = add_outbound(client, host, sid)
        answers = [post_signed(client, "/twilio/status", status_callback(sid, status, **extra))
                   for status, extra in (("sending", {}), ("sent", {}),
                                         ("delivered", {"RawDlrDoneDate": "2601010930"}),
                                         ("sent", {}), ("undelivered", {"ErrorCode": "30003"}))]
        body = client.get(f"/api/messages/{mid}").json()
    assert [(a.status_code, a.content) for a in answers] == [(204, b"")] * 5
    assert body["status"] == "delivered"
    assert [e["status"] for e in body["events"]] == [
        "queued", "sending", "sent", "delivered", "sent", "undelivered"]
    details = [e["detail"] for e in body["events"][1:]]
    assert [d["broker_status"] for d in details] == [
        "sending", "sent", "delivered", "sent", "undelivered"]
    assert details[2]["attrs"]["RawDlrDoneDate"] == "2601010930"
    assert details[4]["error"] == "30003"


def test_undelivered_with_error_code(broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    sid = "SMaaace541c00b36b2cb293ac102501f28"
    with serving(host) as client:
        mid = add_outbound(client, host, sid, "sent")
        answer = post_signed(client, "/twilio/status", status_callback(
            sid, "undelivered", ErrorCode="30006", RawDlrDoneDate="2601010931"))
        body = client.get(f"/api/messages/{mid}").json()
    assert answer.status_code == 204
    assert body["status"] == "undelivered"
    last = body["events"][-1]
    assert last["status"] == "undelivered"
    assert (last["detail"]["broker_status"], last["detail"]["error"], last["detail"]["to"]) == (
        "undelivered", "30006", PHONE)


# Twilio's documented status words (Message resource, status values) and the smshost
# state each must become. "unknown" is kept in the history and changes nothing.
DOCUMENTED_STATUSES = {
    "queued": "queued", "accepted": "queued", "scheduled": "queued", "sending": "sending",
    "sent": "sent", "delivered": "delivered", "read": "delivered",
    "undelivered": "undelivered", "failed": "failed", "canceled": "failed",
    "partially_delivered": "unknown", "receiving": "unknown", "received": "unknown",
}


def test_the_status_map_names_every_documented_word() -> None:
    definition = load_definition(ROOT / "plugins" / "brokers" / "twilio.xml")
    assert definition.receipt is not None
    assert definition.receipt.status_map == DOCUMENTED_STATUSES


def test_every_documented_status_word_over_http(broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host)
    words = [*DOCUMENTED_STATUSES, "something_new"]
    with serving(host) as client:
        ids = {word: add_outbound(client, host, f"SM{i:032d}") for i, word in enumerate(words)}
        answers = [post_signed(client, "/twilio/status", status_callback(f"SM{i:032d}", word))
                   for i, word in enumerate(words)]
        bodies = {word: client.get(f"/api/messages/{mid}").json() for word, mid in ids.items()}
    assert {a.status_code for a in answers} == {204}
    recorded = {word: body["events"][-1]["status"] for word, body in bodies.items()}
    assert recorded == {**DOCUMENTED_STATUSES, "something_new": "unknown"}
    # The messages were queued: "unknown" and "queued" leave them so.
    assert {word: body["status"] for word, body in bodies.items()} == {
        word: "queued" if state == "unknown" else state
        for word, state in {**DOCUMENTED_STATUSES, "something_new": "unknown"}.items()}


def test_mo_and_status_callbacks_can_share_one_url(broker_host: Callable[..., Host]) -> None:
    host = twilio_host(broker_host, 'mo = { path = "/twilio", receipt_path = "/twilio" }')
    sid = "SM317f6c5ea50886bb41e3b790558e1ae8"
    with serving(host) as client:
        mid = add_outbound(client, host, sid, "sent")
        mo = post_signed(client, "/twilio", inbound_sms())
        receipt = post_signed(client, "/twilio", status_callback(sid, "delivered"))
        rows = stored(client, host)
        body = client.get(f"/api/messages/{mid}").json()
    assert (mo.status_code, mo.text, receipt.status_code) == (200, EMPTY_TWIML, 204)
    assert [r["direction"] for r in rows] == ["out", "in"]
    assert body["status"] == "delivered"


# -- sending -----------------------------------------------------------------------------


class FakeTwilio:
    """Twilio's REST API on https://127.0.0.1:PORT: records requests, answers in turn."""

    def __init__(self, tmp_path: Path) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        self.certfile, self.keyfile = tmp_path / "twilio.pem", tmp_path / "twilio.key"
        self.certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(self.keyfile))
        self.trust = ssl.create_default_context()
        ca.configure_trust(self.trust)
        self.sock = bound_socket()
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        self.received.append({"method": request.method, "path": request.url.path,
                              "headers": dict(request.headers), "body": await request.body()})
        status, headers, payload = self.answers.pop(0)
        return Response(json.dumps(payload), status_code=status, headers=headers,
                        media_type="application/json")

    @contextmanager
    def running(self) -> Iterator[FakeTwilio]:
        with uvicorn_in_thread(self.app, self.sock, lifespan="off",
                               ssl_certfile=str(self.certfile), ssl_keyfile=str(self.keyfile)):
            yield self

    def send(self, request: MtRequest) -> MtResponse:
        with httpx2.Client(verify=self.trust, trust_env=False, timeout=10.0) as http:
            answer = http.request(request.method, request.url, headers=request.headers,
                                  content=request.body)
        return MtResponse(answer.status_code, {k.lower(): v for k, v in answer.headers.items()},
                          answer.content)


def message_resource(sid: str, *, to: str = PHONE, from_: str | None = OUR_NUMBER,
                     body: str = "", service: str | None = None) -> dict[str, Any]:
    """The JSON Twilio answers a Create Message with (201)."""
    return {
        "account_sid": ACCOUNT_SID, "api_version": "2010-04-01", "body": body,
        "date_created": "Thu, 01 Jan 2026 09:30:00 +0000", "date_sent": None,
        "date_updated": "Thu, 01 Jan 2026 09:30:00 +0000", "direction": "outbound-api",
        "error_code": None, "error_message": None, "from": from_,
        "messaging_service_sid": service, "num_media": "0",
        "num_segments": "0" if service else "1", "price": None, "price_unit": "USD",
        "sid": sid, "status": "accepted" if service else "queued",
        "subresource_uris": {
            "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"},
        "to": to, "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
    }


@pytest.fixture
def fake_twilio(tmp_path: Path) -> Iterator[FakeTwilio]:
    fake = FakeTwilio(tmp_path)
    with fake.running():
        yield fake


def sending_host(broker_host: Callable[..., Host], fake: FakeTwilio, extra: str = "") -> Host:
    return twilio_host(broker_host, f'mt = {{ gateway = "{fake.url}" }}\n{extra}')


def send(host: Host, fake: FakeTwilio, message: OutboundMessage) -> tuple[Any, MtRequest]:
    instance = host.brokers["tw"]
    account = instance.account_values(instance.accounts["main"])
    request = instance.broker.build_mt_request(message, account)
    response = fake.send(request)
    return instance.broker.read_mt_response(response, message, account), request


def basic_credentials(headers: dict[str, str]) -> str:
    scheme, _, token = headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token).decode()


def test_send_an_sms_as_twilio_receives_it(broker_host: Callable[..., Host],
                                           fake_twilio: FakeTwilio) -> None:
    host = sending_host(broker_host, fake_twilio)
    sid = "SMbfc18160908af7e3e3c3b1e24e3638cc"
    text = "Grüße & 100% ok: 1+1=2 👋"
    fake_twilio.answers.append((201, {}, message_resource(sid, body=text)))
    message = OutboundMessage(id=7, to=PHONE, from_=OUR_NUMBER, text=text, ref="7",
                              encoding="ucs2")
    result, request = send(host, fake_twilio, message)
    (got,) = fake_twilio.received
    assert got["method"] == "POST"
    assert got["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert basic_credentials(got["headers"]) == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
    assert got["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert got["headers"]["accept"] == "application/json"
    assert parse_qs(got["body"].decode(), keep_blank_values=True) == {
        "To": [PHONE], "From": [OUR_NUMBER], "Body": [text],
        "StatusCallback": [f"{PUBLIC_URL}/twilio/status"]}
    assert (result.outcome, result.message_id, result.error) == ("accepted", sid, None)
    assert AUTH_TOKEN not in request.describe() and AUTH_TOKEN not in repr(request)


def test_send_through_a_messaging_service(broker_host: Callable[..., Host],
                                          fake_twilio: FakeTwilio) -> None:
    host = sending_host(broker_host, fake_twilio,
                        f'options = {{ MessagingServiceSid = "{SERVICE_SID}" }}')
    sid = "SMaaace541c00b36b2cb293ac102501f28"
    fake_twilio.answers.append((201, {}, message_resource(sid, from_=None, body="Hi",
                                                          service=SERVICE_SID)))
    result, _ = send(host, fake_twilio, OutboundMessage(id=8, to=PHONE, from_=OUR_NUMBER,
                                                        text="Hi"))
    (got,) = fake_twilio.received
    assert parse_qs(got["body"].decode(), keep_blank_values=True) == {
        "To": [PHONE], "MessagingServiceSid": [SERVICE_SID], "Body": ["Hi"],
        "StatusCallback": [f"{PUBLIC_URL}/twilio/status"]}
    assert (result.outcome, result.message_id) == ("accepted", sid)


def test_status_callback_url_option_and_none(broker_host: Callable[..., Host],
                                             fake_twilio: FakeTwilio) -> None:
    host = sending_host(broker_host, fake_twilio,
                        'options = { ExternalDeliveryStatusURI = "" }')
    fake_twilio.answers.append((201, {}, message_resource("SM" + "e" * 32)))
    send(host, fake_twilio, OutboundMessage(id=9, to=PHONE, from_=OUR_NUMBER, text="x"))
    (got,) = fake_twilio.received
    assert "StatusCallback" not in parse_qs(got["body"].decode())


@pytest.mark.parametrize(("status", "headers", "payload", "expected"), [
    (400, {}, {"code": 21211, "message": "The 'To' number 5551234567 is not a valid phone "
               "number.", "more_info": "https://www.twilio.com/docs/errors/21211",
               "status": 400},
     ("fail", None, "The 'To' number 5551234567 is not a valid phone number.", "21211", None)),
    (401, {}, {"code": 20003, "message": "Authenticate",
               "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401},
     ("fail", None, "Authenticate", "20003", None)),
    (429, {}, {"code": 20429, "message": "Too Many Requests",
               "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429},
     ("retry", None, "Too Many Requests", "20429", None)),
    (429, {"Retry-After": "5"}, {"code": 20429, "message": "Too Many Requests",
                                 "more_info": "https://www.twilio.com/docs/errors/20429",
                                 "status": 429},
     ("retry", None, "Too Many Requests", "20429", 5.0)),
], ids=["400-invalid-to", "401-authenticate", "429", "429-retry-after"])
def test_error_answers_from_twilio(broker_host: Callable[..., Host], fake_twilio: FakeTwilio,
                                   status: int, headers: dict[str, str],
                                   payload: dict[str, Any], expected: tuple[Any, ...]) -> None:
    host = sending_host(broker_host, fake_twilio)
    fake_twilio.answers.append((status, headers, payload))
    result, _ = send(host, fake_twilio, OutboundMessage(id=10, to="5551234567",
                                                        from_=OUR_NUMBER, text="x"))
    assert len(fake_twilio.received) == 1
    assert (result.outcome, result.message_id, result.error, result.error_code,
            result.retry_after) == expected
    assert result.status == status


@pytest.mark.parametrize(("profile", "api"), [
    (None, "https://api.twilio.com"),
    ("ie1", "https://api.dublin.ie1.twilio.com"),
    ("au1", "https://api.sydney.au1.twilio.com"),
    ("jp1", "https://api.tokyo.jp1.twilio.com"),
])
def test_regional_api_hosts(broker_host: Callable[..., Host], profile: str | None,
                            api: str) -> None:
    host = twilio_host(broker_host, f'profile = "{profile}"' if profile else "")
    instance = host.brokers["tw"]
    request = instance.broker.build_mt_request(
        OutboundMessage(id=1, to=PHONE, from_=OUR_NUMBER, text="x"),
        instance.account_values(instance.accounts["main"]))
    assert request.url == f"{api}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
