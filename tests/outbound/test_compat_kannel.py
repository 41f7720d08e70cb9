"""Kannel's sendsms on a running smshost (issue 16 point 4): Kannel's parameters and
answer texts (gw/smsbox.c of Kannel 1.4.5), one send per receiver through the path of
POST /api/messages, and the dlr-url called back with Kannel's escape codes to a local
HTTP server (the fake broker doubles as the application)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.outbound.conftest import (
    OUR_NUMBER,
    PHONE,
    FakeBroker,
    Smshost,
    generic_toml,
    outbox_toml,
    wait_until,
)

PATH = "/cgi-bin/sendsms"
ALLOW = '\n[compat]\nallowed_hosts = ["127.0.0.1"]\nallow_private = true\n'
KANNEL = ALLOW + '\n[compat.kannel]\nenabled = true\n'
OTHER = "+14155550124"


def node_with_app(smshost: Callable[..., Smshost], broker: FakeBroker, extra: str = KANNEL,
                  **kwargs: Any) -> tuple[Smshost, str]:
    """A node with Kannel's sendsms on, and the token of integration ``app``."""
    node = smshost(brokers=generic_toml(broker.url), extra=extra, **kwargs)
    made = node.api.post("/api/tokens", json={"integration": "app", "scopes": ["send"]})
    assert made.status_code == 201, made.text
    return node, made.json()["token"]


def sendsms(node: Smshost, token: str, **params: str) -> httpx2.Response:
    query = {"username": "app", "password": token, **params}
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        return client.get(node.base + PATH, params=query)


def test_a_sendsms_is_accepted_and_sent_as_post_api_messages_would(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    answer = sendsms(node, token, to=PHONE, text="Hello from Kannel", priority="2")
    assert (answer.status_code, answer.text) == (202, "0: Accepted for delivery")
    assert answer.headers["content-type"].startswith("text/html")
    (message,) = node.outbound()
    assert (message["remote"], message["body"]) == (PHONE, "Hello from Kannel")
    assert message["attrs"]["kannel"] == {"priority": 2}
    node.wait_status(message["id"], "sent")


def test_several_receivers_separated_by_space_or_plus_get_one_message_each(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    # "+" in a query string is a space: Kannel splits "to" on white space.
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        answer = client.get(f"{node.base}{PATH}?username=app&password={token}"
                            f"&to=%2B14155550123+%2B14155550124 %2B14155550123&text=hi")
    assert (answer.status_code, answer.text) == (202, "0: Accepted for delivery")
    assert sorted(m["remote"] for m in node.outbound()) == [PHONE, OTHER]


def test_a_receiver_with_other_characters_is_dropped_silently(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """As Kannel 1.4.5 answers (tests/brokers/test_kannel_sendsms_parity.py)."""
    node, token = node_with_app(smshost, fake_broker)
    answer = sendsms(node, token, to=f"{PHONE} 555x", text="hi")
    assert (answer.status_code, answer.text) == (202, "0: Accepted for delivery")
    assert [m["remote"] for m in node.outbound()] == [PHONE]
    answer = sendsms(node, token, to="abc", text="hi")
    assert (answer.status_code, answer.text) == (
        400, "Number(s) has/have been denied by white- and/or black-lists.")


@pytest.mark.parametrize(("params", "status", "text"), [
    ({"password": "wrong"}, 403, "Authorization failed for sendsms"),
    ({"username": "someone-else"}, 403, "Authorization failed for sendsms"),
    ({"to": None}, 400, "Missing receiver number, rejected"),
    ({"to": ""}, 400, "Empty receiver number not allowed, rejected"),
    ({"udh": "\x05\x00\x03"}, 400, "UDH field misformed, rejected"),
    ({"account": "a[b"}, 400, "Account field misformed or too long, rejected"),
    ({"dlr-url": "ftp://x"}, 400, "DLR-URL field misformed, rejected"),
    ({"dlr-mask": "67"}, 400, "DLR-Mask field misformed, rejected"),  # Kannel: up to 66
    ({"mclass": "4"}, 400, "MClass field misformed, rejected"),
    ({"pid": "256"}, 400, "PID field misformed, rejected"),
    ({"rpi": "3"}, 400, "RPI field misformed, rejected"),
    ({"alt-dcs": "2"}, 400, "Alt-DCS field misformed, rejected"),
    ({"mwi": "8"}, 400, "MWI field misformed, rejected"),
    ({"coding": "3"}, 400, "Coding field misformed, rejected"),
    ({"compress": "2"}, 400, "Compress field misformed, rejected"),
    ({"validity": "-2"}, 400, "Validity field misformed, rejected"),
    ({"deferred": "-2"}, 400, "Deferred field misformed, rejected"),
    ({"priority": "4"}, 400, "Priority field misformed, rejected"),
    ({"charset": "no-such-charset"}, 400, "Charset or body misformed, rejected"),
    ({"smsc": "no-such-broker"}, 403, "Not routable. Do not try again."),
    ({"from": "+19995550000"}, 400, "Sender not a number of this gateway, rejected"),
    ({"udh": "\x05\x00\x03\x01\x02\x01"}, 400,
     "UDH not supported by this gateway, rejected"),
    ({"coding": "1"}, 400, "8-bit coding not supported by this gateway, rejected"),
    ({"deferred": "100000"}, 400, "Deferred field misformed, rejected"),  # > the horizon
])
def test_each_refusal_answers_kannels_text_and_sends_nothing(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker,
        params: dict[str, str | None], status: int, text: str) -> None:
    node, token = node_with_app(smshost, fake_broker)
    query = {"username": "app", "password": token, "to": PHONE, "text": "hi", **params}
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        answer = client.get(node.base + PATH,
                            params={k: v for k, v in query.items() if v is not None})
    assert (answer.status_code, answer.text) == (status, text)
    assert node.outbound() == []


def test_a_token_without_the_send_right_is_refused_as_kannel_refuses_a_user(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), extra=KANNEL)
    made = node.api.post("/api/tokens", json={"integration": "app", "scopes": ["read"]})
    answer = sendsms(node, made.json()["token"], to=PHONE, text="hi")
    assert (answer.status_code, answer.text) == (403, "Authorization failed for sendsms")
    assert node.outbound() == []


def test_an_invalid_number_is_not_routable(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    answer = sendsms(node, token, to="12", text="hi")
    assert (answer.status_code, answer.text) == (403, "Not routable. Do not try again.")


def test_from_and_smsc_pick_the_broker_and_account(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    answer = sendsms(node, token, to=PHONE, text="hi", smsc="gen",
                     **{"from": OUR_NUMBER.lstrip("+")})
    assert answer.status_code == 202, answer.text
    (message,) = node.outbound()
    assert (message["broker"], message["account"], message["local"]) == (
        "gen", "main", OUR_NUMBER)


def test_ucs2_text_in_utf16be_by_default_and_in_a_named_charset(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        utf16 = "".join(f"%{b:02X}" for b in "Привет".encode("utf-16-be"))
        client.get(f"{node.base}{PATH}?username=app&password={token}&to={PHONE}"
                   f"&coding=2&text={utf16}")
        latin = "".join(f"%{b:02X}" for b in "café".encode("latin-1"))
        client.get(f"{node.base}{PATH}?username=app&password={token}&to={PHONE}"
                   f"&charset=ISO-8859-1&text={latin}")
    assert [m["body"] for m in node.outbound()] == ["Привет", "café"]


def test_a_post_of_text_plain_with_x_kannel_headers(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        answer = client.post(node.base + PATH, content=b"posted text", headers={
            "Content-Type": "text/plain; charset=UTF-8", "X-Kannel-Username": "app",
            "X-Kannel-Password": token, "X-Kannel-To": PHONE})
        missing = client.post(node.base + PATH, content=b"x", headers={
            "Content-Type": "text/plain", "X-Kannel-Username": "app",
            "X-Kannel-Password": token})
        wrong = client.post(node.base + PATH, content=b"x", headers={
            "Content-Type": "image/png"})
    assert (answer.status_code, answer.text) == (202, "0: Accepted for delivery")
    assert (missing.status_code, missing.text) == (
        400, "Missing receiver(s) number(s), rejected")
    assert (wrong.status_code, wrong.text) == (400, "Invalid content-type")
    assert [m["body"] for m in node.outbound()] == ["posted text"]


def test_queued_for_later_when_the_outbox_does_not_send(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker, outbox=outbox_toml(enabled=False))
    answer = sendsms(node, token, to=PHONE, text="later")
    assert (answer.status_code, answer.text) == (202, "3: Queued for later delivery")


def test_off_unless_enabled_and_metadata_dlr_is_reserved(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        assert client.get(node.base + PATH, params={"to": PHONE}).status_code == 404
    forged = node.send(to=PHONE, text="x", metadata={"dlr": {"kind": "kannel"}})
    assert forged.status_code == 400 and "metadata.dlr" in forged.text


def test_the_dlr_url_is_called_back_with_kannels_escapes(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """Mask 9 (delivered + accepted by the SMSC): the broker's acceptance calls back
    type 8 at once, its receipt type 1; the application is a local HTTP server."""
    node, token = node_with_app(smshost, fake_broker)
    dlr = (f"{fake_broker.url}/dlr?type=%d&to=%p&from=%P&to2=%q&reply=%A&ts=%T&smsc=%i"
           "&id=%I&fid=%F&user=%n&t=%t&pct=%%&unknown=%Z")
    answer = sendsms(node, token, to=PHONE, text="with dlr", **{"dlr-mask": "9",
                                                                "dlr-url": dlr})
    assert answer.status_code == 202, answer.text
    (message,) = node.outbound()
    node.wait_status(message["id"], "sent")
    (first,) = wait_until(lambda: [s for s in fake_broker.seen() if s.path == "/dlr"] or None,
                          what="the type 8 callback")
    assert first.method == "GET"
    assert first.target.split("?", 1)[1].startswith("type=8&to=%2B14155550123&from=%2B1415")
    query = {k: v[0] for k, v in first.query.items()}
    stored = node.message(message["id"])
    assert query["reply"] == "ACK/" and query["smsc"] == "gen"
    assert query["id"] == str(message["id"]) and query["fid"] == stored["broker_message_id"]
    assert query["to2"] == PHONE and query["user"] == "app"
    assert int(query["ts"]) > 1_700_000_000 and len(query["t"]) == 19
    assert query["pct"] == "%" and "unknown=%Z" in first.target
    post_receipt(node, stored["broker_message_id"], "delivered")
    node.wait_status(message["id"], "delivered")
    calls = wait_until(lambda: len(s := [x for x in fake_broker.seen() if x.path == "/dlr"])
                       >= 2 and s, what="the type 1 callback")
    assert calls[1].query["type"] == ["1"]
    assert calls[1].query["reply"][0].startswith(f"id:{stored['broker_message_id']} "
                                                 "stat:DELIVRD")


def post_receipt(node: Smshost, broker_id: str, status: str) -> None:
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        answer = client.post(f"{node.base}/generic/receipt",
                             json={"id": broker_id, "status": status})
    assert answer.status_code < 300, answer.text


def test_a_mask_without_the_bit_calls_nothing(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    sendsms(node, token, to=PHONE, text="only undelivered",
            **{"dlr-mask": "2", "dlr-url": f"{fake_broker.url}/dlr?type=%d"})
    (message,) = node.outbound()
    stored = node.wait_status(message["id"], "sent")
    post_receipt(node, stored["broker_message_id"], "delivered")
    node.wait_status(message["id"], "delivered")
    assert not [s for s in fake_broker.seen() if s.path == "/dlr"]
    assert node.rows("select * from callback_deliveries") == []


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)
