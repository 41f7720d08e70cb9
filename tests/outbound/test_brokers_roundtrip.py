"""Every shipped broker's MT through the real Sender (SPEC B4, O6, O8).

Each instance's ``mt.gateway`` points at a fake broker API on 127.0.0.1 (plain HTTP,
``encryption = "http"``): the test sends with POST /api/messages, checks that the request
the broker documents arrives (method, path, auth, key fields) and that the broker's
documented success answer makes the message ``sent`` with the broker's id. The simulator
sends to smshost's own phone endpoint and its receipt comes back. The kannel broker also
runs against a real Kannel 1.4.5 with a fake carrier (``slow``), receipts included."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.brokers.kannel_harness import (
    CARRIER_QUERY,
    INSTALL_HINT,
    LOOPBACK,
    MO_QUERY,
    FakeSmsc,
    Kannel,
    KannelSetup,
    SmshostServer,
    free_ports,
    kannel_binaries,
)
from tests.conftest import ROOT
from tests.outbound.conftest import (
    OUR_NUMBER,
    PHONE,
    TOKEN,
    FakeBroker,
    Reply,
    Seen,
    Smshost,
    statuses,
    wait_until,
    write_config,
)

TEXT = "Grüße & 100% sure: 1+1=2"
UK_PHONE = "+447911123456"


def basic_of(seen: Seen) -> str:
    scheme, _, token = seen.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token).decode()


@dataclass
class Case:
    """One shipped broker: its instance, the fake's answer, what must arrive."""

    toml: str
    answer: Reply
    broker_id: str
    check: Callable[[Seen, str], None]  # (the request, smshost's public URL)
    to: str = PHONE


def twilio_check(seen: Seen, public: str) -> None:
    assert (seen.method, seen.path) == (
        "POST", "/2010-04-01/Accounts/AC8793b0bc873594ac86924154c70ca2b6/Messages.json")
    assert basic_of(seen) == "AC8793b0bc873594ac86924154c70ca2b6:twilio-auth-token"
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.form == {"To": [PHONE], "From": [OUR_NUMBER], "Body": [TEXT],
                         "StatusCallback": [f"{public}/twilio/status"]}


def vonage_check(seen: Seen, public: str) -> None:
    assert (seen.method, seen.path) == ("POST", "/sms/json")
    form = seen.form
    assert (form["api_key"], form["api_secret"]) == (["abcd1234"], ["vonage-api-secret"])
    assert form["from"] == [OUR_NUMBER[1:]] and form["to"] == [UK_PHONE[1:]]
    assert (form["text"], form["type"]) == ([TEXT], ["text"])
    assert form["callback"] == [f"{public}/vonage/delivery-receipt"]
    assert form["client-ref"] == [seen.ref]


def plivo_check(seen: Seen, public: str) -> None:
    assert (seen.method, seen.path) == ("POST", "/v1/Account/MAXXXXXXXXXXXXXXXXXX/Message/")
    assert basic_of(seen) == "MAXXXXXXXXXXXXXXXXXX:plivo-auth-token"
    assert seen.headers["content-type"] == "application/json"
    assert seen.json == {"src": OUR_NUMBER, "dst": PHONE[1:], "text": TEXT,
                         "url": f"{public}/plivo/receipt", "method": "POST"}


def telnyx_check(seen: Seen, public: str) -> None:
    assert (seen.method, seen.path) == ("POST", "/v2/messages")
    assert seen.headers["authorization"] == "Bearer KEY-telnyx-api"
    assert seen.json == {"from": OUR_NUMBER, "to": PHONE, "text": TEXT,
                         "messaging_profile_id": "400174d0-7ae0-4b4f-9b5e-0b5bd4d24ae0",
                         "webhook_url": f"{public}/telnyx/webhook"}


def kannel_check(seen: Seen, public: str) -> None:
    assert (seen.method, seen.path) == ("GET", "/cgi-bin/sendsms")
    query = {k: v[0] for k, v in seen.query.items()}
    assert (query["username"], query["password"]) == ("smshost", "kannel-secret")
    assert (query["from"], query["to"], query["text"]) == (OUR_NUMBER, PHONE, TEXT)
    assert (query["charset"], query["dlr-mask"]) == ("UTF-8", "31")
    dlr = urlsplit(query["dlr-url"])
    assert f"{dlr.scheme}://{dlr.netloc}{dlr.path}" == f"{public}/kannel/dlr"
    assert parse_qs(dlr.query)["ref"] == [seen.ref]


def generic_check(seen: Seen, public: str) -> None:
    assert (seen.method, seen.path) == ("POST", "/messages")
    assert seen.headers["authorization"] == "Bearer generic-token"
    assert seen.json == {"ref": seen.ref, "from": OUR_NUMBER, "to": PHONE, "text": TEXT,
                         "encoding": "gsm7", "callback_url": f"{public}/generic/receipt"}


def instance(name: str, definition: str, login: str, password: str, extra: str = "") -> str:
    return (f'[[brokers]]\nname = "{name}"\ndefinition = "{definition}"\n'
            f'encryption = "http"\nmt.gateway = "{{gateway}}"\n{extra}\n'
            f'[[brokers.accounts]]\nid = "main"\nlogin = "{login}"\n'
            f'password = "{password}"\nlocal_address = "{OUR_NUMBER}"\n')


CASES = {
    "twilio": Case(
        instance("tw", "twilio", "AC8793b0bc873594ac86924154c70ca2b6", "twilio-auth-token"),
        Reply(201, {"sid": "SMbfc18160908af7e3e3c3b1e24e3638cc", "status": "queued",
                    "body": TEXT, "to": PHONE, "from": OUR_NUMBER, "error_code": None}),
        "SMbfc18160908af7e3e3c3b1e24e3638cc", twilio_check),
    "vonage": Case(
        instance("vonage", "vonage", "abcd1234", "vonage-api-secret"),
        Reply(200, {"message-count": "1", "messages": [{
            "to": UK_PHONE[1:], "message-id": "0A0000000123ABCD1", "status": "0",
            "remaining-balance": "3.14159265", "message-price": "0.03330000",
            "network": "12345"}]}),
        "0A0000000123ABCD1", vonage_check, to=UK_PHONE),
    "plivo": Case(
        instance("plivo", "plivo", "MAXXXXXXXXXXXXXXXXXX", "plivo-auth-token"),
        Reply(202, {"api_id": "db342550-7f1d-11e1-8ea7-1231380bc196",
                    "message": "message(s) queued",
                    "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]}),
        "db3ce55a-7f1d-11e1-8ea7-1231380bc196", plivo_check),
    "telnyx": Case(
        instance("tx", "telnyx", "", "KEY-telnyx-api",
                 'options = { MessagingProfileId = "400174d0-7ae0-4b4f-9b5e-0b5bd4d24ae0" }'),
        Reply(200, {"data": {"record_type": "message", "direction": "outbound",
                             "id": "40385f64-5717-4562-b3fc-2c963f66afa6", "type": "SMS",
                             "text": TEXT, "parts": 1, "errors": []}}),
        "40385f64-5717-4562-b3fc-2c963f66afa6", telnyx_check),
    "kannel": Case(
        instance("kannel", "kannel", "smshost", "kannel-secret"),
        Reply(202, "0: Accepted for delivery"), "{ref}", kannel_check),
    "generic": Case(
        instance("gen", "generic", "", "generic-token"),
        Reply(200, {"id": "gen-77"}), "gen-77", generic_check),
}


@pytest.mark.parametrize("name", list(CASES))
def test_mt_round_trip_through_the_sender(smshost: Callable[..., Smshost], name: str) -> None:
    case = CASES[name]
    with FakeBroker(lambda seen, n: case.answer) as fake:
        node = smshost(brokers=case.toml.replace("{gateway}", fake.url))
        body = node.queued(to=case.to, text=TEXT)
        sent = node.wait_status(body["id"], "sent")
    (seen,) = fake.seen()
    case.check(seen, node.base)
    assert sent["broker_message_id"] == case.broker_id.format(ref=body["id"])
    assert statuses(sent) == ["queued", "sent"]
    assert sent["events"][-1]["detail"]["http_status"] == case.answer.status


def test_simulator_round_trip_with_its_receipt(smshost: Callable[..., Smshost]) -> None:
    """The simulator's MT goes to smshost's own phone endpoint, which answers with an id
    and posts a delivery receipt back through the broker's receipt path."""
    toml = (f'[[brokers]]\nname = "sim"\ndefinition = "simulator"\nencryption = "http"\n'
            f'[[brokers.accounts]]\nid = "default"\nlocal_address = "{OUR_NUMBER}"\n')
    node = smshost(brokers=toml)
    body = node.queued(to=PHONE, text=TEXT)
    delivered = node.wait_status(body["id"], "delivered")
    assert [(e["status"], e["source"]) for e in delivered["events"]] == [
        ("queued", "api"), ("sent", "sender"), ("delivered", "receipt")]
    assert delivered["broker_message_id"].startswith("SIM")
    inbox = node.api.get("/api/simulator/inbox", params={"number": PHONE}).json()
    (got,) = inbox["messages"]
    assert (got["text"], got["from"], got["to"], got["ref"]) == (
        TEXT, OUR_NUMBER, PHONE, str(body["id"]))
    assert got["id"] == delivered["broker_message_id"]


# == kannel: a real Kannel 1.4.5 ==========================================================


def require_kannel() -> None:
    if kannel_binaries() is None:
        if os.environ.get("SMSHOST_SKIP_KANNEL") == "1":
            pytest.skip(f"SMSHOST_SKIP_KANNEL=1. {INSTALL_HINT}")
        pytest.fail(INSTALL_HINT, pytrace=False)


@dataclass
class KannelStack:
    kannel: Kannel
    carrier: FakeSmsc
    server: SmshostServer
    base: str

    def explain(self) -> str:
        return (f"{self.kannel.status()}\n{self.kannel.logs()}\n--- smshost ---\n"
                f"{self.server.output[-4000:]}")

    def api(self) -> httpx2.Client:
        return httpx2.Client(base_url=self.base, trust_env=False, timeout=10.0,
                             headers={"Authorization": f"Bearer {TOKEN}"})

    def message(self, message_id: int) -> dict[str, Any]:
        with self.api() as client:
            return client.get(f"/api/messages/{message_id}").json()  # type: ignore[no-any-return]

    def wait_history(self, message_id: int, count: int) -> dict[str, Any]:
        return wait_until(lambda: len((m := self.message(message_id))["events"]) >= count and m,
                          timeout=20, what=f"{count} events of message {message_id}",
                          explain=self.explain)


@pytest.fixture(scope="module")
def kannel_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KannelStack]:
    require_kannel()
    tmp = tmp_path_factory.mktemp("outbound-kannel")
    (port,) = free_ports(1)
    base = f"http://{LOOPBACK}:{port}"
    carrier = FakeSmsc().start()
    server: SmshostServer | None = None
    kannel: Kannel | None = None
    try:
        kannel = Kannel(tmp / "kannel", KannelSetup(
            mo_url=f"{base}/kannel/mo?{MO_QUERY}",
            carrier_url=f"http://{LOOPBACK}:{carrier.port}/mt?{CARRIER_QUERY}",
            user="smshost", password="kannel-secret"))
        brokers = instance("kannel", "kannel", "smshost", "kannel-secret").replace(
            "{gateway}", kannel.sendsms_url)
        cfg = write_config(tmp, port, brokers=brokers, shutdown_timeout=2.0)
        kannel.start()
        server = SmshostServer(tmp, cfg, ROOT)
        server.wait_healthy(f"{base}/health")
        yield KannelStack(kannel, carrier, server, base)
    finally:
        if server is not None:
            server.stop()
        if kannel is not None:
            kannel.stop()
        carrier.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("to", "text", "coding"), [
    ("+14155550140", "Hello via the Sender and Kannel: 100% & more, €", b"0"),
    ("+14155550141", "Привет † мир ✓ 👋", b"2"),
], ids=["gsm", "ucs2"])
def test_kannel_mt_through_the_sender_then_receipts(kannel_stack: KannelStack, to: str,
                                                    text: str, coding: bytes) -> None:
    with kannel_stack.api() as client:
        answer = client.post("/api/messages", json={"to": to, "text": text})
    assert answer.status_code == 201, answer.text
    message_id = answer.json()["id"]
    (mt,) = wait_until(lambda: kannel_stack.carrier.received(to), timeout=20,
                       what=f"the MT to {to} at the carrier", explain=kannel_stack.explain)
    assert (mt.text(), mt.value("from"), mt.value("coding")) == (text, OUR_NUMBER.encode(),
                                                                 coding)
    # sendsms accepted it (sent, our reference as the id); the SMSC's ack came back (8)
    message = kannel_stack.wait_history(message_id, 3)
    assert message["broker_message_id"] == str(message_id)
    assert [(e["status"], e["source"]) for e in message["events"]] == [
        ("queued", "api"), ("sent", "sender"), ("sent", "receipt")]
    assert message["events"][-1]["detail"]["broker_status"] == "8"
    # the carrier's delivery report (1) -> delivered
    carrier_id = mt.answer.split()[1]
    response = kannel_stack.kannel.carrier_request(
        [("dlr-mask", "1"), ("dlr-mid", carrier_id), ("to", to),
         ("text", f"id:{carrier_id} stat:DELIVRD err:000")])
    assert response.status_code == 200, response.text
    delivered = wait_until(lambda: (m := kannel_stack.message(message_id))["status"] ==
                           "delivered" and m, timeout=20, what="delivered",
                           explain=kannel_stack.explain)
    assert [e["detail"].get("broker_status") for e in delivered["events"]
            if e["source"] == "receipt"] == ["8", "1"]
    assert delivered["events"][-1]["detail"]["attrs"]["foreign_id"] == carrier_id
