"""smshost's Kannel-compatible sendsms against a real Kannel 1.4.5 (issue 16 point 4).

One application (:class:`App`: the same code, only the host and port of the gateway and
of its own callback listener differ) sends the same table of sendsms requests to

* a real Kannel: bearerbox + smsbox from Debian's package (tests/brokers/kannel_harness.py),
  its sendsms user ``app`` with the smshost token as password, an HTTP SMSC ``carrier``
  in front of a fake carrier on 127.0.0.1 that accepts (``OK carrier-N``) or refuses
  (``FAIL ...``) and sends delivery reports back into Kannel, and
* a real smshost (tests/outbound/conftest.py Smshost) with ``[compat.kannel]`` on, a
  token of integration ``app`` and a generic broker ``carrier`` whose gateway is a fake
  broker that accepts or refuses the same texts; its receipts are posted as the broker
  would,

and compares each answer (status and text), then the dlr-url callbacks each side makes
for a message delivered, one undelivered and one refused by the carrier. What differs
on purpose is listed in ANSWER_DIFFERENCES / CALLBACK_NORMALISED with the reason, and
documented in docs/migrating.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

from tests.brokers.kannel_harness import (
    CARRIER_QUERY,
    LOOPBACK,
    FakeSmsc,
    Kannel,
    KannelSetup,
    encode_query,
    wait_until,
)
from tests.brokers.test_kannel import require_kannel
from tests.outbound.conftest import FakeBroker, Reply, Seen, Smshost, generic_toml

pytestmark = pytest.mark.slow

ALLOW = '\n[compat]\nallowed_hosts = ["127.0.0.1"]\nallow_private = true\n'
"""dlr-urls go to the application's local server (smshost refuses other hosts, and
private addresses, unless allowed; Kannel calls any)."""
USER = "app"
OURS = "14155550100"  # the gateway's number, as the application writes it
PHONE, PHONE2 = "+14155550123", "+14155550124"
SMSC = "carrier"  # Kannel's smsc-id; the smshost broker instance has the same name
REFUSED_TEXT = "REJECTME"  # both carriers refuse a text containing it
WAIT = 20.0
DLR_URL = ("/dlr?type=%d&to=%p&from=%P&q=%q&Q=%Q&reply=%A&a=%a&ts=%T&t=%t&smsc=%i"
           "&id=%I&fid=%F&user=%n&o=%o&c=%c&m=%m&C=%C&D=%D&B=%B&pct=%%&unknown=%Z&tag=")


# -- the application -----------------------------------------------------------------


@dataclass
class App:
    """An application written for Kannel: its gateway and its own dlr-url listener."""

    gateway: str  # http://host:port of sendsms
    listener: FakeBroker  # where its dlr-url points
    token: str

    def dlr_url(self, tag: str) -> str:
        return f"{self.listener.url}{DLR_URL}{tag.replace(' ', '-')}"

    def sendsms(self, case: Case) -> tuple[int, str]:
        params = [(k, v.replace("{token}", self.token).replace("{dlr}", self.dlr_url(case.name))
                   if isinstance(v, str) else v) for k, v in case.params]
        with httpx2.Client(trust_env=False, timeout=15.0) as client:
            url = f"{self.gateway}/cgi-bin/sendsms"
            if case.method == "GET":
                response = client.get(f"{url}?{encode_query(params)}")
            elif case.method == "FORM":
                response = client.post(url, content=encode_query(params), headers={
                    "Content-Type": "application/x-www-form-urlencoded"})
            else:  # smsbox's POST: the text as the body, the rest in X-Kannel-* headers
                body = dict(params).pop("text", b"")
                headers = {f"X-Kannel-{k.title()}": str(v) for k, v in params if k != "text"}
                headers["Content-Type"] = case.content_type
                response = client.post(url, content=body if isinstance(body, bytes)
                                       else body.encode(), headers=headers)
        return response.status_code, response.text

    def callbacks(self, tag: str) -> list[dict[str, str]]:
        return [dict(parse_qsl(urlsplit(s.target).query, keep_blank_values=True))
                | {"_raw": urlsplit(s.target).query}
                for s in self.listener.seen() if s.path == "/dlr"
                and s.query.get("tag") == [tag]]

    def wait_callbacks(self, tag: str, count: int) -> list[dict[str, str]]:
        return wait_until(lambda: len(got := self.callbacks(tag)) >= count and got,
                          timeout=WAIT, what=f"{count} dlr-url call(s) for {tag}",
                          explain=lambda: str([s.target for s in self.listener.seen()]))


@dataclass
class Case:
    name: str
    params: list[tuple[str, Any]]
    method: str = "GET"  # GET, FORM (a form POST) or POST (text/plain + X-Kannel-*)
    content_type: str = "text/plain; charset=UTF-8"


def creds(**extra: Any) -> list[tuple[str, Any]]:
    return [("username", USER), ("password", "{token}"), *extra.items()]


def good(to: str = PHONE, text: Any = "Hello parity", **extra: Any) -> list[tuple[str, Any]]:
    return creds(**{"from": OURS, "to": to, "text": text,
                    **{k.replace("_", "-"): v for k, v in extra.items()}})


def without(params: list[tuple[str, Any]], name: str) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in params if k != name]


CASES = [
    Case("plain", good()),
    Case("two receivers", good(to=f"{PHONE} {PHONE2}")),
    Case("one receiver denied", good(to=f"{PHONE} 555x")),
    Case("latin-1 charset", good(text="café".encode("latin-1"), charset="ISO-8859-1")),
    Case("utf-8 euro", good(text="1 € and ü")),
    Case("ucs-2 coding", good(text="Привет".encode("utf-16-be"), coding="2")),
    Case("ucs-2 with charset", good(text="Привет".encode("utf-16-be"), coding="2",
                                    charset="UTF-16BE")),
    Case("form post", good(text="posted as a form"), method="FORM"),
    Case("text/plain post", good(text="posted as text"), method="POST"),
    Case("unknown parameter", good(**{"foo": "bar"})),
    Case("dlr mask and url", good(dlr_mask="31", dlr_url="{dlr}")),
    Case("priority and validity", good(priority="2", validity="60", mclass="1")),
    Case("wrong password", [(k, "wrong" if k == "password" else v) for k, v in good()]),
    Case("wrong username", [("username", "nobody"), *good()[1:]]),
    Case("no credentials", good()[2:]),
    Case("missing to", without(good(), "to")),
    Case("empty to", good(to="")),
    Case("missing to, text/plain post", without(good(), "to"), method="POST"),
    Case("all receivers denied", good(to="abc")),
    Case("missing text", without(good(), "text")),
    Case("empty text", good(text="")),
    Case("coding 3", good(coding="3")),
    Case("dlr-mask 64", good(dlr_mask="64", dlr_url="{dlr}")),
    Case("dlr-url not http", good(dlr_mask="1", dlr_url="ftp://x")),
    Case("mclass 4", good(mclass="4")),
    Case("pid 256", good(pid="256")),
    Case("validity -2", good(validity="-2")),
    Case("priority 4", good(priority="4")),
    Case("udh misformed", good(udh=b"\x05\x00\x03")),
    Case("account misformed", good(account="a[b")),
    Case("invalid content-type", good(), method="POST", content_type="image/png"),
    Case("unknown smsc", good(smsc="no-such")),
    Case("dlr-mask 66", good(dlr_mask="66", dlr_url="{dlr}")),
    Case("dlr-mask 67", good(dlr_mask="67", dlr_url="{dlr}")),
    Case("dlr-mask -2", good(dlr_mask="-2", dlr_url="{dlr}")),
    Case("dlr-mask not a number", good(dlr_mask="abc", dlr_url="{dlr}")),
    Case("dlr-mask without url", good(dlr_mask="31")),
    Case("several denied", good(to=f"555x {PHONE} 555y {PHONE2}")),
    Case("bad charset", good(charset="no-such-charset")),
    Case("user and pass aliases", [("user", USER), ("pass", "{token}"), *good()[2:]]),
    Case("long text", good(text="y" * 300)),
    Case("too long", good(text="x" * 2000)),
    Case("from not ours", good(**{"from": "19995550000"})),
    Case("no from", without(good(), "from")),
    Case("coding 1", good(coding="1")),
    Case("udh", good(udh=b"\x05\x00\x03\x01\x02\x01")),
    Case("deferred", good(deferred="10")),
    Case("invalid number", good(to="12")),
]

# Answers that differ on purpose: case -> (Kannel's, smshost's, why).
ACCEPTED, NOT_ROUTABLE = (202, "0: Accepted for delivery"), (403, "Not routable. Do not try again.")
ANSWER_DIFFERENCES: dict[str, tuple[tuple[int, str], tuple[int, str], str]] = {
    "form post": (
        (400, "Invalid content-type"), ACCEPTED,
        "smshost also reads a form POST; no application written for Kannel sends one"),
    "missing text": (ACCEPTED, NOT_ROUTABLE, "smshost sends no empty SMS"),
    "empty text": (ACCEPTED, NOT_ROUTABLE, "smshost sends no empty SMS"),
    "unknown smsc": (
        ACCEPTED, NOT_ROUTABLE, "Kannel takes it and never sends it; smshost says so at "
        "once (name the broker instance as the smsc-id to keep smsc= working)"),
    "too long": (
        ACCEPTED, NOT_ROUTABLE, "Kannel cuts it to the user's max-messages parts; smshost "
        "refuses a text over its segment limit rather than send a part of it"),
    "from not ours": (
        ACCEPTED, (400, "Sender not a number of this gateway, rejected"),
        "smshost sends only from the numbers of its broker accounts"),
    "no from": (
        (400, "Sender missing and no global set, rejected"), ACCEPTED,
        "this Kannel has no global-sender; smshost's routes always give a sender"),
    "coding 1": (
        ACCEPTED, (400, "8-bit coding not supported by this gateway, rejected"),
        "brokers take text, not 8-bit data: refused rather than sent otherwise"),
    "udh": (
        ACCEPTED, (400, "UDH not supported by this gateway, rejected"),
        "smshost splits long texts itself; it sends no binary or WAP push"),
    "invalid number": (
        ACCEPTED, NOT_ROUTABLE, "smshost checks numbers (E.164) before taking a message"),
}


# -- the two gateways ----------------------------------------------------------------


def carrier_answer(request: Any, n: int) -> str:
    return "FAIL no route to destination" if REFUSED_TEXT.encode() in request.value(
        "text") else f"OK carrier-{n}"


def broker_answer(seen: Seen, n: int) -> Reply:
    if REFUSED_TEXT in (seen.text or ""):
        return Reply(200, {"error": "FAIL no route to destination"})
    return Reply(200, {"id": f"B-{seen.ref}"})


@dataclass
class Sides:
    kannel: App
    smshost: App
    real: Kannel
    carrier: FakeSmsc
    node: Smshost
    broker: FakeBroker


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sides]:
    require_kannel()
    tmp = tmp_path_factory.mktemp("kannel-parity")
    started: list[Any] = []
    try:
        apps = [FakeBroker().start(), FakeBroker().start()]
        started += apps
        broker = FakeBroker(broker_answer).start()
        carrier = FakeSmsc(answer=carrier_answer).start()
        started += [broker, carrier]
        node = Smshost(tmp / "smshost", brokers=generic_toml(broker.url, name=SMSC),
                       extra=ALLOW + "\n[compat.kannel]\nenabled = true\n").start()
        started.append(node)
        made = node.api.post("/api/tokens", json={"integration": USER, "scopes": ["send"]})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        real = Kannel(tmp / "kannel", KannelSetup(
            mo_url=f"{apps[0].url}/mo?from=%p",
            carrier_url=f"http://{LOOPBACK}:{carrier.port}/mt?{CARRIER_QUERY}",
            user=USER, password=token))
        started.append(real)
        real.start()
        yield Sides(App(real.sendsms_url, apps[0], token), App(node.base, apps[1], token),
                    real, carrier, node, broker)
    finally:
        for thing in reversed(started):
            thing.close() if isinstance(thing, Smshost) else thing.stop()


# -- answers ---------------------------------------------------------------------------


def test_each_sendsms_answer_is_kannels(sides: Sides) -> None:
    got = {c.name: (sides.kannel.sendsms(c), sides.smshost.sendsms(c)) for c in CASES}
    differ = {name: pair for name, pair in got.items()
              if pair[0] != pair[1] and name not in ANSWER_DIFFERENCES}
    assert not differ, "\n".join(f"{n}: kannel {k} / smshost {s}"
                                 for n, (k, s) in differ.items())
    for name, (kannel, smshost, _why) in ANSWER_DIFFERENCES.items():
        assert got[name] == (kannel, smshost), name


# -- callbacks -------------------------------------------------------------------------


# What legitimately differs in a dlr-url call, replaced in the raw query (as sent).
CALLBACK_NORMALISED = [
    (r"&id=[0-9a-f-]{36}&|&id=\d+&", "&id=<%I>&", "%I: Kannel's message id is a UUID, smshost's "
     "an integer (docs/migrating.md)"),
    (r"carrier-\d+|B-\d+", "<%F>", "%F and the id in %A: each carrier's own message id"),
    (r"&ts=\d{10}&", "&ts=<%T>&", "%T: Unix seconds of the report, taken a moment apart"),
    (r"&t=\d{4}-\d\d-\d\d\+\d\d:\d\d:\d\d&", "&t=<%t>&", "%t: the same, as Kannel "
     "writes it (not URL-encoded)"),
    (r"&D=%3Forig_msg%3Fdlr_mask%3D\d+%26&", "&D=&", "%D: Kannel 1.4.5 puts its own "
     "bookkeeping (?orig_msg?dlr_mask=N&) in the meta-data of a DLR; smshost the request's"),
]


def normalised(call: dict[str, str]) -> str:
    raw = call["_raw"]
    for pattern, replacement, _why in CALLBACK_NORMALISED:
        raw = re.sub(pattern, replacement, raw)
    return raw


def kannel_report(sides: Sides, text: str, mask: int, reply: str, to: str) -> None:
    """The carrier's delivery report for the MT with ``text``, into Kannel's HTTP SMSC."""
    (mt,) = [r for r in sides.carrier.requests if r.value("text") == text.encode()]
    carrier_id = mt.answer.split()[1]
    response = sides.real.carrier_request([("dlr-mask", str(mask)), ("dlr-mid", carrier_id),
                                           ("to", to), ("text", reply.format(carrier_id))])
    assert response.status_code == 200, response.text


def smshost_report(sides: Sides, text: str, status: str, error: str) -> None:
    """The broker's receipt for the message with ``text``, posted to smshost."""
    (message,) = [m for m in sides.node.outbound() if m["body"] == text]
    stored = sides.node.wait_status(message["id"], "sent")
    receipt = {"id": stored["broker_message_id"], "status": status,
               **({"error": error} if error else {})}
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        answer = client.post(f"{sides.node.base}/{SMSC}/receipt", json=receipt)
    assert answer.status_code < 300, answer.text


REPORTS = {  # scenario: (Kannel's carrier report: mask, text; smshost's receipt)
    "delivered": (1, "id:{} stat:DELIVRD err:000", "delivered", ""),
    "undelivered": (2, "id:{} stat:UNDELIV err:001", "undelivered", "001"),
    "as-written": (1, "id:{} stat:DELIVRD err:000", "delivered", ""),
}
NUMBERS = {"as-written": ("14155550125", "+" + OURS)}  # else (PHONE, OURS)


@pytest.mark.parametrize("scenario", ["delivered", "undelivered", "refused",
                                      "as-written"])
def test_dlr_url_callbacks_are_kannels(sides: Sides, scenario: str) -> None:
    """%p and %P are the numbers as the request wrote them, with or without ``+``."""
    text = f"dlr {scenario}" + (f" {REFUSED_TEXT}" if scenario == "refused" else "")
    to, sender = NUMBERS.get(scenario, (PHONE, OURS))
    case = Case(f"cb-{scenario}", good(to=to, text=text, dlr_mask="31", dlr_url="{dlr}",
                                       **{"from": sender}))
    for app in (sides.kannel, sides.smshost):
        assert app.sendsms(case) == ACCEPTED
    for app in (sides.kannel, sides.smshost):  # 8 (accepted by the carrier) or 16
        app.wait_callbacks(case.name, 1)
    if scenario in REPORTS:
        mask, reply, status, error = REPORTS[scenario]
        kannel_report(sides, text, mask, reply, to)
        smshost_report(sides, text, status, error)
    calls = [app.wait_callbacks(case.name, 1 if scenario == "refused" else 2)
             for app in (sides.kannel, sides.smshost)]
    kannel, smshost = ([normalised(c) for c in side] for side in calls)
    assert kannel == smshost
    expected = {"undelivered": ["8", "2"], "refused": ["16"]}.get(scenario, ["8", "1"])
    assert [c["type"] for c in calls[1]] == expected
    assert all(c["t"] == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(c["ts"])))
               for side in calls for c in side)
