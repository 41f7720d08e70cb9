"""The shipped vonage broker (Vonage SMS API, formerly Nexmo) through real interfaces.

Webhooks go over HTTP to the host's listener (Starlette TestClient) shaped as Vonage
documents them; signatures come from Vonage's own Python SDK (vonage-http-client,
``Auth.sign_params``) for the HMAC methods, and from the documented recipe, checked
against a vector of Vonage's SDK tests, for "MD5 hash", which the current SDK no
longer computes. Outbound requests are built by the broker and sent with a real HTTP
client to a fake Vonage API on 127.0.0.1.

Vonage's documents:
https://developer.vonage.com/messaging/sms/guides/inbound-sms
https://developer.vonage.com/messaging/sms/guides/delivery-receipts
https://developer.vonage.com/getting-started/concepts/signing-messages
https://developer.vonage.com/messaging/sms/guides/troubleshooting-sms
https://developer.vonage.com/api-errors/sms
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx2
import pytest

from host.brokers.engine import OutboundMessage
from host.brokers.http import MtResponse
from host.brokers.signatures import vonage_signature
from host.core import Host
from host.messages import NewMessage
from tests.brokers.conftest import serving, stored
from tests.conftest import server_in_thread

API_KEY = "abcd1234"
API_SECRET = "test-api-secret-0f3b"
SIG_SECRET = "test-signature-secret-93c1"
OUR_NUMBER = "+447700900000"
MO_PATH = "/vonage/inbound-sms"
DLR_PATH = "/vonage/delivery-receipt"

VONAGE = """
[[brokers]]
name = "vonage"
definition = "vonage"
{extra}

[[brokers.accounts]]
id = "main"
login = "abcd1234"
password = "test-api-secret-0f3b"
local_address = "+447700900000"
{accounts}
"""


def vonage(broker_host: Callable[..., Host], extra: str = "", accounts: str = "",
           **kwargs: Any) -> Host:
    return broker_host(VONAGE.format(extra=extra, accounts=accounts), **kwargs)


def signed_host(broker_host: Callable[..., Host], method: str = "md5hash",
                extra: str = "") -> Host:
    return vonage(broker_host, f'options = {{ SignatureSecret = "{SIG_SECRET}", '
                               f'SignatureMethod = "{method}" }}\n{extra}')


def inbound(message_id: str = "0A0000000123ABCD1", text: str = "Hello world",
            msisdn: str = "447700900001", **extra: str) -> dict[str, str]:
    """An inbound SMS as Vonage sends it (InboundMessage of the SMS API spec)."""
    payload = {"msisdn": msisdn, "to": "447700900000", "messageId": message_id,
               "text": text, "type": "text", "keyword": text.split()[0].upper(),
               "message-timestamp": "2026-01-01 12:00:00", "api-key": API_KEY}
    payload.update(extra)
    return payload


def receipt(message_id: str, status: str, err_code: str = "0",
            **extra: str) -> dict[str, str]:
    """A delivery receipt as Vonage sends it (DeliveryReceipt of the SMS API spec)."""
    payload = {"msisdn": "447700900001", "to": "447700900000", "network-code": "23410",
               "messageId": message_id, "price": "0.03330000", "status": status,
               "scts": "2601011210", "err-code": err_code, "api-key": API_KEY,
               "message-timestamp": "2026-01-01 12:10:29"}
    payload.update(extra)
    return payload


def deliver(client: Any, how: str, payload: dict[str, str], path: str = MO_PATH) -> Any:
    """Send ``payload`` the way Vonage's dashboard setting ``how`` makes it."""
    if how == "GET":
        return client.get(path, params=payload)
    if how == "POST":
        return client.post(path, data=payload)
    assert how == "POST-JSON"
    return client.post(path, json=payload)


HOW = ("GET", "POST", "POST-JSON")


# -- signing ---------------------------------------------------------------------------

def sdk_sign(params: dict[str, str], secret: str, method: str) -> str:
    """sig by Vonage's Python SDK (HMAC methods: md5, sha1, sha256, sha512)."""
    auth = pytest.importorskip("vonage_http_client.auth")
    return str(auth.Auth(api_key=API_KEY, signature_secret=secret,
                         signature_method=method).sign_params(dict(params)))


def md5hash_sign(params: dict[str, str], secret: str) -> str:
    """Vonage's default "MD5 hash", by the signing-messages guide: md5 of the sorted
    "&key=value" pairs (& and = in values replaced by _) followed by the secret."""
    text = "".join(f"&{key}={value.replace('&', '_').replace('=', '_')}"
                   for key, value in sorted(params.items()))
    return hashlib.md5((text + secret).encode()).hexdigest()


def sign(params: dict[str, str], method: str, secret: str = SIG_SECRET,
         timestamp: float | None = None) -> dict[str, str]:
    """``params`` plus timestamp, nonce and sig, as a signed Vonage webhook."""
    out = dict(params, timestamp=str(int(time.time() if timestamp is None else timestamp)),
               nonce="6d4f9a3e-58c2-4e0f-9c1b-2a7e5d3f1b90")
    out["sig"] = md5hash_sign(out, secret) if method == "md5hash" else \
        sdk_sign(out, secret, method)
    return out


def test_md5hash_recipe_matches_vonage_sdk_vector() -> None:
    """The documented recipe gives the value Vonage's Python SDK tests pin for MD5 hash
    (vonage 3.x tests/test_signature.py: a=1, b=2, timestamp=1461605396, "secret"), and
    the engine's scheme agrees with it and with the current SDK's HMAC vectors."""
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert md5hash_sign(params, "secret") == "6af838ef94998832dbfc29020b564830"
    assert vonage_signature(params, "secret", "md5hash") == "6af838ef94998832dbfc29020b564830"
    hmac_params = {"param1": "value&1", "param2": "value=2", "timestamp": "1234567890"}
    for method in ("md5", "sha1", "sha256", "sha512"):
        assert vonage_signature(hmac_params, "signature_secret", method) == \
            sdk_sign(hmac_params, "signature_secret", method)


# -- inbound SMS -----------------------------------------------------------------------

@pytest.mark.parametrize("how", HOW)
def test_mo_is_stored_and_answered_204(broker_host: Callable[..., Host], how: str) -> None:
    host = vonage(broker_host)
    with serving(host) as client:
        response = deliver(client, how, inbound(text="Hello world from Vonage"))
        rows = stored(client, host)
    assert response.status_code == 204 and response.content == b""
    (row,) = rows
    assert (row["direction"], row["broker"], row["account"], row["remote"], row["local"],
            row["body"], row["broker_message_id"], row["status"], row["encoding"]) == (
        "in", "vonage", "main", "+447700900001", OUR_NUMBER, "Hello world from Vonage",
        "0A0000000123ABCD1", "received", "gsm7")
    attrs = json.loads(row["attrs"])
    assert attrs == {"type": "text", "keyword": "HELLO",
                     "message-timestamp": "2026-01-01 12:00:00"}


@pytest.mark.parametrize("how", HOW)
def test_unicode_mo(broker_host: Callable[..., Host], how: str) -> None:
    host = vonage(broker_host)
    text = "Grüße aus Köln – привет 👋"
    with serving(host) as client:
        response = deliver(client, how, inbound(text=text, type="unicode"))
        (row,) = stored(client, host)
    assert response.status_code == 204
    assert (row["body"], row["encoding"]) == (text, "ucs2")


@pytest.mark.parametrize(("region", "msisdn", "e164"), [
    ("FR", "447700900001", "+447700900001"),  # UK, the documentation's example
    ("FR", "14155550123", "+14155550123"),    # US
    # numbers that would also read as national numbers of the instance's region
    ("DE", "51912345678", "+51912345678"),    # Peru, not +49 5191...
    ("US", "5072001234", "+5072001234"),      # Panama, not +1 507...
    ("GB", "3723212345", "+3723212345"),      # Estonia, not +44 3723...
])
def test_msisdn_without_plus_is_stored_in_e164(broker_host: Callable[..., Host], region: str,
                                                msisdn: str, e164: str) -> None:
    """Vonage sends international numbers without '+' (E.164 digits); the instance's
    region must not turn them into national numbers of its own country."""
    host = vonage(broker_host, f'region = "{region}"')
    with serving(host) as client:
        assert deliver(client, "GET", inbound(msisdn=msisdn)).status_code == 204
        (row,) = stored(client, host)
    assert (row["remote"], row["local"]) == (e164, OUR_NUMBER)


def test_api_key_picks_the_account(broker_host: Callable[..., Host]) -> None:
    second = """
[[brokers.accounts]]
id = "second"
login = "efgh5678"
password = "other-secret"
local_address = "+447700900999"
"""
    host = vonage(broker_host, accounts=second)
    with serving(host) as client:
        deliver(client, "POST", inbound("m-1", **{"api-key": "efgh5678",
                                                 "to": "447700900999"}))
        deliver(client, "POST", inbound("m-2"))
        rows = stored(client, host)
    assert [(r["account"], r["local"]) for r in rows] == [
        ("second", "+447700900999"), ("main", OUR_NUMBER)]


def test_retries_of_one_mo_store_one_row(broker_host: Callable[..., Host]) -> None:
    """Vonage resends an MO until it gets 200/204: every retry is answered the same and
    nothing is stored twice, whichever way it arrives."""
    host = vonage(broker_host)
    with serving(host) as client:
        answers = [deliver(client, how, inbound("0A0000000123RETRY")) for how in HOW * 2]
        rows = stored(client, host)
    assert [a.status_code for a in answers] == [204] * 6
    assert len(rows) == 1 and rows[0]["broker_message_id"] == "0A0000000123RETRY"


@pytest.mark.parametrize(("payload", "reason"), [
    ({"to": "447700900000", "messageId": "x1", "text": "no sender"}, "missing from"),
    ({"msisdn": "447700900001", "text": "no id"}, "missing id"),
    ({"msisdn": "447700900001", "messageId": "x2", "concat": "true", "concat-ref": "1",
      "concat-total": "three", "concat-part": "1"}, "concat-total must be a whole number"),
])
def test_unreadable_mo_is_400_and_not_stored(broker_host: Callable[..., Host],
                                             payload: dict[str, str], reason: str) -> None:
    host = vonage(broker_host)
    with serving(host) as client:
        response = deliver(client, "POST", payload)
        rows = stored(client, host)
    assert response.status_code == 400 and reason in response.text
    assert rows == []


def test_health_check_stores_nothing(broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)
    with serving(host) as client:
        response = client.get(MO_PATH, params={"healthcheckignore": "1"})
        rows = stored(client, host)
    assert response.status_code == 200 and response.text.startswith("alive")
    assert rows == []


# -- concatenated inbound SMS ------------------------------------------------------------

PARTS = {1: "Vonage does not join long inbound messages: each part reaches the webhook ",
         2: "on its own, with concat-ref, concat-total and concat-part, in any order, ",
         3: "and smshost puts them back together."}


def part(number: int, ref: str = "A1", total: int = 3) -> dict[str, str]:
    return inbound(f"0A00000001234P{ref}{number}", PARTS[number], concat="true",
                   **{"concat-ref": ref, "concat-total": str(total),
                      "concat-part": str(number)})


def test_parts_out_of_order_with_duplicates_make_one_message(
        broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)
    with serving(host) as client:
        answers = [deliver(client, "POST", part(3))]
        after_first = stored(client, host)
        answers += [deliver(client, "GET", part(1)), deliver(client, "POST-JSON", part(1))]
        after_dup = stored(client, host)
        answers += [deliver(client, "POST", part(2)), deliver(client, "GET", part(2)),
                    deliver(client, "POST", part(3))]
        rows = stored(client, host)
    assert [a.status_code for a in answers] == [204] * 6
    assert after_first == [] and after_dup == []
    (row,) = rows
    assert row["body"] == PARTS[1] + PARTS[2] + PARTS[3]
    assert (row["segments"], row["remote"], row["local"], row["broker_message_id"]) == (
        3, "+447700900001", OUR_NUMBER, "0A00000001234PA11")
    attrs = json.loads(row["attrs"])
    assert attrs["concat_ref"] == "A1" and attrs["concat_total"] == 3
    assert "concat_incomplete" not in attrs


def test_same_ref_from_two_senders_stays_apart(broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)
    with serving(host) as client:
        for number in (1, 2, 3):
            deliver(client, "POST", part(number))
            other = dict(part(number), msisdn="14155550123",
                         messageId=f"0B0000000999{number}")
            deliver(client, "POST", other)
        rows = stored(client, host)
    assert sorted(r["remote"] for r in rows) == ["+14155550123", "+447700900001"]
    assert {r["body"] for r in rows} == {PARTS[1] + PARTS[2] + PARTS[3]}


def test_missing_part_is_delivered_incomplete_after_the_timeout(
        broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)

    async def expire(moment: datetime) -> list[Any]:
        return await host.concat.expire("vonage", 300, now=moment)

    with serving(host) as client:
        deliver(client, "POST", part(1, ref="B2"))
        deliver(client, "GET", part(3, ref="B2"))
        early = client.portal.call(expire, datetime.now(UTC))
        before = stored(client, host)
        late = client.portal.call(expire, datetime.now(UTC) + timedelta(seconds=301))
        rows = stored(client, host)
        again = client.portal.call(expire, datetime.now(UTC) + timedelta(hours=2))
    assert early == [] and before == []
    assert len(late) == 1 and again == []
    (row,) = rows
    assert row["body"] == PARTS[1] + "[...]" + PARTS[3]
    attrs = json.loads(row["attrs"])
    assert attrs["concat_incomplete"] is True and attrs["concat_missing"] == [2]


# -- signed webhooks ---------------------------------------------------------------------

@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
@pytest.mark.parametrize("how", HOW)
def test_signed_mo_is_accepted(broker_host: Callable[..., Host], method: str,
                               how: str) -> None:
    host = signed_host(broker_host, method)
    payload = sign(inbound(text="Signed & sealed = delivered"), method)
    with serving(host) as client:
        response = deliver(client, how, payload)
        rows = stored(client, host)
    assert response.status_code == 204, response.text
    assert [r["body"] for r in rows] == ["Signed & sealed = delivered"]


def test_uppercase_hmac_sig_is_accepted(broker_host: Callable[..., Host]) -> None:
    """Vonage's HMAC signatures arrive in upper case (the API spec's example sig)."""
    host = signed_host(broker_host, "sha256")
    payload = sign(inbound(), "sha256")
    payload["sig"] = payload["sig"].upper()
    with serving(host) as client:
        assert deliver(client, "POST", payload).status_code == 204
        assert len(stored(client, host)) == 1


def test_signed_receipt_is_applied(broker_host: Callable[..., Host]) -> None:
    host = signed_host(broker_host, "sha512")
    with serving(host) as client:
        message = outbound(client, host, "0B00000127FDBC63")
        response = deliver(client, "GET", sign(receipt("0B00000127FDBC63", "delivered"),
                                               "sha512"), DLR_PATH)
        body = client.get(f"/api/messages/{message.id}").json()
    assert response.status_code == 204
    assert body["status"] == "delivered"


def tampered(payload: dict[str, str]) -> dict[str, str]:
    return dict(payload, text="Send the money to another account")


@pytest.mark.parametrize(("name", "make", "status"), [
    ("text changed after signing", lambda: tampered(sign(inbound(), "sha256")), 403),
    ("signed with another secret", lambda: sign(inbound(), "sha256", secret="not-ours"), 403),
    ("signed with another method", lambda: sign(inbound(), "sha1"), 403),
    ("sig of another message", lambda: dict(sign(inbound(), "sha256"),
                                            messageId="0A0000000123OTHER"), 403),
    ("stale: timestamp 26 hours old",
     lambda: sign(inbound(), "sha256", timestamp=time.time() - 26 * 3600), 403),
    ("from the future", lambda: sign(inbound(), "sha256", timestamp=time.time() + 26 * 3600),
     403),
    ("no sig", lambda: {k: v for k, v in sign(inbound(), "sha256").items() if k != "sig"},
     401),
    ("unsigned", inbound, 401),
])
@pytest.mark.parametrize("how", HOW)
def test_bad_signatures_are_refused_and_nothing_stored(
        broker_host: Callable[..., Host], name: str, make: Callable[[], dict[str, str]],
        status: int, how: str) -> None:
    host = signed_host(broker_host, "sha256")
    with serving(host) as client:
        response = deliver(client, how, make())
        rows = stored(client, host)
    assert response.status_code == status, (name, response.text)
    assert rows == []


def test_forged_receipt_changes_nothing(broker_host: Callable[..., Host]) -> None:
    host = signed_host(broker_host, "md5hash")
    forged = dict(sign(receipt("0B00000127FDBC70", "delivered"), "md5hash"), status="failed")
    with serving(host) as client:
        message = outbound(client, host, "0B00000127FDBC70")
        response = deliver(client, "POST", forged, DLR_PATH)
        body = client.get(f"/api/messages/{message.id}").json()
    assert response.status_code == 403
    assert body["status"] == "sent" and [e["status"] for e in body["events"]] == ["sent"]


def test_a_vonage_retry_hours_later_is_still_accepted(broker_host: Callable[..., Host]) -> None:
    """`timestamp` is when Vonage *started* to push; it resends for 24 hours, so a retry
    signed two hours ago must pass (and is still stored once)."""
    host = signed_host(broker_host, "sha256")
    payload = sign(inbound(), "sha256", timestamp=time.time() - 2 * 3600)
    with serving(host) as client:
        answers = [deliver(client, "POST", payload) for _ in range(2)]
        rows = stored(client, host)
    assert [a.status_code for a in answers] == [204, 204] and len(rows) == 1


def test_unknown_signature_method_refuses_with_a_reason(
        broker_host: Callable[..., Host]) -> None:
    host = signed_host(broker_host, "sha384")
    with serving(host) as client:
        response = deliver(client, "POST", sign(inbound(), "sha256"))
        rows = stored(client, host)
    assert response.status_code == 403 and "SignatureMethod" in response.text
    assert rows == []


def test_without_a_secret_nothing_is_checked(broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)
    with serving(host) as client:
        response = deliver(client, "POST", dict(inbound(), sig="whatever", timestamp="1"))
        rows = stored(client, host)
    assert response.status_code == 204 and len(rows) == 1


# -- delivery receipts -------------------------------------------------------------------

def outbound(client: Any, host: Host, broker_id: str, status: str = "sent") -> Any:
    async def add() -> Any:
        message, _ = await host.messages.add(NewMessage(
            direction="out", body="Hi from smshost", status=status, broker="vonage",
            account="main", local=OUR_NUMBER, remote="+447700900001",
            broker_message_id=broker_id))
        return message
    return client.portal.call(add)


def history(client: Any, message_id: int) -> dict[str, Any]:
    response = client.get(f"/api/messages/{message_id}",
                          headers={"Authorization": "Bearer test-token"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_receipts_build_the_status_history(broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)
    with serving(host) as client:
        message = outbound(client, host, "0B00000127FDBC63")
        answers = [
            deliver(client, "POST-JSON", receipt("0B00000127FDBC63", "buffered"), DLR_PATH),
            deliver(client, "POST", receipt("0B00000127FDBC63", "delivered"), DLR_PATH),
            # a late one after the final state: history only
            deliver(client, "GET", receipt("0B00000127FDBC63", "accepted"), DLR_PATH),
        ]
        body = history(client, message.id)
    assert [a.status_code for a in answers] == [204, 204, 204]
    assert body["status"] == "delivered"
    events = body["events"]
    assert [e["status"] for e in events] == ["sent", "sent", "delivered", "sent"]
    assert [e["detail"].get("broker_status") for e in events[1:]] == [
        "buffered", "delivered", "accepted"]
    delivered = events[2]["detail"]
    assert delivered["attrs"] == {"network-code": "23410", "price": "0.03330000",
                                  "scts": "2601011210"}
    assert delivered["to"] == "+447700900001"
    assert delivered["timestamp"] == "2026-01-01 12:10:29"
    assert "error" not in delivered  # err-code 0 is "no error"


@pytest.mark.parametrize(("word", "state"), [
    ("delivered", "delivered"), ("expired", "expired"), ("failed", "undelivered"),
    ("rejected", "rejected"), ("accepted", "sent"), ("buffered", "sent"),
    ("unknown", "queued"), ("something-new", "queued"),
])
def test_status_words_map_to_states(broker_host: Callable[..., Host], word: str,
                                    state: str) -> None:
    """Every documented DLR status; `unknown` (and anything undocumented) is recorded
    as unknown, which never changes a message's status."""
    host = vonage(broker_host)
    with serving(host) as client:
        message = outbound(client, host, "0B0000000000MAP1", status="queued")
        err = "0" if word in ("delivered", "accepted", "buffered") else "5"
        assert deliver(client, "POST", receipt("0B0000000000MAP1", word, err),
                       DLR_PATH).status_code == 204
        body = history(client, message.id)
    assert body["status"] == state
    last = body["events"][-1]
    assert last["status"] == ("unknown" if state == "queued" else state)
    assert last["detail"]["broker_status"] == word


def test_failed_receipt_keeps_the_err_code(broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)
    with serving(host) as client:
        message = outbound(client, host, "0B00000127FDBC64")
        deliver(client, "GET", receipt("0B00000127FDBC64", "failed", "6"), DLR_PATH)
        body = history(client, message.id)
    assert body["status"] == "undelivered"
    assert body["events"][-1]["detail"]["error"] == "6"


def test_receipt_of_another_part_is_tied_by_client_ref(broker_host: Callable[..., Host]) -> None:
    """A long message has one messageId per part but smshost keeps the first; the
    receipts of the other parts find the message through client-ref (our reference)."""
    host = vonage(broker_host)
    with serving(host) as client:
        message = outbound(client, host, "0C000000217B7F02")
        response = deliver(client, "POST", receipt("0C000000217B7F03", "delivered",
                                                   **{"client-ref": str(message.id)}),
                           DLR_PATH)
        body = history(client, message.id)
    assert response.status_code == 204
    assert body["status"] == "delivered"


def test_receipt_before_the_send_recorded_its_id_is_kept(
        broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)

    async def adopt(message_id: int) -> Any:
        return await host.receipts.adopt_orphans(message_id)

    with serving(host) as client:
        response = deliver(client, "POST", receipt("0B0000000000LATE", "delivered"),
                           DLR_PATH)
        message = outbound(client, host, "0B0000000000LATE")
        client.portal.call(adopt, message.id)
        body = history(client, message.id)
    assert response.status_code == 204 and body["status"] == "delivered"


def test_mo_and_receipts_can_share_one_url(broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host, 'mo = { path = "/vonage/webhook", '
                               'receipt_path = "/vonage/webhook" }')
    with serving(host) as client:
        message = outbound(client, host, "0B00000127FDBC99")
        mo_answer = deliver(client, "POST", inbound("0A000000012SHARED"), "/vonage/webhook")
        dlr_answer = deliver(client, "POST", receipt("0B00000127FDBC99", "delivered"),
                             "/vonage/webhook")
        rows = stored(client, host)
        body = history(client, message.id)
    assert (mo_answer.status_code, dlr_answer.status_code) == (204, 204)
    assert [r["direction"] for r in rows] == ["out", "in"]
    assert body["status"] == "delivered"


# -- sending -----------------------------------------------------------------------------

class _FakeVonage(BaseHTTPRequestHandler):
    """Records each request and answers with the next queued (status, body)."""

    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.received.append({"method": self.command, "path": self.path,
                                     "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})
        status, answer = self.server.answers.pop(0)
        data = answer.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    received: list[dict[str, Any]]
    answers: list[tuple[int, str]]


@contextmanager
def fake_vonage() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _FakeVonage)
    server.received, server.answers = [], []
    with server_in_thread(server):
        yield server


def mt_host(broker_host: Callable[..., Host], port: int) -> Host:
    """An instance whose gateway is the fake Vonage (plain HTTP, so MO is http too)."""
    return vonage(broker_host, f'encryption = "http"\nmt = {{ gateway = '
                               f'"http://127.0.0.1:{port}" }}',
                  public_url="http://smshost.test")


def send(host: Host, server: _Server, message: OutboundMessage,
         answer: tuple[int, str]) -> tuple[dict[str, Any], Any]:
    """Build the request, send it over HTTP to the fake Vonage, read its answer."""
    instance = host.brokers["vonage"]
    account = instance.account_values(instance.accounts["main"])
    request = instance.broker.build_mt_request(message, account)
    server.answers.append(answer)
    with httpx2.Client(trust_env=False, timeout=5.0) as client:
        response = client.request(request.method, request.url, headers=request.headers,
                                  content=request.body)
    (wire,) = server.received[-1:]
    result = instance.broker.read_mt_response(
        MtResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                   response.content), message, account)
    assert API_SECRET not in request.describe()
    return wire, result


ACCEPTED = json.dumps({"message-count": "1", "messages": [{
    "to": "447700900001", "message-id": "0A0000000123ABCD1", "status": "0",
    "remaining-balance": "3.14159265", "message-price": "0.03330000", "network": "12345"}]})


def form_of(wire: dict[str, Any]) -> dict[str, list[str]]:
    return parse_qs(wire["body"].decode("ascii"), keep_blank_values=True, strict_parsing=True)


def test_send_gsm_text(broker_host: Callable[..., Host]) -> None:
    with fake_vonage() as server:
        host = mt_host(broker_host, server.server_address[1])
        message = OutboundMessage(id=42, ref="42", to="+447700900001", from_=OUR_NUMBER,
                                  text="Hello from smshost & friends = 100%")
        wire, result = send(host, server, message, (200, ACCEPTED))
    assert (wire["method"], wire["path"]) == ("POST", "/sms/json")
    assert wire["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert form_of(wire) == {
        "api_key": [API_KEY], "api_secret": [API_SECRET], "from": ["447700900000"],
        "to": ["447700900001"], "text": ["Hello from smshost & friends = 100%"],
        "type": ["text"], "callback": ["http://smshost.test/vonage/delivery-receipt"],
        "client-ref": ["42"]}
    assert (result.outcome, result.message_id, result.status) == (
        "accepted", "0A0000000123ABCD1", 200)


def test_send_unicode_text(broker_host: Callable[..., Host]) -> None:
    text = "Grüße 👋 привет"
    with fake_vonage() as server:
        host = mt_host(broker_host, server.server_address[1])
        message = OutboundMessage(id=43, ref="43", to="+14155550123", from_=OUR_NUMBER,
                                  text=text, encoding="ucs2")
        wire, result = send(host, server, message, (200, ACCEPTED))
    form = form_of(wire)
    assert form["type"] == ["unicode"] and form["text"] == [text]
    assert form["to"] == ["14155550123"] and form["client-ref"] == ["43"]
    assert result.outcome == "accepted"


def test_send_with_an_alphanumeric_sender(broker_host: Callable[..., Host]) -> None:
    with fake_vonage() as server:
        port = server.server_address[1]
        host = vonage(broker_host, f'encryption = "http"\nmt = {{ gateway = '
                                   f'"http://127.0.0.1:{port}" }}\n'
                                   'options = { Sender = "AcmeInc", '
                                   'ExternalDeliveryStatusURI = "" }',
                      public_url="http://smshost.test")
        message = OutboundMessage(id=44, ref="44", to="+447700900001", from_=OUR_NUMBER,
                                  text="Hi")
        wire, _ = send(host, server, message, (200, ACCEPTED))
    form = form_of(wire)
    assert form["from"] == ["AcmeInc"] and "callback" not in form


@pytest.mark.parametrize(("answer", "outcome", "error", "code"), [
    ((200, json.dumps({"message-count": "1", "messages": [
        {"status": "1", "error-text": "Throughput Rate Exceeded - please wait [ 10 ] and "
                                      "retry"}]})),
     "retry", "Throughput Rate Exceeded - please wait [ 10 ] and retry", "1"),
    ((200, json.dumps({"message-count": "1", "messages": [
        {"status": "2", "error-text": "Missing to param"}]})),
     "fail", "Missing to param", "2"),
    ((200, json.dumps({"message-count": "1", "messages": [
        {"status": "29", "error-text": "Non White-listed Destination - rejected"}]})),
     "fail", "Non White-listed Destination - rejected", "29"),
    ((500, '{"error": "internal"}'), "retry", 'HTTP 500: {"error": "internal"}', None),
    ((403, '{"title": "Forbidden"}'), "fail", 'HTTP 403: {"title": "Forbidden"}', None),
])
def test_send_answers(broker_host: Callable[..., Host], answer: tuple[int, str], outcome: str,
                      error: str, code: str | None) -> None:
    with fake_vonage() as server:
        host = mt_host(broker_host, server.server_address[1])
        message = OutboundMessage(id=45, ref="45", to="+447700900001", from_=OUR_NUMBER,
                                  text="Hi")
        wire, result = send(host, server, message, answer)
    assert wire["path"] == "/sms/json"
    assert (result.outcome, result.message_id, result.error, result.error_code) == (
        outcome, None, error, code)


def test_default_gateway_is_vonages(broker_host: Callable[..., Host]) -> None:
    host = vonage(broker_host)
    instance = host.brokers["vonage"]
    request = instance.broker.build_mt_request(
        OutboundMessage(id=1, ref="1", to="+447700900001", from_=OUR_NUMBER, text="x"),
        instance.account_values(instance.accounts["main"]))
    assert (request.method, request.url) == ("POST", "https://rest.nexmo.com/sms/json")
    assert parse_qs(request.body.decode())["callback"] == [
        "https://smshost.example.com/vonage/delivery-receipt"]
