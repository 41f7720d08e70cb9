"""The shipped telnyx broker (Messaging API v2) through its real interfaces.

Webhooks are Telnyx's documented payloads
(https://developers.telnyx.com/docs/messaging/messages/receiving-webhooks), POSTed over
HTTP to the one broker path and signed at test time the way Telnyx signs them: Ed25519
over "<telnyx-timestamp>|<raw body>", base64 in telnyx-signature-ed25519. Sends are built
by the broker, sent with a real HTTP client to a fake Telnyx on 127.0.0.1, and the
documented answers are read back through the broker.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from host.brokers.engine import OutboundMessage
from host.brokers.http import MtResponse, MtResult
from host.brokers.instances import BrokerInstance
from host.core import Host
from host.messages import NewMessage
from tests.brokers.conftest import serving, stored
from tests.conftest import run_cli, server_in_thread

# The fixed, public test key of telnyx.fixtures.toml (not a secret).
PRIVATE = Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"smshost telnyx conformance key, not a secret").digest())
PUBLIC = base64.b64encode(PRIVATE.public_key().public_bytes(
    Encoding.Raw, PublicFormat.Raw)).decode()
OTHER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"someone else").digest())

PATH = "/telnyx/webhook"
API_KEY = "KEY0123456789ABCDEF_test-telnyx-api-key"
PROFILE = "83d2343b-553f-4c5f-b8c8-fd27004f94bf"

TELNYX = """
[[brokers]]
name = "tx"
definition = "telnyx"
options = {{ PublicKey = "{public}", MessagingProfileId = "{profile}"{options} }}
{extra}

[[brokers.accounts]]
id = "main"
password = "{api_key}"
local_address = "+17735550002"
"""

# -- documented payloads --------------------------------------------------------------

INBOUND: dict[str, Any] = {
    "data": {
        "event_type": "message.received",
        "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
        "occurred_at": "2024-01-15T20:16:07.588+00:00",
        "payload": {
            "completed_at": None,
            "cost": {"amount": "0.0000", "currency": "USD"},
            "direction": "inbound",
            "encoding": "GSM-7",
            "errors": [],
            "from": {"carrier": "T-Mobile USA", "line_type": "long_code",
                     "phone_number": "+13125550001"},
            "id": "84cca175-9755-4859-b67f-4730d7f58aa3",
            "media": [],
            "messaging_profile_id": "740572b6-099c-44a1-89b9-6c92163bc68d",
            "organization_id": "47a530f8-4362-4526-829b-bcee17fd9f7a",
            "parts": 1,
            "received_at": "2024-01-15T20:16:07.503+00:00",
            "record_type": "message",
            "sent_at": None,
            "tags": [],
            "text": "Hello from Telnyx!",
            "to": [{"carrier": "Telnyx", "line_type": "Wireless",
                    "phone_number": "+17735550002", "status": "webhook_delivered"}],
            "type": "SMS",
            "valid_until": None,
            "webhook_failover_url": None,
            "webhook_url": "https://example.com/webhooks",
        },
        "record_type": "event",
    },
    "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"},
}

OUT_ID = "ac012cbf-5e09-46af-a69a-7c0e2d90993c"

SENT: dict[str, Any] = {
    "data": {
        "event_type": "message.sent",
        "id": "a1b2c3d4-5678-9012-abcd-ef1234567890",
        "occurred_at": "2024-01-15T21:32:13.596+00:00",
        "payload": {
            "completed_at": None,
            "cost": {"amount": "0.0051", "currency": "USD"},
            "direction": "outbound",
            "encoding": "GSM-7",
            "errors": [],
            "from": {"carrier": "Telnyx", "line_type": "Wireless",
                     "phone_number": "+13125550001"},
            "id": OUT_ID,
            "media": [],
            "messaging_profile_id": PROFILE,
            "organization_id": "9d76d591-1b7d-405d-8c64-1320ee070245",
            "parts": 1,
            "received_at": "2024-01-15T21:32:13.552+00:00",
            "record_type": "message",
            "sent_at": "2024-01-15T21:32:13.596+00:00",
            "text": "Hello there!",
            "to": [{"carrier": "T-MOBILE USA, INC.", "line_type": "Wireless",
                    "phone_number": "+13125550002", "status": "sent"}],
            "type": "SMS",
            "valid_until": "2024-01-15T22:32:13.552+00:00",
            "webhook_url": "https://example.com/webhooks",
        },
        "record_type": "event",
    },
    "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"},
}

FINALIZED: dict[str, Any] = {
    "data": {
        "event_type": "message.finalized",
        "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
        "occurred_at": "2024-01-15T21:32:14.148+00:00",
        "payload": {
            "completed_at": "2024-01-15T21:32:14.148+00:00",
            "cost": {"amount": "0.0051", "currency": "USD"},
            "cost_breakdown": {"carrier_fee": {"amount": "0.00305", "currency": "USD"},
                               "rate": {"amount": "0.00205", "currency": "USD"}},
            "direction": "outbound",
            "encoding": "GSM-7",
            "errors": [],
            "from": {"carrier": "Telnyx", "line_type": "Wireless",
                     "phone_number": "+13125550001", "status": "webhook_delivered"},
            "id": OUT_ID,
            "media": [],
            "messaging_profile_id": PROFILE,
            "organization_id": "9d76d591-1b7d-405d-8c64-1320ee070245",
            "parts": 1,
            "received_at": "2024-01-15T21:32:13.552+00:00",
            "record_type": "message",
            "sent_at": "2024-01-15T21:32:13.596+00:00",
            "tags": ["tag-a", "tag-b"],
            "text": "Hello there!",
            "to": [{"carrier": "T-MOBILE USA, INC.", "line_type": "Wireless",
                    "phone_number": "+13125550002", "status": "delivered"}],
            "type": "SMS",
            "valid_until": "2024-01-15T22:32:13.552+00:00",
            "webhook_url": "https://example.com/webhooks",
            "tcr_campaign_billable": True,
            "tcr_campaign_id": "CNZO3VL",
            "tcr_campaign_registered": "REGISTERED",
        },
        "record_type": "event",
    },
    "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"},
}

# RCS read receipt (message.read), as documented on the same page.
READ: dict[str, Any] = {
    "data": {
        "event_type": "message.read",
        "id": "7bc4d2e1-3f89-4a12-b5c7-9e8d1a2f3b4c",
        "occurred_at": "2024-12-09T21:35:22.000+00:00",
        "payload": {
            "body": {"text": "Hello there!"},
            "direction": "outbound",
            "from": {"agent_id": "e4448a5c0670c2a9", "agent_name": "My RCS Agent"},
            "id": OUT_ID,
            "messaging_profile_id": PROFILE,
            "to": [{"phone_number": "+13125000000", "status": "read"}],
            "type": "RCS",
        },
        "record_type": "event",
    },
}

# The documented success answer of POST /v2/messages (data is the outbound message).
SEND_OK: dict[str, Any] = {"data": {
    "record_type": "message", "direction": "outbound",
    "id": "40385f64-5717-4562-b3fc-2c963f66afa6", "type": "SMS",
    "messaging_profile_id": PROFILE,
    "from": {"phone_number": "+13125550001", "carrier": "Telnyx", "line_type": "VoIP"},
    "to": [{"phone_number": "+13125550002", "status": "queued",
            "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"}],
    "text": "Hello there!", "encoding": "GSM-7", "parts": 1, "errors": [],
}}
TOO_MANY = {"errors": [{"code": "10011", "title": "Too many requests",
                        "detail": "You have exceeded the maximum number of allowed requests."}]}
TOO_LARGE = {"errors": [{"code": "40302", "title": "Message too large",
                         "detail": "The SMS message would be divided into 11 parts. "
                                   "The maximum is 10."}]}


def event(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``payload`` keys (or ``attempt``/``event_id``) changed."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if key == "attempt":
            out["meta"]["attempt"] = value
        elif key == "event_id":
            out["data"]["id"] = value
        else:
            out["data"]["payload"][key] = value
    return out


def with_status(base: dict[str, Any], status: str, **changes: Any) -> dict[str, Any]:
    out = event(base, **changes)
    out["data"]["payload"]["to"][0]["status"] = status
    return out


# -- signing --------------------------------------------------------------------------

def signature(body: bytes, timestamp: int, key: Ed25519PrivateKey = PRIVATE) -> str:
    return base64.b64encode(key.sign(str(timestamp).encode() + b"|" + body)).decode()


def encode(payload: dict[str, Any] | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, ensure_ascii=False).encode()


def signed(payload: dict[str, Any] | bytes, *, timestamp: int | None = None,
           key: Ed25519PrivateKey = PRIVATE) -> tuple[bytes, dict[str, str]]:
    body = encode(payload)
    ts = int(time.time()) if timestamp is None else timestamp
    return body, {"content-type": "application/json", "telnyx-timestamp": str(ts),
                  "telnyx-signature-ed25519": signature(body, ts, key)}


def post(client: Any, payload: dict[str, Any] | bytes, **kw: Any) -> Any:
    body, headers = signed(payload, **kw)
    return client.post(PATH, content=body, headers=headers)


# -- hosts ----------------------------------------------------------------------------

def telnyx(broker_host: Callable[..., Host], options: str = "", extra: str = "",
           public: str = PUBLIC, **kw: Any) -> Host:
    return broker_host(TELNYX.format(public=public, profile=PROFILE, options=options,
                                     extra=extra, api_key=API_KEY), **kw)


def instance(host: Host) -> BrokerInstance:
    return host.brokers["tx"]


def add_outbound(client: Any, host: Host, broker_id: str, status: str = "queued") -> int:
    async def add() -> int:
        message, _ = await host.messages.add(NewMessage(
            direction="out", body="Hello there!", status=status, broker="tx",
            account="main", local="+13125550001", remote="+13125550002",
            broker_message_id=broker_id))
        return message.id
    return int(client.portal.call(add))


def orphan_count(client: Any, host: Host) -> int:
    return int(client.portal.call(host.store.read,
                                  lambda db: db.execute(
                "select count(*) from orphan_receipts").fetchone()[0]))


# -- MO -------------------------------------------------------------------------------

def test_documented_inbound_sms_is_stored_then_answered_200(
        broker_host: Callable[..., Host]) -> None:
    host = telnyx(broker_host)
    with serving(host) as client:
        answer = post(client, INBOUND)
        rows = stored(client, host)
    assert answer.status_code == 200
    assert answer.content == b""
    (row,) = rows
    assert {k: row[k] for k in ("direction", "broker", "account", "remote", "local", "body",
                                "broker_message_id", "status", "encoding", "segments")} == {
        "direction": "in", "broker": "tx", "account": "main", "remote": "+13125550001",
        "local": "+17735550002", "body": "Hello from Telnyx!",
        "broker_message_id": "84cca175-9755-4859-b67f-4730d7f58aa3", "status": "received",
        "encoding": "gsm7", "segments": 1}
    assert json.loads(row["attrs"]) == {
        "type": "SMS", "messaging_profile_id": "740572b6-099c-44a1-89b9-6c92163bc68d",
        "carrier": "T-Mobile USA", "line_type": "long_code",
        "event_id": "b301ed3f-1490-491f-995f-6e64e69674d4"}


def test_retried_event_is_stored_once(broker_host: Callable[..., Host]) -> None:
    """Telnyx retries an event (same payload id, meta.attempt + 1, signed anew)."""
    host = telnyx(broker_host)
    with serving(host) as client:
        answers = [post(client, event(INBOUND, attempt=n)) for n in (1, 2, 3)]
        rows = stored(client, host)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [r["broker_message_id"] for r in rows] == ["84cca175-9755-4859-b67f-4730d7f58aa3"]


def test_unicode_sms_keeps_its_text_and_encoding(broker_host: Callable[..., Host]) -> None:
    text = "Grüße aus Zürich 👋 — 你好"
    payload = event(INBOUND, id="0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", text=text,
                    encoding="UCS-2", parts=1)
    host = telnyx(broker_host)
    with serving(host) as client:
        assert post(client, payload).status_code == 200
        (row,) = stored(client, host)
    assert (row["body"], row["encoding"]) == (text, "ucs2")


def test_mms_keeps_every_media_item(broker_host: Callable[..., Host]) -> None:
    media = [{"url": "https://media.telnyx.com/example-image.png", "content_type": "image/png",
              "sha256": "ab1c2d3e4f", "size": 102400},
             {"url": "https://media.telnyx.com/example-clip.mp4", "content_type": "video/mp4",
              "sha256": "0f1e2d3c4b", "size": 204800}]
    payload = event(INBOUND, id="5a9e2c1b-0f3d-4e6a-8b7c-9d0e1f2a3b4c", type="MMS",
                    text="", media=media)
    host = telnyx(broker_host)
    with serving(host) as client:
        assert post(client, payload).status_code == 200
        (row,) = stored(client, host)
    attrs = json.loads(row["attrs"])
    assert row["body"] == ""
    assert attrs["type"] == "MMS"
    assert attrs["media_urls"] == ("https://media.telnyx.com/example-image.png "
                                   "https://media.telnyx.com/example-clip.mp4")
    assert attrs["media_types"] == "image/png video/mp4"


def test_rcs_text_is_read_from_its_body(broker_host: Callable[..., Host]) -> None:
    """Documented RCS message.received: the text is in payload.body.text."""
    rcs = {"data": {"event_type": "message.received", "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
                    "occurred_at": "2024-12-09T20:16:07.588+00:00",
                    "payload": {"body": {"text": "Hello from Telnyx!"}, "direction": "inbound",
                                "from": {"carrier": "T-Mobile USA", "line_type": "long_code",
                                         "phone_number": "+13125000000",
                                         "status": "webhook_delivered"},
                                "id": "84cca175-9755-4859-b67f-4730d7f58aa3",
                                "messaging_profile_id": "740572b6-099c-44a1-89b9-6c92163bc68d",
                                "to": [{"agent_id": "e4448a5c0670c2a9",
                                        "agent_name": "My RCS Agent"}],
                                "type": "RCS"},
                    "record_type": "event"}}
    host = telnyx(broker_host)
    with serving(host) as client:
        assert post(client, rcs).status_code == 200
        (row,) = stored(client, host)
    assert (row["body"], row["remote"], row["local"]) == (
        "Hello from Telnyx!", "+13125000000", "+17735550002")


def _tampered(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    assert b"Hello" in body
    return body.replace(b"Hello", b"Howdy", 1), headers


def _drop(name: str) -> Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]:
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        return body, {k: v for k, v in headers.items() if k != name}
    return change


@pytest.mark.parametrize(("case", "change", "status"), [
    ("stale: an hour old",
     lambda b, h: signed(b, timestamp=int(time.time()) - 3600), 403),
    ("just past the 300 s tolerance",
     lambda b, h: signed(b, timestamp=int(time.time()) - 400), 403),
    ("from the future", lambda b, h: signed(b, timestamp=int(time.time()) + 3600), 403),
    ("body changed after signing", _tampered, 403),
    ("signed with another key", lambda b, h: signed(b, key=OTHER), 403),
    ("timestamp changed after signing",
     lambda b, h: (b, {**h, "telnyx-timestamp": str(int(h["telnyx-timestamp"]) + 1)}), 403),
    ("signature not base64", lambda b, h: (b, {**h, "telnyx-signature-ed25519": "%%%"}), 403),
    ("no signature header", _drop("telnyx-signature-ed25519"), 401),
    ("no timestamp header", _drop("telnyx-timestamp"), 401),
    ("no headers at all",
     lambda b, h: (b, {"content-type": "application/json"}), 401),
])
def test_bad_signatures_are_refused_and_nothing_is_stored(
        broker_host: Callable[..., Host], case: str,
        change: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]],
        status: int) -> None:
    host = telnyx(broker_host)
    body, headers = change(*signed(INBOUND))
    with serving(host) as client:
        answer = client.post(PATH, content=body, headers=headers)
        rows = stored(client, host)
        receipt_body, receipt_headers = change(*signed(FINALIZED))
        receipt = client.post(PATH, content=receipt_body, headers=receipt_headers)
        orphans = orphan_count(client, host)
    assert answer.status_code == status, answer.text
    assert rows == []
    assert receipt.status_code == status and orphans == 0


def test_event_types_it_does_not_handle_are_acknowledged_and_store_nothing(
        broker_host: Callable[..., Host]) -> None:
    """Not message.received/sent/finalized/read: acknowledged 200 once signed (Telnyx
    retries anything else), nothing kept; no event type at all is a 400."""
    other = {"data": {"event_type": "message.echo",
                      "id": "9c8b7a65-4321-4fed-8cba-9876543210fe",
                      "occurred_at": "2024-01-15T21:40:00.000+00:00",
                      "payload": {"id": "e0f1a2b3-c4d5-4e6f-8a9b-0c1d2e3f4a5b"},
                      "record_type": "event"},
             "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"}}
    voice = {"data": {"event_type": "call.initiated", "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
                      "occurred_at": "2018-02-02T22:25:27.521992Z", "payload": {},
                      "record_type": "event"}}
    host = telnyx(broker_host)
    with serving(host) as client:
        answers = [post(client, other), post(client, voice), post(client, {"data": {}})]
        rows = stored(client, host)
        orphans = orphan_count(client, host)
    assert [a.status_code for a in answers] == [200, 200, 400]
    assert "not a message or receipt" in answers[2].text
    assert rows == [] and orphans == 0


def test_message_received_without_a_sender_is_400(broker_host: Callable[..., Host]) -> None:
    payload = event(INBOUND, **{"from": {}})
    host = telnyx(broker_host)
    with serving(host) as client:
        answer = post(client, payload)
        rows = stored(client, host)
    assert answer.status_code == 400 and "missing from" in answer.text
    assert rows == []


def test_without_a_public_key_webhooks_are_not_checked(broker_host: Callable[..., Host]) -> None:
    """The engine's rule for an empty key: documented, so it is tested too."""
    host = telnyx(broker_host, public="")
    with serving(host) as client:
        answer = client.post(PATH, json=INBOUND)
        rows = stored(client, host)
    assert answer.status_code == 200 and len(rows) == 1


def test_our_signatures_are_the_ones_telnyxs_sdk_verifies(
        broker_host: Callable[..., Host]) -> None:
    """Cross-check with Telnyx's official SDK (pip install telnyx pynacl)."""
    sdk = pytest.importorskip("telnyx.lib.webhook_verification",
                              reason="Telnyx's SDK (telnyx, pynacl) is not installed")
    pytest.importorskip("nacl", reason="pynacl is not installed")
    good_body, good = signed(INBOUND)
    stale_body, stale = signed(INBOUND, timestamp=int(time.time()) - 3600)
    forged_body, forged = _tampered(good_body, good)
    other_body, other = signed(INBOUND, key=OTHER)
    sdk.verify_webhook_signature(good_body, good, PUBLIC)
    for body, headers in ((stale_body, stale), (forged_body, forged), (other_body, other)):
        with pytest.raises(sdk.WebhookVerificationError):
            sdk.verify_webhook_signature(body, headers, PUBLIC)
    host = telnyx(broker_host)
    with serving(host) as client:
        codes = [client.post(PATH, content=b, headers=h).status_code for b, h in (
            (good_body, good), (stale_body, stale), (forged_body, forged),
            (other_body, other))]
    assert codes == [200, 403, 403, 403]


# -- receipts -------------------------------------------------------------------------

def test_receipts_build_the_history_forward_only(broker_host: Callable[..., Host]) -> None:
    host = telnyx(broker_host)
    with serving(host) as client:
        mid = add_outbound(client, host, OUT_ID)
        answers = [post(client, SENT), post(client, FINALIZED),
                   post(client, event(SENT, event_id="late-sent", attempt=2))]
        body = client.get(f"/api/messages/{mid}").json()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert body["status"] == "delivered"
    events = body["events"]
    assert [e["status"] for e in events] == ["queued", "sent", "delivered", "sent"]
    sent, delivered, late = events[1:]
    assert sent["detail"]["broker_status"] == "sent"
    assert sent["detail"]["attrs"]["event_type"] == "message.sent"
    assert delivered["detail"]["broker_status"] == "delivered"
    assert delivered["detail"]["to"] == "+13125550002"
    assert delivered["detail"]["timestamp"] == "2024-01-15T21:32:14.148+00:00"
    assert delivered["detail"]["attrs"] == {"event_type": "message.finalized", "parts": "1",
                                            "cost": "0.0051", "currency": "USD"}
    assert late["detail"]["broker_status"] == "sent"


def test_delivery_failed_records_the_telnyx_error(broker_host: Callable[..., Host]) -> None:
    failed = with_status(FINALIZED, "delivery_failed", errors=[{
        "code": "40300", "title": "Destination number unreachable",
        "detail": "The destination number is not reachable on the carrier network.",
        "source": {"pointer": "/to/0/phone_number"}}])
    host = telnyx(broker_host)
    with serving(host) as client:
        mid = add_outbound(client, host, OUT_ID, status="sent")
        assert post(client, failed).status_code == 200
        body = client.get(f"/api/messages/{mid}").json()
    assert body["status"] == "undelivered"
    detail = body["events"][-1]["detail"]
    assert (detail["broker_status"], detail["error"], detail["error_text"]) == (
        "delivery_failed", "40300",
        "The destination number is not reachable on the carrier network.")


def test_an_error_without_detail_is_described_by_its_title(
        broker_host: Callable[..., Host]) -> None:
    failed = with_status(FINALIZED, "sending_failed",
                         errors=[{"code": "40008", "title": "Undeliverable"}])
    host = telnyx(broker_host)
    with serving(host) as client:
        mid = add_outbound(client, host, OUT_ID)
        post(client, failed)
        body = client.get(f"/api/messages/{mid}").json()
    assert body["status"] == "failed"
    assert body["events"][-1]["detail"]["error_text"] == "Undeliverable"


@pytest.mark.parametrize(("word", "state", "start", "final"), [
    ("queued", "queued", "queued", "queued"),
    ("sending", "sending", "queued", "sending"),
    ("sent", "sent", "queued", "sent"),
    ("delivered", "delivered", "sent", "delivered"),
    ("sending_failed", "failed", "queued", "failed"),
    ("delivery_failed", "undelivered", "sent", "undelivered"),
    ("expired", "expired", "sent", "expired"),
    # final at Telnyx, but says nothing about delivery: history only, status stays sent
    ("delivery_unconfirmed", "unknown", "sent", "sent"),
    ("a_word_telnyx_adds_later", "unknown", "sent", "sent"),
])
def test_every_documented_status_word(broker_host: Callable[..., Host], word: str,
                                      state: str, start: str, final: str) -> None:
    host = telnyx(broker_host)
    with serving(host) as client:
        mid = add_outbound(client, host, OUT_ID, status=start)
        assert post(client, with_status(FINALIZED, word)).status_code == 200
        body = client.get(f"/api/messages/{mid}").json()
    assert [e["status"] for e in body["events"]] == [start, state]
    assert body["events"][-1]["detail"]["broker_status"] == word
    assert body["status"] == final


def test_rcs_read_receipt_counts_as_delivered(broker_host: Callable[..., Host]) -> None:
    host = telnyx(broker_host)
    with serving(host) as client:
        mid = add_outbound(client, host, OUT_ID, status="sent")
        assert post(client, READ).status_code == 200
        body = client.get(f"/api/messages/{mid}").json()
    assert body["status"] == "delivered"
    assert body["events"][-1]["detail"]["attrs"]["event_type"] == "message.read"


def test_receipt_before_the_send_is_recorded_is_kept_then_applied(
        broker_host: Callable[..., Host]) -> None:
    """Telnyx does not order webhooks: a receipt may beat the send's answer."""
    host = telnyx(broker_host)
    with serving(host) as client:
        assert post(client, FINALIZED).status_code == 200
        assert orphan_count(client, host) == 1

        async def recorded() -> int:
            message, _ = await host.messages.add(NewMessage(
                direction="out", body="Hello there!", status="sent", broker="tx",
                broker_message_id=OUT_ID))
            await host.receipts.adopt_orphans(message.id)
            return message.id
        mid = client.portal.call(recorded)  # type: ignore[union-attr]
        body = client.get(f"/api/messages/{mid}").json()
        left = orphan_count(client, host)
    assert body["status"] == "delivered" and left == 0


# -- MT -------------------------------------------------------------------------------

@dataclass
class FakeTelnyx:
    """POST /v2/messages on 127.0.0.1: records each request, answers the next script line."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, status: int, body: dict[str, Any] | str,
               headers: dict[str, str] | None = None) -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.answers.append((status, headers or {}, raw))


@pytest.fixture
def fake_telnyx() -> Iterator[FakeTelnyx]:
    fake = FakeTelnyx()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            fake.requests.append({"method": self.command, "path": self.path,
                                  "headers": {k.lower(): v for k, v in self.headers.items()},
                                  "body": self.rfile.read(length)})
            status, headers, body = fake.answers.pop(0) if fake.answers else (
                500, {}, b'{"errors": [{"code": "10007", "title": "Unexpected error"}]}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    with server_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as fake.server:
        yield fake


MESSAGE = OutboundMessage(id=42, to="+13125550002", from_="+13125550001", text="Hello there!",
                          ref="42")


def local_telnyx(broker_host: Callable[..., Host], fake: FakeTelnyx, options: str = "") -> Host:
    """The broker with its gateway on the fake; MO and MT both plain http (rule B5)."""
    return telnyx(broker_host, options=options,
                  extra=f'encryption = "http"\nmt.gateway = "{fake.url}"',
                  public_url="http://smshost.example.com")


def send(host: Host, message: OutboundMessage = MESSAGE) -> tuple[MtResult, Any]:
    """Build the request, send it over HTTP, read the answer: as the sender does."""
    tx = instance(host)
    account = tx.account_values(tx.accounts["main"])
    request = tx.broker.build_mt_request(message, account)
    assert API_KEY not in request.describe()
    with httpx2.Client(timeout=10) as client:
        response = client.request(request.method, request.url, headers=request.headers,
                                  content=request.body)
    result = tx.broker.read_mt_response(
        MtResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                   response.content), message, account)
    return result, request


def test_send_goes_out_as_telnyx_documents_it(broker_host: Callable[..., Host],
                                              fake_telnyx: FakeTelnyx) -> None:
    fake_telnyx.answer(200, SEND_OK)
    host = local_telnyx(broker_host, fake_telnyx)
    result, request = send(host)
    (wire,) = fake_telnyx.requests
    assert (wire["method"], wire["path"]) == ("POST", "/v2/messages")
    assert request.url == f"{fake_telnyx.url}/v2/messages"
    assert wire["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert wire["headers"]["content-type"] == "application/json"
    assert wire["headers"]["accept"] == "application/json"
    assert "idempotency-key" not in wire["headers"]
    assert json.loads(wire["body"]) == {
        "from": "+13125550001", "to": "+13125550002", "text": "Hello there!",
        "messaging_profile_id": PROFILE,
        "webhook_url": "http://smshost.example.com/telnyx/webhook"}
    assert (result.outcome, result.message_id, result.status) == (
        "accepted", "40385f64-5717-4562-b3fc-2c963f66afa6", 200)


def test_default_gateway_is_api_telnyx_com(broker_host: Callable[..., Host]) -> None:
    host = telnyx(broker_host)
    tx = instance(host)
    request = tx.broker.build_mt_request(MESSAGE, tx.account_values(tx.accounts["main"]))
    assert (request.method, request.url) == ("POST", "https://api.telnyx.com/v2/messages")
    assert json.loads(request.body)["webhook_url"] == \
        "https://smshost.example.com/telnyx/webhook"


def test_unicode_text_and_options_on_the_wire(broker_host: Callable[..., Host],
                                              fake_telnyx: FakeTelnyx) -> None:
    fake_telnyx.answer(200, SEND_OK)
    host = local_telnyx(broker_host, fake_telnyx, options=(
        ', UseProfileWebhooks = "false", IdempotencyKeyPrefix = "smshost-db7-",'
        ' WebhookFailoverURL = "https://backup.example.com/telnyx/webhook"'))
    message = OutboundMessage(id=7, to="+13125550002", from_="+13125550001",
                              text="Grüße 👋 — 你好", encoding="ucs2", ref="7")
    result, _ = send(host, message)
    (wire,) = fake_telnyx.requests
    assert wire["headers"]["idempotency-key"] == "smshost-db7-7"
    sent = json.loads(wire["body"])
    assert sent["text"] == "Grüße 👋 — 你好"
    assert sent["use_profile_webhooks"] is False
    assert sent["webhook_failover_url"] == "https://backup.example.com/telnyx/webhook"
    assert result.outcome == "accepted"


def test_empty_options_are_left_out(broker_host: Callable[..., Host],
                                    fake_telnyx: FakeTelnyx) -> None:
    """No profile id, no per-message webhook: Telnyx then uses the profile's URL."""
    fake_telnyx.answer(200, SEND_OK)
    host = broker_host(TELNYX.format(public=PUBLIC, profile="", api_key=API_KEY,
                                     options=', ExternalDeliveryStatusURI = ""',
                                     extra=f'encryption = "http"\nmt.gateway = '
                                     f'"{fake_telnyx.url}"'),
                       public_url="http://smshost.example.com")
    send(host)
    (wire,) = fake_telnyx.requests
    assert json.loads(wire["body"]) == {"from": "+13125550001", "to": "+13125550002",
                                        "text": "Hello there!"}


@pytest.mark.parametrize(("status", "headers", "body", "expect"), [
    (200, {}, SEND_OK, ("accepted", "40385f64-5717-4562-b3fc-2c963f66afa6", None, None, None)),
    (200, {}, {"data": {}}, ("fail", None, None, 'HTTP 200: {"data": {}}', None)),
    (422, {}, TOO_LARGE, ("fail", None, "40302", TOO_LARGE["errors"][0]["detail"], None)),
    (400, {}, {"errors": [{"code": "40310", "title": "Invalid 'to' address",
                           "detail": "The 'to' address should be a single valid number."}]},
     ("fail", None, "40310", "The 'to' address should be a single valid number.", None)),
    (401, {}, {"errors": [{"code": "10009", "title": "Authentication failed"}]},
     ("fail", None, "10009", "Authentication failed", None)),
    (429, {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "7"},
     TOO_MANY, ("retry", None, "10011", TOO_MANY["errors"][0]["detail"], 7.0)),
    (429, {"Retry-After": "2", "x-ratelimit-reset": "7"}, TOO_MANY,
     ("retry", None, "10011", TOO_MANY["errors"][0]["detail"], 2.0)),
    (503, {}, "Service Unavailable", ("retry", None, None, "HTTP 503: Service Unavailable",
                                      None)),
    (500, {}, {"errors": [{"code": "10007", "title": "Unexpected error"}]},
     ("retry", None, "10007", "Unexpected error", None)),
])
def test_documented_answers(broker_host: Callable[..., Host], fake_telnyx: FakeTelnyx,
                            status: int, headers: dict[str, str], body: Any,
                            expect: tuple[Any, ...]) -> None:
    fake_telnyx.answer(status, body, headers)
    host = local_telnyx(broker_host, fake_telnyx)
    result, _ = send(host)
    assert len(fake_telnyx.requests) == 1
    assert (result.outcome, result.message_id, result.error_code, result.error,
            result.retry_after, result.status) == (*expect, status)


def test_send_then_receipts_end_to_end(broker_host: Callable[..., Host],
                                       fake_telnyx: FakeTelnyx) -> None:
    """The id Telnyx answers with is the one its receipts name."""
    fake_telnyx.answer(200, SEND_OK)
    host = local_telnyx(broker_host, fake_telnyx)
    result, _ = send(host)
    assert result.message_id is not None
    with serving(host) as client:
        mid = add_outbound(client, host, result.message_id, status="sent")
        post(client, event(SENT, id=result.message_id))
        post(client, event(FINALIZED, id=result.message_id))
        body = client.get(f"/api/messages/{mid}").json()
    assert body["status"] == "delivered"
    assert [e["status"] for e in body["events"]] == ["sent", "sent", "delivered"]


@pytest.mark.parametrize(("key", "problem"), [
    ("not base64!", "is not base64"),
    (base64.b64encode(b"x" * 31).decode(), "decodes to 31 bytes; an Ed25519 public key has 32"),
])
def test_check_reports_a_malformed_public_key_with_its_line(
        tmp_path: Path, key: str, problem: str) -> None:
    """A key pasted wrong would refuse every webhook as forged (403): `smshost check`
    names the file, line and key instead, and exits non-zero."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "brokers.toml").write_text(TELNYX.format(public=key, profile=PROFILE, options="",
                                                    extra="", api_key=API_KEY))
    (cfg / "smshost.toml").write_text('[server]\npublic_url = "https://sms.example.com"\n')
    (cfg / "routes.toml").write_text("[routing]\nenabled = false\n")
    result = run_cli("check", "--config", str(cfg))
    assert "1 problem(s)." in result.stdout, result.stdout
    assert result.returncode != 0
    assert (f"brokers.toml:5: brokers[0].options: the telnyx-ed25519 signature key "
            f"({{options.PublicKey}}) {problem}; no webhook could be verified") in result.stdout
    assert key not in result.stdout  # a public key, but still a secret option: masked
