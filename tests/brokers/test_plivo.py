"""The shipped plivo broker, through the real webhook and send paths.

Webhooks are posted over HTTP to the broker paths, shaped as Plivo documents them
(https://plivo.com/docs/messaging/api/message/handling-incoming,
https://plivo.com/docs/messaging/api/message/message-status-callbacks) and signed at test
time with Plivo's official Python SDK (``plivo``, a test-only dependency). Sends are built
by the broker and put on the wire with a real HTTP client to a fake Plivo API on
127.0.0.1, which answers as https://docs.plivo.com/docs/messaging/api/response shows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
import pytest
from plivo.utils import (  # type: ignore[import-untyped]
    validate_signature,
    validate_v3_signature,
)
from plivo.utils.signature_v3 import (  # type: ignore[import-untyped]
    construct_get_url,
    construct_post_url,
    get_signature_v3,
)

from host.brokers.engine import OutboundMessage
from host.brokers.http import MtResponse
from host.core import Host
from host.messages import NewMessage
from tests.brokers.conftest import PUBLIC_URL, serving, stored
from tests.conftest import run_cli, server_in_thread

AUTH_ID = "MAZDQ1ZWFHYTBHOWM0NJ"
AUTH_TOKEN = "plivo-test-auth-token-5b0e"
MAIN_TOKEN = "plivo-main-account-token-91ad"
MO_URL = f"{PUBLIC_URL}/plivo/mo"
DLR_URL = f"{PUBLIC_URL}/plivo/receipt"
FIXTURES = Path(__file__).resolve().parents[2] / "plugins" / "brokers" / "plivo.fixtures.toml"

PLIVO = """
[[brokers]]
name = "plivo"
definition = "plivo"
{extra}

[[brokers.accounts]]
id = "main"
login = "{auth_id}"
password = "{token}"
local_address = "+14155550100"
"""


def plivo_host(broker_host: Callable[..., Host], extra: str = "", token: str = AUTH_TOKEN,
               **kwargs: Any) -> Host:
    return broker_host(PLIVO.format(extra=extra, auth_id=AUTH_ID, token=token), **kwargs)


# -- signing with Plivo's SDK ------------------------------------------------------------

def sign_v3(url: str, params: dict[str, str], nonce: str, token: str = AUTH_TOKEN,
            method: str = "POST") -> str:
    """X-Plivo-Signature-V3 as Plivo's SDK computes it (and checks it)."""
    base = (construct_post_url(url, dict(params)) if method == "POST"
            else construct_get_url(url, {}))
    signature: str = get_signature_v3(token.encode(), base.decode(), nonce.encode()).decode()
    assert validate_v3_signature(method, url, nonce, token, signature,
                                 dict(params) if method == "POST" else None)
    return signature


def sign_v2(url: str, nonce: str, token: str = AUTH_TOKEN) -> str:
    """X-Plivo-Signature-V2 per the messaging docs; the SDK's validate_signature agrees."""
    parts = urlsplit(url)
    data = f"{parts.scheme}://{parts.netloc}{parts.path}{nonce}".encode()
    signature = base64.b64encode(hmac.new(token.encode(), data, hashlib.sha256).digest()).decode()
    assert validate_signature(url, nonce, signature, token)
    return signature


def v3_headers(url: str, params: dict[str, str], nonce: str = "04939219465287453961",
               token: str = AUTH_TOKEN, header: str = "X-Plivo-Signature-V3") -> dict[str, str]:
    return {header: sign_v3(url, params, nonce, token), "X-Plivo-Signature-V3-Nonce": nonce}


def inbound(uuid: str = "7a242edc-2f57-11e7-98c9-06ab0bf64327", text: str = "Hello from Plivo",
            **extra: str) -> dict[str, str]:
    """An incoming SMS as Plivo posts it to the message_url."""
    return {"From": "14155550123", "To": "14155550100", "Type": "sms", "Text": text,
            "MessageUUID": uuid, "Units": "1", "TotalRate": "0.00000",
            "TotalAmount": "0.00000", "MessageIntent": "", "PowerpackUUID": "", **extra}


def status(uuid: str, word: str, error: str = "", parent: str | None = None,
           sequence: str = "1") -> dict[str, str]:
    """A status callback as Plivo posts it to the url given when sending."""
    return {"MessageUUID": uuid, "ParentMessageUUID": parent or uuid, "PartInfo": "1 of 1",
            "From": "14155550100", "To": "14155550123", "Type": "sms", "Status": word,
            "Units": "1", "TotalRate": "0.00500", "TotalAmount": "0.00500", "MCC": "310",
            "MNC": "410", "ErrorCode": error, "Sequence": sequence}


def post_signed(client: Any, url: str, form: dict[str, str], **kw: Any) -> Any:
    return client.post(urlsplit(url).path + (f"?{urlsplit(url).query}" if urlsplit(url).query
                                             else ""),
                       data=form, headers=v3_headers(url, form, **kw))


def outbound(client: Any, host: Host, uuid: str, initial: str = "sent") -> int:
    async def add() -> int:
        message, _ = await host.messages.add(NewMessage(
            direction="out", body="Your code is 1234", status=initial, broker="plivo",
            account="main", local="+14155550100", remote="+14155550123",
            broker_message_id=uuid))
        return message.id
    return int(client.portal.call(add))


def history(client: Any, message_id: int) -> tuple[str, list[dict[str, Any]]]:
    response = client.get(f"/api/messages/{message_id}",
                          headers={"Authorization": "Bearer test-token"})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["status"], body["events"]


# -- inbound SMS ---------------------------------------------------------------------------

def test_documented_mo_is_stored_and_answered_with_empty_xml(
        broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host)
    with serving(host) as client:
        response = post_signed(client, MO_URL, inbound())
        rows = stored(client, host)
    assert response.status_code == 200, response.text
    assert response.text == "<Response></Response>"
    assert response.headers["content-type"].startswith("application/xml")
    (row,) = rows
    assert (row["direction"], row["broker"], row["account"], row["remote"], row["local"],
            row["body"], row["broker_message_id"], row["status"], row["segments"]) == (
        "in", "plivo", "main", "+14155550123", "+14155550100", "Hello from Plivo",
        "7a242edc-2f57-11e7-98c9-06ab0bf64327", "received", 1)
    assert json.loads(row["attrs"]) == {"type": "sms", "total_rate": "0.00000",
                                        "total_amount": "0.00000"}


def test_mo_extras_and_unicode_text(broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host)
    form = inbound(uuid="c0ffee00-2f57-11e7-98c9-06ab0bf64327", text="Grüße, 你好 & =+%",
                   Units="2", MessageIntent="optout",
                   PowerpackUUID="d35f2e82-d387-427f-8594-6fa07613c43a")
    with serving(host) as client:
        response = post_signed(client, MO_URL, form)
        (row,) = stored(client, host)
    assert response.status_code == 200, response.text
    assert (row["body"], row["segments"]) == ("Grüße, 你好 & =+%", 2)
    attrs = json.loads(row["attrs"])
    assert (attrs["message_intent"], attrs["powerpack_uuid"]) == (
        "optout", "d35f2e82-d387-427f-8594-6fa07613c43a")


def test_a_retried_mo_is_one_row(broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host)
    form = inbound()
    with serving(host) as client:
        answers = [post_signed(client, MO_URL, form, nonce=f"1111111111111111111{i}")
                   for i in range(3)]
        rows = stored(client, host)
    assert [(a.status_code, a.text) for a in answers] == [(200, "<Response></Response>")] * 3
    assert len(rows) == 1


def test_mo_by_get_is_signed_over_the_sorted_query(broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host)
    query = urlencode(inbound(uuid="4fb071a2-2f57-11e7-98c9-06ab0bf64327", text="via GET & co"))
    url = f"{MO_URL}?{query}"
    nonce = "73920183746501928374"
    headers = {"X-Plivo-Signature-V3": sign_v3(url, {}, nonce, method="GET"),
               "X-Plivo-Signature-V3-Nonce": nonce}
    with serving(host) as client:
        response = client.get(f"/plivo/mo?{query}", headers=headers)
        (row,) = stored(client, host)
    assert response.status_code == 200, response.text
    assert (row["body"], row["broker_message_id"]) == (
        "via GET & co", "4fb071a2-2f57-11e7-98c9-06ab0bf64327")


def test_message_url_with_its_own_query_is_signed_with_it(
        broker_host: Callable[..., Host]) -> None:
    """Plivo signs the message_url as configured: a query there comes before the fields."""
    host = plivo_host(broker_host)
    url = f"{MO_URL}?tenant=acme%20west&b=2&b=1"
    with serving(host) as client:
        response = post_signed(client, url, inbound())
        rows = stored(client, host)
    assert response.status_code == 200, response.text
    assert len(rows) == 1


def test_forged_or_unsigned_mo_is_refused_and_not_stored(
        broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host)
    genuine = inbound()
    captured = v3_headers(MO_URL, genuine)
    nonce = captured["X-Plivo-Signature-V3-Nonce"]
    forged = inbound(uuid="0b7c3d6e-2f57-11e7-98c9-06ab0bf64327", text="Send me your PIN")
    with serving(host) as client:
        tampered = client.post("/plivo/mo", data=forged, headers=captured)
        other_token = client.post("/plivo/mo", data=genuine,
                                  headers=v3_headers(MO_URL, genuine, token="another-token"))
        other_url = client.post("/plivo/mo", data=genuine, headers=v3_headers(
            "https://attacker.example.com/plivo/mo", genuine))
        other_nonce = client.post("/plivo/mo", data=genuine, headers={
            **captured, "X-Plivo-Signature-V3-Nonce": nonce[::-1]})
        missing = client.post("/plivo/mo", data=genuine)
        no_nonce = client.post("/plivo/mo", data=genuine, headers={
            "X-Plivo-Signature-V3": captured["X-Plivo-Signature-V3"]})
        rows = stored(client, host)
    assert [r.status_code for r in (tampered, other_token, other_url, other_nonce)] == [403] * 4
    assert "X-Plivo-Signature-V3 does not match" in tampered.text
    assert (missing.status_code, no_nonce.status_code) == (401, 401)
    assert "missing signature header" in missing.text
    assert rows == []


def test_several_signatures_in_one_header_any_may_match(
        broker_host: Callable[..., Host]) -> None:
    """With more than one active Auth Token Plivo sends a comma-separated list."""
    host = plivo_host(broker_host)
    form = inbound()
    nonce = "30183746501928374650"
    listed = f"{sign_v3(MO_URL, form, nonce, 'rotated-out-token')},{sign_v3(MO_URL, form, nonce)}"
    with serving(host) as client:
        response = client.post("/plivo/mo", data=form, headers={
            "X-Plivo-Signature-V3": listed, "X-Plivo-Signature-V3-Nonce": nonce})
    assert response.status_code == 200, response.text


def test_v2_signature_is_accepted_when_the_operator_allows_it(
        broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host, extra='options = { AcceptSignatureV2 = "true" }')
    nonce = "05429567804466091622"
    with serving(host) as client:
        good = client.post("/plivo/mo", data=inbound(), headers={
            "X-Plivo-Signature-V2": sign_v2(MO_URL, nonce),
            "X-Plivo-Signature-V2-Nonce": nonce})
        wrong = client.post("/plivo/mo", data=inbound(uuid="b1"), headers={
            "X-Plivo-Signature-V2": sign_v2(MO_URL, nonce, "another-token"),
            "X-Plivo-Signature-V2-Nonce": nonce})
        no_nonce = client.post("/plivo/mo", data=inbound(uuid="b2"), headers={
            "X-Plivo-Signature-V2": sign_v2(MO_URL, nonce)})
        rows = stored(client, host)
    assert (good.status_code, wrong.status_code, no_nonce.status_code) == (200, 403, 401)
    assert [r["broker_message_id"] for r in rows] == ["7a242edc-2f57-11e7-98c9-06ab0bf64327"]


def test_a_v3_signature_is_never_bypassed_by_v2(broker_host: Callable[..., Host]) -> None:
    """V2 does not cover the body: a request with a V3 signature is judged by V3 alone."""
    host = plivo_host(broker_host)
    nonce = "05429567804466091622"
    forged = inbound(text="forged")
    headers = {**v3_headers(MO_URL, inbound()), "X-Plivo-Signature-V2": sign_v2(MO_URL, nonce),
               "X-Plivo-Signature-V2-Nonce": nonce}
    with serving(host) as client:
        response = client.post("/plivo/mo", data=forged, headers=headers)
        rows = stored(client, host)
    assert response.status_code == 403 and rows == []


def test_v2_alone_is_refused_by_default(broker_host: Callable[..., Host]) -> None:
    """V2 covers nothing of the message: a captured V2 request replayed with another
    sender and text would otherwise be stored (issue 11, point 1)."""
    host = plivo_host(broker_host)
    nonce = "05429567804466091622"
    v2 = {"X-Plivo-Signature-V2": sign_v2(MO_URL, nonce), "X-Plivo-Signature-V2-Nonce": nonce}
    with serving(host) as client:
        v2_only = client.post("/plivo/mo", data=inbound(), headers=v2)
        replayed = client.post("/plivo/mo", data=inbound(uuid="0f0f0f0f-0000-4000-8000-000000000000", text="forged",
                                                         From="19995550000"), headers=v2)
        v3 = post_signed(client, MO_URL, inbound(uuid="e2e2e2e2-2f57-11e7-98c9-06ab0bf64327"))
        rows = stored(client, host)
    assert (v2_only.status_code, replayed.status_code, v3.status_code) == (403, 403, 200)
    assert "AcceptSignatureV2" in v2_only.text
    assert [r["broker_message_id"] for r in rows] == ["e2e2e2e2-2f57-11e7-98c9-06ab0bf64327"]


def test_main_account_signature_needs_the_main_token(broker_host: Callable[..., Host]) -> None:
    """X-Plivo-Signature-Ma-V3 is made with the main account's token (subaccounts)."""
    form = inbound()
    ma = v3_headers(MO_URL, form, token=MAIN_TOKEN, header="X-Plivo-Signature-Ma-V3")
    without = plivo_host(broker_host)
    with serving(without) as client:
        refused = client.post("/plivo/mo", data=form, headers=ma)
    assert refused.status_code == 403


def test_main_account_signature_with_main_token_option(
        broker_host: Callable[..., Host]) -> None:
    form = inbound()
    host = plivo_host(broker_host, extra=f'options = {{ MainAuthToken = "{MAIN_TOKEN}" }}')
    with serving(host) as client:
        ma = client.post("/plivo/mo", data=form, headers=v3_headers(
            MO_URL, form, token=MAIN_TOKEN, header="X-Plivo-Signature-Ma-V3"))
        sub = post_signed(client, MO_URL, inbound(uuid="f2f2f2f2-2f57-11e7-98c9-06ab0bf64327"))
        rows = stored(client, host)
    assert (ma.status_code, sub.status_code) == (200, 200)
    assert len(rows) == 2


def test_with_only_the_main_token_every_webhook_is_checked(
        broker_host: Callable[..., Host], tmp_path: Path) -> None:
    """Accounts without a token and MainAuthToken set: before issue 11's review the
    engine saw no key (the adapter added MainAuthToken inside verify_signature only,
    which is not called when there is none), so an unsigned forged webhook was stored
    and nothing said so. The main token is now a <signature broker-key>."""
    options = f'options = {{ MainAuthToken = "{MAIN_TOKEN}" }}'
    host = plivo_host(broker_host, extra=options, token="")
    forged = inbound(uuid="0f0f0f0f-2f57-11e7-98c9-06ab0bf64327", text="forged")
    genuine = inbound(uuid="1e1e1e1e-2f57-11e7-98c9-06ab0bf64327")
    with serving(host) as client:
        unsigned = client.post("/plivo/mo", data=forged)
        wrong = client.post("/plivo/mo", data=forged, headers=v3_headers(MO_URL, forged))
        ma = client.post("/plivo/mo", data=genuine, headers=v3_headers(
            MO_URL, genuine, token=MAIN_TOKEN, header="X-Plivo-Signature-Ma-V3"))
        rows = stored(client, host)
    assert (unsigned.status_code, wrong.status_code, ma.status_code) == (401, 403, 200)
    assert [r["body"] for r in rows] == ["Hello from Plivo"]
    checked = run_cli("check", "--config", str(tmp_path / "config"))
    assert "accepted unsigned" not in checked.stdout, checked.stdout


def test_check_says_when_a_signing_broker_has_no_key(broker_host: Callable[..., Host],
                                                     tmp_path: Path) -> None:
    plivo_host(broker_host, token="")
    checked = run_cli("check", "--config", str(tmp_path / "config"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert ("warning: broker plivo: plivo signs its webhooks (plivo-v3) but no key is "
            "configured ({account.password} or {options.MainAuthToken} is empty): "
            "webhooks are accepted unsigned") in checked.stdout


# -- status callbacks ----------------------------------------------------------------------

def test_status_history_moves_forward_only(broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host)
    uuid = "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
    with serving(host) as client:
        mid = outbound(client, host, uuid, initial="queued")
        # "000 for successful delivery" (https://www.plivo.com/docs/messaging/api/messages)
        answers = [post_signed(client, DLR_URL, status(uuid, word, error, sequence=str(n)))
                   for n, (word, error) in enumerate(
                       [("queued", ""), ("sent", ""), ("delivered", "000")], 1)]
        current, events = history(client, mid)
        late = post_signed(client, DLR_URL, status(uuid, "sent", sequence="4"))
        after, events_after = history(client, mid)
    assert [(a.status_code, a.text) for a in answers] == [(200, "")] * 3
    assert current == "delivered"
    assert [(e["status"], e["source"]) for e in events] == [
        ("queued", "system"), ("queued", "receipt"), ("sent", "receipt"),
        ("delivered", "receipt")]
    delivered = events[-1]["detail"]
    assert delivered["broker_status"] == "delivered" and "error" not in delivered
    assert delivered["to"] == "14155550123"
    assert {k: delivered["attrs"][k] for k in ("parent_message_uuid", "part_info", "mcc",
                                                "mnc", "units", "sequence")} == {
        "parent_message_uuid": uuid, "part_info": "1 of 1", "mcc": "310", "mnc": "410",
        "units": "1", "sequence": "3"}
    assert late.status_code == 200
    assert after == "delivered"
    assert [e["status"] for e in events_after][-1] == "sent"


@pytest.mark.parametrize(("word", "code", "final"), [
    ("undelivered", "30", "undelivered"),
    ("failed", "40", "failed"),
])
def test_failures_keep_plivos_error_code(broker_host: Callable[..., Host], word: str,
                                         code: str, final: str) -> None:
    host = plivo_host(broker_host)
    uuid = "8df4b5e6-2f57-11e7-98c9-06ab0bf64327"
    with serving(host) as client:
        mid = outbound(client, host, uuid)
        answer = post_signed(client, DLR_URL, status(uuid, word, error=code))
        current, events = history(client, mid)
    assert answer.status_code == 200
    assert current == final
    assert (events[-1]["status"], events[-1]["detail"]["error"],
            events[-1]["detail"]["broker_status"]) == (final, code, word)


def test_every_documented_status_word_is_mapped(broker_host: Callable[..., Host]) -> None:
    """queued, sent, failed, delivered, undelivered, read (WhatsApp) and rejected (the
    earlier edition of the page); an undocumented word is kept in the history only."""
    expected = {"queued": "queued", "sent": "sent", "failed": "failed",
                "delivered": "delivered", "undelivered": "undelivered", "read": "delivered",
                "rejected": "rejected", "accepted_by_martians": "unknown"}
    host = plivo_host(broker_host)
    seen = {}
    with serving(host) as client:
        for n, word in enumerate(expected):
            uuid = f"00000000-0000-0000-0000-{n:012d}"
            mid = outbound(client, host, uuid, initial="queued")
            assert post_signed(client, DLR_URL, status(uuid, word)).status_code == 200
            current, events = history(client, mid)
            seen[word] = events[-1]["status"]
            if word == "accepted_by_martians":
                assert current == "queued"
    assert seen == expected


def test_parts_of_a_long_message_are_correlated_by_parent_uuid(
        broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host)
    parent = "1a2b3c4d-0000-11e7-98c9-06ab0bf64327"
    with serving(host) as client:
        mid = outbound(client, host, parent)
        answer = post_signed(client, DLR_URL, {
            **status("5e6f7a8b-0000-11e7-98c9-06ab0bf64327", "delivered", parent=parent),
            "PartInfo": "2 of 2", "Units": "2"})
        current, events = history(client, mid)
    assert answer.status_code == 200
    assert current == "delivered"
    assert events[-1]["detail"]["attrs"]["message_uuid"] == "5e6f7a8b-0000-11e7-98c9-06ab0bf64327"
    assert events[-1]["detail"]["attrs"]["part_info"] == "2 of 2"


def test_forged_status_callback_changes_nothing(broker_host: Callable[..., Host]) -> None:
    host = plivo_host(broker_host)
    uuid = "af16d708-2f57-11e7-98c9-06ab0bf64327"
    with serving(host) as client:
        mid = outbound(client, host, uuid)
        captured = v3_headers(DLR_URL, status(uuid, "undelivered", error="30"))
        forged = client.post("/plivo/receipt", data=status(uuid, "delivered"), headers=captured)
        unsigned = client.post("/plivo/receipt", data=status(uuid, "delivered"))
        current, events = history(client, mid)
    assert (forged.status_code, unsigned.status_code) == (403, 401)
    assert current == "sent" and len(events) == 1


# -- sending -------------------------------------------------------------------------------

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


class _FakePlivo(BaseHTTPRequestHandler):
    """Records what arrives and answers with the next queued (status, headers, body)."""

    received: list[dict[str, Any]]
    answers: list[Answer]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        self.received.append({"method": self.command, "path": self.path,
                              "headers": {k.lower(): v for k, v in self.headers.items()},
                              "body": self.rfile.read(length)})
        code, headers, body = self.answers.pop(0)
        self.send_response(code)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def fake_plivo(answers: list[Answer]
               ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_FakePlivo,), {"received": received, "answers": list(answers)})
    with server_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as server:
        yield server.server_address[1], received


QUEUED: Answer = (202, {}, json.dumps({
    "api_id": "db342550-7f1d-11e1-8ea7-1231380bc196", "message": "message(s) queued",
    "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]}).encode())


def send(host: Host, message: OutboundMessage) -> tuple[Any, Any]:
    """Build the request as the broker does, put it on the wire, read the answer."""
    instance = host.brokers["plivo"]
    account = instance.account_values(instance.accounts["main"])
    request = instance.broker.build_mt_request(message, account)
    with httpx2.Client(trust_env=False, timeout=10.0) as http:
        answer = http.request(request.method, request.url, headers=request.headers,
                              content=request.body)
    result = instance.broker.read_mt_response(
        MtResponse(answer.status_code, {k.lower(): v for k, v in answer.headers.items()},
                   answer.content), message, account)
    return request, result


def mt_host(broker_host: Callable[..., Host], port: int, options: str = "") -> Host:
    extra = f'encryption = "http"\nmt = {{ gateway = "http://127.0.0.1:{port}" }}\n{options}'
    return plivo_host(broker_host, extra=extra, public_url="http://smshost.example.com")


def test_send_puts_the_documented_request_on_the_wire(broker_host: Callable[..., Host]) -> None:
    message = OutboundMessage(id=7, ref="7", to="+14155550123", from_="+14155550100",
                              text="Grüße from smshost")
    with fake_plivo([QUEUED]) as (port, received):
        host = mt_host(broker_host, port)
        request, result = send(host, message)
    (wire,) = received
    assert (wire["method"], wire["path"]) == ("POST", f"/v1/Account/{AUTH_ID}/Message/")
    scheme, _, token = wire["headers"]["authorization"].partition(" ")
    assert (scheme, base64.b64decode(token).decode()) == ("Basic", f"{AUTH_ID}:{AUTH_TOKEN}")
    assert wire["headers"]["content-type"] == "application/json"
    assert json.loads(wire["body"]) == {
        "src": "+14155550100", "dst": "14155550123", "text": "Grüße from smshost",
        "url": "http://smshost.example.com/plivo/receipt", "method": "POST"}
    assert AUTH_TOKEN not in request.describe()
    assert (result.outcome, result.message_id) == ("accepted",
                                                   "db3ce55a-7f1d-11e1-8ea7-1231380bc196")


def test_send_through_a_powerpack_leaves_src_out(broker_host: Callable[..., Host]) -> None:
    message = OutboundMessage(id=8, to="+447700900123", from_="+14155550100", text="Hi")
    options = ('options = { PowerpackUUID = "d35f2e82-d387-427f-8594-6fa07613c43a", '
               'ExternalDeliveryStatusURI = "https://status.example.com/plivo?x=1" }')
    with fake_plivo([QUEUED]) as (port, received):
        host = mt_host(broker_host, port, options)
        _, result = send(host, message)
    body = json.loads(received[0]["body"])
    assert body == {"powerpack_uuid": "d35f2e82-d387-427f-8594-6fa07613c43a",
                    "dst": "447700900123", "text": "Hi",
                    "url": "https://status.example.com/plivo?x=1", "method": "POST"}
    assert result.outcome == "accepted"


def test_documented_error_answers(broker_host: Callable[..., Host]) -> None:
    """400 and 401 fail, 429 and 5xx are retried; 2xx without a message_uuid fails."""
    def error(code: int, text: str, headers: dict[str, str] | None = None) -> Answer:
        body = {"api_id": "97ceeb52-58b6-11e1-86da-77300b68f8bb", "error": text}
        return code, headers or {}, json.dumps(body).encode()
    answers = [
        error(400, "invalid_parameter"), error(401, "authentication_failed"),
        error(429, "rate_limit_exceeded", {"Retry-After": "3"}), error(500, "server error"),
        (202, {}, b'{"api_id": "97ceeb52-58b6-11e1-86da-77300b68f8bf", "message_uuid": []}'),
    ]
    message = OutboundMessage(id=9, to="+14155550123", from_="+14155550100", text="x")
    with fake_plivo(answers) as (port, received):
        host = mt_host(broker_host, port)
        results = [send(host, message)[1] for _ in answers]
    assert len(received) == len(answers)
    assert [(r.outcome, r.error, r.status) for r in results[:4]] == [
        ("fail", "invalid_parameter", 400), ("fail", "authentication_failed", 401),
        ("retry", "rate_limit_exceeded", 429), ("retry", "server error", 500)]
    assert results[2].retry_after == 3.0
    assert (results[4].outcome, results[4].message_id) == ("fail", None)
    assert all(r.message_id is None for r in results)


# -- the shipped fixtures ------------------------------------------------------------------

def test_fixture_signatures_are_what_the_sdk_computes() -> None:
    """Every genuine signature in plivo.fixtures.toml equals the SDK's; forged ones fail."""
    data = tomllib.loads(FIXTURES.read_text(encoding="utf-8"))
    token = data["broker"]["accounts"][0]["password"]
    base = data["broker"]["public_url"]
    checked = 0
    for kind, path in (("mo", "/plivo/mo"), ("receipt", "/plivo/receipt")):
        for case in data[kind]:
            headers = case.get("headers", {})
            genuine = case.get("expect_status", 200) == 200
            if "X-Plivo-Signature-V3" in headers:
                nonce = headers["X-Plivo-Signature-V3-Nonce"]
                method = case.get("method", "POST")
                url = base + path
                if "query" in case:
                    url += "?" + urlencode(list(case["query"].items()))
                params = case.get("form", {})
                valid = validate_v3_signature(method, url, nonce, token,
                                              headers["X-Plivo-Signature-V3"],
                                              dict(params) if method == "POST" else None)
                assert valid == genuine, case["name"]
                if genuine:
                    assert headers["X-Plivo-Signature-V3"] == sign_v3(url, params, nonce, token,
                                                                      method), case["name"]
                checked += 1
            elif "X-Plivo-Signature-V2" in headers:  # genuine, refused by default
                nonce = headers["X-Plivo-Signature-V2-Nonce"]
                assert validate_signature(base + path, nonce, headers["X-Plivo-Signature-V2"],
                                          token), case["name"]
                checked += 1
    assert checked >= 10
