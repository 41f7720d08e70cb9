"""The shipped kannel broker: the definition alone, then against a real Kannel 1.4.5.

Part 1 (fast) drives the definition through smshost's HTTP listener (Starlette
TestClient) with requests shaped byte for byte as Kannel's smsbox sends them: get-url
escape codes percent-encode the message bytes (gw/urltrans.c), a UCS-2 text arrives as
UTF-16BE bytes with 0x20 bytes written as "+", a UDH as binary.

Part 2 (``slow``) runs the real thing on loopback: bearerbox + smsbox with a generated
configuration, a fake HTTP carrier behind Kannel's HTTP SMSC, and ``smshost serve`` as a
subprocess in front (tests/brokers/kannel_harness.py). MO is injected as the carrier
would (GET to the HTTP SMSC port), MT is built by smshost's kannel definition and sent
with a real HTTP client to smsbox's sendsms, receipts come back through the dlr-url.
Without Kannel installed these tests fail and say how to install it (or set
SMSHOST_SKIP_KANNEL=1 to skip them on purpose).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_from_bytes, urlsplit

import httpx2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from host.brokers.engine import OutboundMessage
from host.brokers.http import InboundRequest, MtResponse, MtResult
from host.config import load_settings
from host.core import Host
from host.messages import NewMessage
from host.text import clean
from tests.brokers.conftest import ROOT, broker_config, serving, stored
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
    wait_until,
)

OUR_NUMBER = "+14155550100"
POST_NUMBER = "14155550199"  # the real-Kannel tests route MO to it via post-url
SENDSMS_USER, SENDSMS_PASSWORD = "smshost", "kannel-test-secret"
KANNEL_DEFINITION = ROOT / "plugins" / "brokers" / "kannel.xml"

KANNEL_TOML = """
[[brokers]]
name = "kannel"
definition = "kannel"
encryption = "http"
mt.gateway = "{gateway}"
{extra}

[[brokers.accounts]]
id = "main"
login = "smshost"
password = "kannel-test-secret"
local_address = "+14155550100"
"""


def kannel_toml(gateway: str = "http://kannel.example.com:13013", extra: str = "") -> str:
    return KANNEL_TOML.format(gateway=gateway, extra=extra)


def kannel_encode(data: bytes) -> str:
    """Percent-encode like Kannel's octstr_url_encode: a space byte (0x20) becomes '+'."""
    return quote_from_bytes(data, safe="").replace("%20", "+")


def mo_query(*, id: str, sender: str, to: str = "14155550100", text: str = "",
             ucs2: bool = False, udh: bytes = b"", coding: str | None = None) -> str:
    """What smsbox fetches for ``get-url = ".../kannel/mo?" + MO_QUERY``."""
    data = text.encode("utf-16-be" if ucs2 else "utf-8")
    coding = coding or ("2" if ucs2 else "0")
    values = {"%I": id, "%p": kannel_encode(sender.encode()), "%P": kannel_encode(to.encode()),
              "%b": kannel_encode(data), "%u": kannel_encode(udh), "%c": coding,
              "%C": "UTF-16BE" if ucs2 else "UTF-8", "%i": "carrier", "%T": "1795816551"}
    return re.sub(r"%[A-Za-z]", lambda m: values[m.group(0)], MO_QUERY)


# == part 1: the definition, through smshost's HTTP listener ============================


@pytest.fixture
def host(broker_host: Callable[..., Host]) -> Host:
    return broker_host(kannel_toml(), public_url="http://smshost.example.com")


def test_description_documents_the_tested_get_url() -> None:
    """The sms-service snippet users copy is the one the real-Kannel tests run."""
    text = KANNEL_DEFINITION.read_text(encoding="utf-8").replace("&amp;", "&")
    assert f'get-url = "http://smshost.internal:8080/kannel/mo?{MO_QUERY}"' in text
    assert "max-messages = 0" in text


def test_mo_gsm_and_ucs2_texts_over_get(host: Host) -> None:
    ucs2_text = "Привет † мир € ✓ 日本"  # U+0420 and U+2020 hold 0x20 bytes in UTF-16BE
    with serving(host) as client:
        first = client.get("/kannel/mo?" + mo_query(
            id="k-1", sender="+14155550123", text="Hi  there\nline 2 & 100% +ok"))
        second = client.get("/kannel/mo?" + mo_query(
            id="k-2", sender="14155550123", text=ucs2_text, ucs2=True))
        rows = stored(client, host)
    for response in (first, second):
        assert response.status_code == 200
        assert response.content == b""  # no text: smsbox has nothing to send back
    assert [(r["remote"], r["local"], r["body"], r["encoding"], r["broker_message_id"])
            for r in rows] == [
        ("+14155550123", OUR_NUMBER, "Hi  there\nline 2 & 100% +ok", "gsm7", "k-1"),
        ("+14155550123", OUR_NUMBER, ucs2_text, "ucs2", "k-2"),
    ]
    assert all(r["account"] == "main" and r["broker"] == "kannel" for r in rows)


def test_retried_mo_is_stored_once(host: Host) -> None:
    query = mo_query(id="k-retry", sender="14155550123", text="only once")
    with serving(host) as client:
        answers = [client.get("/kannel/mo?" + query) for _ in range(3)]
        rows = stored(client, host)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [r["body"] for r in rows] == ["only once"]


def test_udh_parts_reassembled_in_any_order_and_a_retried_part_counts_once(host: Host) -> None:
    udh = [bytes([5, 0, 3, 0xA7, 3, n]) for n in (1, 2, 3)]
    parts = ["Часть первая, ", "часть вторая, ", "часть третья."]
    with serving(host) as client:
        for n in (2, 0, 2):  # the third request retries the first part
            client.get("/kannel/mo?" + mo_query(id=f"p-{n}", sender="14155550123",
                                                text=parts[n], ucs2=True, udh=udh[n]))
        assert stored(client, host) == []
        client.get("/kannel/mo?" + mo_query(id="p-1", sender="14155550123", text=parts[1],
                                            ucs2=True, udh=udh[1]))
        rows = stored(client, host)
    assert [(r["body"], r["segments"], r["remote"]) for r in rows] == [
        ("".join(parts), 3, "+14155550123")]


@pytest.mark.parametrize("udh_form", ["percent", "hex"])
def test_post_url_mo_with_a_ucs2_body_and_udh_header(host: Host, udh_form: str) -> None:
    """post-url: body = text in the Content-Type charset, the rest in X-Kannel-* headers.
    Kannel 1.4.5 sends X-Kannel-UDH percent-encoded; its user guide says hex."""
    with serving(host) as client:
        for n, text in ((1, "Grüße, "), (2, "мир!")):
            udh = bytes([5, 0, 3, 9, 2, n])
            response = client.post(
                f"/kannel/mo?id=post-{n}", content=text.encode("utf-16-be"),
                headers={"Content-Type": 'text/plain; charset="UTF-16BE"',
                         "X-Kannel-From": "14155550123", "X-Kannel-To": "14155550100",
                         "X-Kannel-UDH": udh.hex() if udh_form == "hex"
                         else quote_from_bytes(udh, safe=""),
                         "X-Kannel-Coding": "2", "X-Kannel-SMSC": "carrier",
                         "X-Kannel-Time": "2026-11-27 22:05:32"})
            assert response.status_code == 200 and response.content == b""
        rows = stored(client, host)
    assert [(r["body"], r["remote"], r["local"], r["segments"]) for r in rows] == [
        ("Grüße, мир!", "+14155550123", OUR_NUMBER, 2)]


R = "\ufffd"
CHARSET_CASES = [
    # (charset named, bytes Kannel sent, coding, text stored)
    ("utf-7", b"a+2D0-b", "0", "a+2D0-b"),  # not a charset Kannel sends: read as UTF-8
    ("unicode_escape", b"hi \\ud83d there", "0", "hi \\ud83d there"),
    ("raw_unicode_escape", b"x\\ud800y", "0", "x\\ud800y"),
    ("zlib", b"abc", "0", "abc"), ("rot13", b"abc", "0", "abc"),
    ("punycode", b"\xff", "0", R), ("no-such-charset", b"caf\xc3\xa9", "0", "caf\u00e9"),
    ("UTF-8", b"\xed\xa0\xbd", "0", R * 3), ("UTF-8", b"nul\x00z", "0", f"nul{R}z"),
    ("UTF-16BE", b"\xd8\x3d\x00a", "2", f"{R}a"), ("utf-7", b"\x00a", "2", "a"),
    ("WINDOWS-1252", b"\x80 caf\xe9", "0", "\u20ac caf\u00e9"),
    ("ISO-8859-1", b"caf\xe9", "0", "caf\u00e9"),
    ("UCS-2", b"\xfe\xff\x04\x1f", "2", "\u041f"),
]


@pytest.mark.parametrize(("charset", "data", "coding", "text"), CHARSET_CASES)
def test_any_charset_named_keeps_the_message_with_replacement(
        host: Host, charset: str, data: bytes, coding: str, text: str) -> None:
    """Before issue 11's review a charset naming any Python codec was used: utf-7 and
    unicode_escape decoded to lone surrogates (400 UnicodeEncodeError), zlib and rot13
    are no text codecs (400 LookupError), punycode refused a byte (400): the MO was
    lost (smsbox does not retry). Only Kannel's text charsets are decoded; any other
    name reads the text as if none were given (UTF-8, or UTF-16BE for coding 2), and
    what does not decode becomes U+FFFD (host/text.py). The post-url form alike."""
    with serving(host) as client:
        got = client.get(f"/kannel/mo?id=g-{charset}&from=%2B14155550009&text="
                         f"{quote_from_bytes(data, safe='')}&charset={charset}&coding={coding}")
        posted = client.post(f"/kannel/mo?id=p-{charset}", content=data,
                             headers={"Content-Type": f"text/plain; charset={charset}",
                                      "X-Kannel-From": "+14155550009",
                                      "X-Kannel-Coding": coding})
        rows = stored(client, host)
    assert (got.status_code, posted.status_code) == (200, 200), (got.text, posted.text)
    assert [r["body"] for r in rows] == [text, text]


@pytest.fixture(scope="module")
def kannel_broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The configured kannel broker object alone (for property tests of one step)."""
    cfg = broker_config(tmp_path_factory.mktemp("kannel-step"), kannel_toml(),
                        public_url="http://smshost.example.com")
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    return host.brokers["kannel"].broker


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(codec="utf-16", exclude_categories=("Cs",)),
                    min_size=1, max_size=70))
@example(text="\ufeff")  # UTF-16BE declares the byte order: a leading U+FEFF is text
@example(text="\ufeffhi")
def test_any_ucs2_text_decodes_exactly(kannel_broker: Any, text: str) -> None:
    """The MO step alone: every text Kannel can hand over as %b comes out unchanged
    (but NUL, which is read as U+FFFD everywhere: host/text.py)."""
    url = "http://smshost.example.com/kannel/mo?" + mo_query(
        id="h", sender="14155550123", text=text, ucs2=True)
    assert kannel_broker.parse_mo(InboundRequest("GET", url, {})).text == clean(text)


@pytest.mark.parametrize(("kind", "reply", "status", "error"), [
    ("1", "id:c1 sub:001 dlvrd:001 stat:DELIVRD err:000", "delivered", None),
    ("2", "id:c1 stat:UNDELIV err:00b", "undelivered", "00b"),
    ("4", "", "sent", None),
    ("8", "ACK/", "sent", None),
    ("16", "NACK/0x00000045/Submit failed", "rejected", "0x00000045"),
    ("32", "", "sent", None),
    ("64", "", "sending", None),  # unknown type: kept in the history, status unchanged
])
def test_dlr_types_map_to_states(host: Host, kind: str, reply: str, status: str,
                                 error: str | None) -> None:
    with serving(host) as client:
        message, _ = client.portal.call(host.messages.add, NewMessage(  # type: ignore[union-attr]
            direction="out", body="hi", status="sending", broker="kannel", account="main",
            local=OUR_NUMBER, remote="+14155550123"))
        query = (f"ref={message.id}&type={kind}&reply={kannel_encode(reply.encode())}"
                 f"&fid=carrier-9&smsc=carrier&to=%2B14155550123&ts=1795816551")
        response = client.get(f"/kannel/dlr?{query}")
        assert response.status_code == 200 and response.content == b""
        found = client.get(f"/api/messages/{message.id}").json()
    assert found["status"] == status
    last = found["events"][-1]
    assert last["source"] == "receipt"
    assert last["detail"]["broker_status"] == kind
    assert last["detail"].get("error") == error
    assert last["detail"].get("error_text") == (reply or None)
    assert last["detail"]["attrs"] == {"foreign_id": "carrier-9", "smsc": "carrier"}


def test_mt_options_route_meta_data_and_no_receipts(broker_host: Callable[..., Host]) -> None:
    host = broker_host(kannel_toml(extra='options = { Smsc = "smpp-a", MetaData = '
                                   '"?smpp?tag=1", DlrMask = "" }'),
                       public_url="http://smshost.example.com")
    instance = host.brokers["kannel"]
    request = instance.broker.build_mt_request(
        OutboundMessage(id=5, ref="5", to="+14155550123", from_=OUR_NUMBER, text="x"),
        instance.account_values(instance.accounts["main"]))
    query = dict(parse_qsl(urlsplit(request.url).query))
    assert query["smsc"] == "smpp-a" and query["meta-data"] == "?smpp?tag=1"
    assert "dlr-mask" not in query and "dlr-url" not in query
    assert "kannel-test-secret" not in request.describe()


def test_a_password_with_url_special_characters_is_masked_in_logs(
        broker_host: Callable[..., Host]) -> None:
    """sendsms takes the password in the URL, percent-encoded; logs must not show it."""
    host = broker_host(kannel_toml().replace('"kannel-test-secret"', '"p@ss word&x/1"'),
                       public_url="http://smshost.example.com")
    instance = host.brokers["kannel"]
    request = instance.broker.build_mt_request(
        OutboundMessage(id=5, ref="5", to="+14155550123", from_=OUR_NUMBER, text="x"),
        instance.account_values(instance.accounts["main"]))
    assert dict(parse_qsl(urlsplit(request.url).query))["password"] == "p@ss word&x/1"
    described = request.describe()
    assert "p%40ss" not in described and "p@ss" not in described
    assert "password=********" in described


# == part 2: a real Kannel on loopback ===================================================


def require_kannel() -> None:
    """Fail (not skip) without Kannel, saying how to install it; skip only on request."""
    if kannel_binaries() is None:
        if os.environ.get("SMSHOST_SKIP_KANNEL") == "1":
            pytest.skip(f"SMSHOST_SKIP_KANNEL=1. {INSTALL_HINT}")
        pytest.fail(INSTALL_HINT, pytrace=False)


def test_without_kannel_the_real_tests_fail_with_the_install_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.kannel_binaries", lambda: None)
    monkeypatch.delenv("SMSHOST_SKIP_KANNEL", raising=False)
    with pytest.raises(pytest.fail.Exception, match="apt-get install kannel"):
        require_kannel()
    monkeypatch.setenv("SMSHOST_SKIP_KANNEL", "1")
    with pytest.raises(pytest.skip.Exception, match="system-packages"):
        require_kannel()


def carrier_answer(request: Any, n: int) -> str:
    """The fake carrier: refuses texts containing REJECTME, accepts the rest."""
    return "FAIL no route to destination" if b"REJECTME" in request.value("text") \
        else f"OK carrier-{n}"


@dataclass
class Stack:
    kannel: Kannel
    carrier: FakeSmsc
    server: SmshostServer
    cfg: Path
    base: str

    def explain(self) -> str:
        return (f"{self.kannel.status()}\n{self.kannel.logs()}\n--- smshost ---\n"
                f"{self.server.output[-4000:]}")

    def api(self, path: str) -> Any:
        with httpx2.Client(trust_env=False, timeout=5.0,
                           headers={"Authorization": "Bearer test-token"}) as client:
            response = client.get(f"{self.base}{path}")
        assert response.status_code == 200, response.text
        return response.json()

    def inbound_from(self, remote: str) -> list[dict[str, Any]]:
        rows = self.api("/api/messages?direction=in&limit=500")["messages"]
        return sorted((r for r in rows if r["remote"] == remote), key=lambda r: r["id"])

    def wait_inbound(self, remote: str, count: int) -> list[dict[str, Any]]:
        return wait_until(lambda: (rows := self.inbound_from(remote)) and len(rows) >= count
                          and rows, timeout=20, what=f"{count} MO from {remote} in smshost",
                          explain=self.explain)

    def wait_status(self, message_id: int, status: str) -> dict[str, Any]:
        return wait_until(
            lambda: (m := self.api(f"/api/messages/{message_id}"))["status"] == status and m,
            timeout=20, what=f"message {message_id} to become {status}", explain=self.explain)

    def wait_carrier(self, to: str, count: int = 1) -> list[Any]:
        return wait_until(lambda: len(got := self.carrier.received(to)) >= count and got,
                          timeout=20, what=f"{count} MT to {to} at the carrier",
                          explain=self.explain)

    def host(self) -> Host:
        host = Host(load_settings(self.cfg), config_dir=self.cfg)
        host.load_plugins()
        return host

    def add_outbound(self, to: str, text: str, encoding: str = "gsm7") -> int:
        """The outbound row smshost keeps for a message, before it is sent (its id is
        the reference Kannel's dlr-url carries back)."""
        async def add() -> int:
            host = self.host()
            async with host.running(background=False):
                message, _ = await host.messages.add(NewMessage(
                    direction="out", body=text, status="sending", broker="kannel",
                    account="main", local=OUR_NUMBER, remote=to, encoding=encoding))
                return message.id
        return asyncio.run(add())

    def send(self, message: OutboundMessage,
             password: str | None = None) -> tuple[MtResult, httpx2.Response]:
        """Build the MT with smshost's kannel definition, send it with a real client."""
        instance = self.host().brokers["kannel"]
        account = instance.account_values(instance.accounts["main"])
        if password is not None:
            account = {**account, "password": password}
        request = instance.broker.build_mt_request(message, account)
        with httpx2.Client(trust_env=False, timeout=15.0) as client:
            response = client.request(request.method, request.url, headers=request.headers,
                                      content=request.body or None)
        result = instance.broker.read_mt_response(
            MtResponse(response.status_code,
                       {k.lower(): v for k, v in response.headers.items()}, response.content),
            message, account)
        return result, response

    def send_new(self, to: str, text: str, encoding: str = "gsm7") -> tuple[int, MtResult]:
        message_id = self.add_outbound(to, text, encoding)
        result, response = self.send(OutboundMessage(
            id=message_id, ref=str(message_id), to=to, from_=OUR_NUMBER, text=text,
            encoding=encoding))
        assert result.outcome == "accepted", (response.status_code, response.text)
        assert result.message_id == str(message_id)
        return message_id, result

    def carrier_dlr(self, mask: int, carrier_id: str, to: str, text: str) -> None:
        """The carrier's delivery report into Kannel's HTTP SMSC (dlr-mask + dlr-mid)."""
        response = self.kannel.carrier_request(
            [("dlr-mask", str(mask)), ("dlr-mid", carrier_id), ("to", to), ("text", text)])
        assert response.status_code == 200, (response.status_code, response.text)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_kannel()
    tmp = tmp_path_factory.mktemp("kannel-stack")
    (port,) = free_ports(1)
    base = f"http://{LOOPBACK}:{port}"
    carrier = FakeSmsc(answer=carrier_answer).start()
    server: SmshostServer | None = None
    kannel: Kannel | None = None
    try:
        kannel = Kannel(tmp / "kannel", KannelSetup(
            mo_url=f"{base}/kannel/mo?{MO_QUERY}",
            carrier_url=f"http://{LOOPBACK}:{carrier.port}/mt?{CARRIER_QUERY}",
            user=SENDSMS_USER, password=SENDSMS_PASSWORD,
            post_url=f"{base}/kannel/mo?id=%I", post_receiver=POST_NUMBER))
        cfg = broker_config(tmp, kannel_toml(kannel.sendsms_url), public_url=base, port=port)
        server = SmshostServer(tmp, cfg, ROOT)
        server.wait_healthy(f"{base}/health")
        kannel.start()
        yield Stack(kannel, carrier, server, cfg, base)
    finally:
        if kannel is not None:
            kannel.stop()
        if server is not None:
            server.stop()
        carrier.stop()


@pytest.mark.slow
def test_real_mo_gsm_and_ucs2_stored_and_no_reply_sms(stack: Stack) -> None:
    sender = "14155550123"  # as an SMPP carrier gives it: no +
    ucs2_text = "Привет † мир € ✓ 日本"
    gsm_text = "Hello  from the carrier: 100% & more\nsecond line"
    denied = stack.kannel.read_log("smsbox.log").count("No reply sent, denied.")
    for params in ([("from", sender), ("to", "14155550100"), ("text", gsm_text)],
                   [("from", sender), ("to", "14155550100"), ("coding", "2"),
                    ("text", ucs2_text.encode("utf-16-be"))]):
        response = stack.kannel.carrier_request(params)
        assert (response.status_code, response.text) == (200, "Sent")

    rows = stack.wait_inbound("+14155550123", 2)
    assert [(r["body"], r["encoding"], r["local"], r["account"], r["broker"])
            for r in rows] == [(gsm_text, None, OUR_NUMBER, "main", "kannel"),
                               (ucs2_text, "ucs2", OUR_NUMBER, "main", "kannel")]
    for row in rows:  # Kannel's %I: smshost can drop an MO smsbox retries
        uuid.UUID(row["broker_message_id"])
        assert row["attrs"]["smsc"] == "carrier"

    # smsbox got smshost's empty 200 for both and decided not to reply ...
    wait_until(lambda: stack.kannel.read_log("smsbox.log").count(
        "No reply sent, denied.") >= denied + 2, timeout=20,
        what="smsbox to finish both MO without a reply", explain=stack.explain)
    access = stack.kannel.read_log("smsbox-access.log")
    for row in rows:
        (line,) = [ln for ln in access.splitlines() if row["broker_message_id"] in ln]
        assert "reply: 200" in line
    # ... and the carrier saw no SMS to the sender: a marker sent after those decisions
    # arrives, alone.
    marker = f"marker {uuid.uuid4().hex[:8]}"
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        response = client.get(f"{stack.kannel.sendsms_url}/cgi-bin/sendsms", params={
            "username": SENDSMS_USER, "password": SENDSMS_PASSWORD, "from": "14155550100",
            "to": sender, "text": marker})
    assert response.status_code == 202, response.text
    (only,) = stack.wait_carrier(sender)
    assert only.text() == marker
    assert stack.carrier.received("+" + sender) == []
    # accept-x-kannel-headers (documented) keeps smsbox quiet about our Content-Type.
    assert "Tried to set Coding field" not in stack.kannel.read_log("smsbox.log")


@pytest.mark.slow
def test_real_mo_concatenated_parts_reassembled_by_smshost(stack: Stack) -> None:
    """sms-combine-concatenated-mo = false: Kannel hands over the parts with their UDH."""
    sender = "14155550124"
    parts = ["Часть первая — ", "часть вторая."]
    for n in (2, 1):
        response = stack.kannel.carrier_request([
            ("from", sender), ("to", "14155550100"), ("coding", "2"),
            ("udh", bytes([5, 0, 3, 0x42, 2, n])), ("text", parts[n - 1].encode("utf-16-be"))])
        assert (response.status_code, response.text) == (200, "Sent")
    (row,) = stack.wait_inbound("+14155550124", 1)
    assert (row["body"], row["segments"], row["local"]) == ("".join(parts), 2, OUR_NUMBER)
    assert row["attrs"]["concat_total"] == 2


@pytest.mark.slow
def test_real_mo_through_a_post_url_service(stack: Stack) -> None:
    """post-url: text in the body, X-Kannel-From/-To/-UDH/-Coding headers."""
    sender = "14155550126"
    parts = ["Grüße, ", "мир! †"]
    for n in (1, 2):
        response = stack.kannel.carrier_request([
            ("from", sender), ("to", POST_NUMBER), ("coding", "2"),
            ("udh", bytes([5, 0, 3, 0x11, 2, n])), ("text", parts[n - 1].encode("utf-16-be"))])
        assert (response.status_code, response.text) == (200, "Sent")
    response = stack.kannel.carrier_request(
        [("from", sender), ("to", POST_NUMBER), ("text", "hello café, 100% & +")])
    assert (response.status_code, response.text) == (200, "Sent")
    rows = stack.wait_inbound("+14155550126", 2)
    assert sorted((r["body"], r["segments"], r["local"]) for r in rows) == [
        ("Grüße, мир! †", 2, "+" + POST_NUMBER),
        ("hello café, 100% & +", None, "+" + POST_NUMBER)]
    # smsbox used the post-url service (only the id in the URL) and got a 200 each time.
    lines = [line for line in stack.kannel.read_log("smsbox-access.log").splitlines()
             if f"sender:{sender} " in line]
    assert len(lines) == 3
    assert all(re.search(r"/kannel/mo\?id=[0-9a-f-]{36}' reply: 200 ", line)
               for line in lines), lines


# The server under test is a subprocess (on SQLite, as every subprocess of the tests):
# these tests write the outbound row beside it with an in-process Host on the same data
# directory (Stack.add_outbound), which on PostgreSQL would write another database.
SHARES_THE_SERVERS_FILE = pytest.mark.sqlite_only


@pytest.mark.slow
@SHARES_THE_SERVERS_FILE
def test_real_mt_gsm_reaches_the_carrier_then_sent_and_delivered(stack: Stack) -> None:
    to, text = "+14155550130", "Hello via Kannel: 100% & more, ü €"
    message_id, _ = stack.send_new(to, text)
    (mt,) = stack.wait_carrier(to)
    assert (mt.text(), mt.value("from"), mt.value("coding")) == (text, OUR_NUMBER.encode(),
                                                                 b"0")
    # Kannel: the SMSC accepted it (type 8) -> sent.
    message = stack.wait_status(message_id, "sent")
    (sent,) = [e for e in message["events"] if e["source"] == "receipt"]
    assert sent["detail"]["broker_status"] == "8"
    assert sent["detail"]["error_text"] == "ACK/"
    carrier_id = mt.answer.split()[1]
    assert sent["detail"]["attrs"]["foreign_id"] == carrier_id
    # The carrier reports delivery to the phone (type 1) -> delivered.
    stack.carrier_dlr(1, carrier_id, to, f"id:{carrier_id} stat:DELIVRD err:000")
    message = stack.wait_status(message_id, "delivered")
    assert [e["detail"]["broker_status"] for e in message["events"]
            if e["source"] == "receipt"] == ["8", "1"]


@pytest.mark.slow
@SHARES_THE_SERVERS_FILE
def test_real_mt_unicode_sent_as_ucs2_then_undelivered(stack: Stack) -> None:
    to, text = "+14155550131", "Привет † мир € ✓ 日本"
    message_id, _ = stack.send_new(to, text, encoding="ucs2")
    (mt,) = stack.wait_carrier(to)
    assert mt.value("coding") == b"2" and mt.value("charset") == b"UTF-16BE"
    assert mt.value("text") == text.encode("utf-16-be")
    stack.wait_status(message_id, "sent")
    carrier_id = mt.answer.split()[1]
    stack.carrier_dlr(2, carrier_id, to, f"id:{carrier_id} stat:UNDELIV err:001")
    message = stack.wait_status(message_id, "undelivered")
    last = message["events"][-1]["detail"]
    assert (last["broker_status"], last["error"]) == ("2", "001")


@pytest.mark.slow
@SHARES_THE_SERVERS_FILE
def test_real_mt_long_text_split_and_concatenated_by_kannel(stack: Stack) -> None:
    to = "+14155550132"
    text = ("Kannel splits this text for us, because smshost lets the broker do it. " * 3)
    assert len(text) > 160
    message_id, _ = stack.send_new(to, text)
    parts = stack.wait_carrier(to, 2)
    udhs = sorted(p.value("udh") for p in parts)
    assert [u[:3] + u[4:] for u in udhs] == [bytes([5, 0, 3, 2, 1]), bytes([5, 0, 3, 2, 2])]
    by_number = {p.value("udh")[5]: p.text() for p in parts}
    assert by_number[1] + by_number[2] == text
    stack.wait_status(message_id, "sent")


@pytest.mark.slow
@SHARES_THE_SERVERS_FILE
def test_real_mt_refused_by_the_carrier_is_rejected(stack: Stack) -> None:
    to = "+14155550133"
    message_id, _ = stack.send_new(to, "REJECTME please")
    message = stack.wait_status(message_id, "rejected")
    last = message["events"][-1]["detail"]
    assert last["broker_status"] == "16"
    assert last["error_text"] == "NACK/FAIL no route to destination"


@pytest.mark.slow
def test_real_sendsms_answers_read_by_the_definition(stack: Stack) -> None:
    message = OutboundMessage(id=999999, ref="999999", to="+14155550134", from_=OUR_NUMBER,
                              text="never sent")
    result, response = stack.send(message, password="wrong-password")
    assert response.status_code == 403
    assert (result.outcome, result.error) == ("fail", "Authorization failed for sendsms")
    assert stack.carrier.received("+14155550134") == []
