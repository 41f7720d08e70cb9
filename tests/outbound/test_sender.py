"""The outbox worker (SPEC O6) against a fake generic broker on 127.0.0.1: retries on
5xx, timeouts and network errors with the recorded backoff, none on 4xx, Retry-After
honoured, max attempts and max age; the per-account token bucket (fake clock)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from host.brokers.pacing import TokenBucket
from host.core import Host
from tests.outbound.conftest import (
    OTHER_NUMBER,
    OUR_NUMBER,
    PHONE,
    FakeBroker,
    Reply,
    Seen,
    Smshost,
    free_port,
    generic_ok,
    generic_toml,
    outbox_toml,
    statuses,
    wait_until,
)


def in_turn(*replies: Reply | Callable[[Seen, int], Reply]) -> Callable[[Seen, int], Reply]:
    """The n-th request gets the n-th reply (a Reply, or a function of the request);
    the ones after the last get the generic broker's success."""
    def respond(seen: Seen, n: int) -> Reply:
        if n > len(replies):
            return generic_ok(seen, n)
        reply = replies[n - 1]
        return reply(seen, n) if callable(reply) else reply
    return respond


def sender_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in message["events"] if e["source"] == "sender"]


def node_for(smshost: Callable[..., Smshost], fake: FakeBroker, extra: str = "",
             **outbox: Any) -> Smshost:
    return smshost(brokers=generic_toml(fake.url, extra=extra), outbox=outbox_toml(**outbox))


def test_a_5xx_is_retried_and_the_message_sent_once(smshost: Callable[..., Smshost]) -> None:
    with FakeBroker(in_turn(Reply(500, {"error": "internal"}))) as fake:
        node = node_for(smshost, fake)
        body = node.queued(to=PHONE, text="Your code is 1234")
        sent = node.wait_status(body["id"], "sent")
    ref = str(body["id"])
    assert fake.refs() == {ref: 2}  # the same message, tried twice
    assert statuses(sent) == ["queued", "queued", "sent"]
    retry, accepted = sender_events(sent)
    assert retry["detail"] == {"attempt": 1, "http_status": 500, "error": "internal",
                               "retry_in": 0.01}
    assert accepted["detail"] == {"attempt": 2, "http_status": 200,
                                  "broker_message_id": f"B-{ref}"}
    assert sent["broker_message_id"] == f"B-{ref}"
    assert node.rows("select * from outbox") == []
    # the request the broker saw is the documented generic MT
    seen = fake.seen()[-1]
    assert (seen.method, seen.path) == ("POST", "/messages")
    assert seen.headers["authorization"] == "Bearer broker-token-1"
    assert seen.json == {"ref": ref, "from": OUR_NUMBER, "to": PHONE,
                         "text": "Your code is 1234", "encoding": "gsm7",
                         "callback_url": f"{node.base}/generic/receipt"}


def test_backoff_grows_by_the_factor_and_is_recorded(smshost: Callable[..., Smshost]) -> None:
    busy = Reply(503, {"error": "busy"})
    with FakeBroker(in_turn(busy, busy, busy)) as fake:
        node = node_for(smshost, fake, first_delay=0.01, factor=3.0)
        body = node.queued(to=PHONE, text="hi")
        sent = node.wait_status(body["id"], "sent")
    assert [e["detail"].get("retry_in") for e in sender_events(sent)] == [0.01, 0.03, 0.09,
                                                                         None]
    assert [e["detail"]["attempt"] for e in sender_events(sent)] == [1, 2, 3, 4]


def test_jitter_spreads_the_recorded_waits_within_its_bounds(
        smshost: Callable[..., Smshost]) -> None:
    busy = Reply(503, {"error": "busy"})
    with FakeBroker(in_turn(*[busy] * 6)) as fake:
        node = node_for(smshost, fake, first_delay=0.02, factor=1.0, jitter=0.5)
        body = node.queued(to=PHONE, text="hi")
        sent = node.wait_status(body["id"], "sent")
    waits = [e["detail"].get("retry_in") for e in sender_events(sent)][:-1]
    assert len(waits) == 6
    assert all(0.01 <= w <= 0.03 for w in waits), waits


@pytest.mark.parametrize(("reply", "error", "code"), [
    (Reply(400, {"error": "invalid destination", "code": "21211"}), "invalid destination",
     "21211"),
    (Reply(401, "who are you?"), "HTTP 401: who are you?", None),
    (Reply(404, b""), "HTTP 404: ", None),
    (Reply(200, {"error": "no credit", "code": "E9"}), "no credit", "E9"),  # 2xx, no id
], ids=["400", "401", "404", "2xx-without-id"])
def test_a_refusal_fails_at_once_without_retry(smshost: Callable[..., Smshost], reply: Reply,
                                               error: str, code: str | None) -> None:
    with FakeBroker(in_turn(reply)) as fake:
        node = node_for(smshost, fake)
        body = node.queued(to=PHONE, text="hi")
        failed = node.wait_status(body["id"], "failed")
    assert len(fake.seen()) == 1
    assert statuses(failed) == ["queued", "failed"]
    detail = failed["events"][-1]["detail"]
    assert (detail["attempt"], detail["http_status"], detail["error"]) == (1, reply.status,
                                                                         error)
    assert detail.get("error_code") == code
    assert failed["broker_message_id"] is None
    assert node.rows("select * from outbox") == []


def test_429_retry_after_is_honoured_in_the_recorded_wait(
        smshost: Callable[..., Smshost]) -> None:
    with FakeBroker(in_turn(Reply(429, {"error": "slow down"}, {"Retry-After": "1"}))) as fake:
        node = node_for(smshost, fake, first_delay=0.01)
        body = node.queued(to=PHONE, text="hi")
        sent = node.wait_status(body["id"], "sent")
    retry = sender_events(sent)[0]["detail"]
    assert (retry["http_status"], retry["retry_in"]) == (429, 1.0)  # not first_delay
    assert fake.refs() == {str(body["id"]): 2}


def test_a_retry_after_longer_than_max_delay_waits_max_delay(
        smshost: Callable[..., Smshost]) -> None:
    with FakeBroker(in_turn(Reply(503, {}, {"Retry-After": "3600"}))) as fake:
        node = node_for(smshost, fake, max_delay=0.05)
        body = node.queued(to=PHONE, text="hi")
        sent = node.wait_status(body["id"], "sent")
    assert sender_events(sent)[0]["detail"]["retry_in"] == 0.05


def test_a_broker_that_never_answers_times_out_and_is_retried(
        smshost: Callable[..., Smshost]) -> None:
    never = threading.Event()  # never set: the answer is held until the test ends
    with FakeBroker(in_turn(Reply(hold=never))) as fake:
        node = node_for(smshost, fake, extra="mt.timeout = 0.3")
        body = node.queued(to=PHONE, text="hi")
        sent = node.wait_status(body["id"], "sent")
    retry = sender_events(sent)[0]["detail"]
    assert retry["error"] == "timed out" and retry["retry_in"] == 0.01
    assert "http_status" not in retry
    assert fake.refs() == {str(body["id"]): 2}
    assert statuses(sent) == ["queued", "queued", "sent"]


def test_max_attempts_fails_the_message_with_the_reason(smshost: Callable[..., Smshost]) -> None:
    always = Reply(503, {"error": "maintenance"})
    with FakeBroker(lambda seen, n: always) as fake:
        node = node_for(smshost, fake, max_attempts=3)
        body = node.queued(to=PHONE, text="hi")
        failed = node.wait_status(body["id"], "failed")
    assert fake.refs() == {str(body["id"]): 3}
    assert statuses(failed) == ["queued", "queued", "queued", "failed"]
    last = failed["events"][-1]["detail"]
    assert last["attempt"] == 3 and last["http_status"] == 503
    assert last["error"] == "maintenance; gave up after 3 attempt(s)"
    assert "retry_in" not in last
    assert node.rows("select * from outbox") == []


def test_a_network_error_is_retried_until_max_attempts(smshost: Callable[..., Smshost]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    node = smshost(brokers=generic_toml(closed), outbox=outbox_toml(max_attempts=2))
    body = node.queued(to=PHONE, text="hi")
    failed = node.wait_status(body["id"], "failed")
    first, last = sender_events(failed)
    error = first["detail"]["error"]  # aiohttp's words, or libcurl's
    assert first["detail"]["retry_in"] == 0.01
    assert "ClientConnectorError" in error or error.startswith("cannot connect: ")
    assert last["detail"]["error"].endswith("gave up after 2 attempt(s)")


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_max_age_fails_a_message_that_waited_too_long(smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    release = threading.Event()

    def prepare(host: Host) -> None:
        host.sender.clock = clock

    with FakeBroker(in_turn(Reply(503, {"error": "busy"}, hold=release))) as fake:
        node = smshost(brokers=generic_toml(fake.url), prepare=prepare,
                       outbox=outbox_toml(max_age=60.0))
        body = node.queued(to=PHONE, text="hi")
        fake.wait_requests(1)
        clock.now += 61.0  # the broker answers only after the message's max age
        release.set()
        failed = node.wait_status(body["id"], "failed")
    assert failed["events"][-1]["detail"]["error"] == "busy; gave up after 1 attempt(s)"
    assert len(fake.seen()) == 1


# -- the rate limit ----------------------------------------------------------------------------


def test_token_bucket_with_a_fake_clock() -> None:
    clock = FakeClock(100.0)
    bucket = TokenBucket(rate=2.0, clock=clock)
    assert (bucket.whole(), bucket.wait()) == (1, 0.0)
    bucket.take()
    assert (bucket.whole(), bucket.wait()) == (0, 0.5)
    clock.now += 0.25
    assert (bucket.whole(), bucket.wait()) == (0, 0.25)
    clock.now += 0.25
    assert (bucket.whole(), bucket.wait()) == (1, 0.0)
    clock.now += 10.0  # idle: the bucket holds at most `burst` tokens
    assert bucket.whole() == 1


def test_token_bucket_burst() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=1.0, clock=clock, burst=3.0, tokens=3.0)
    assert bucket.whole() == 3
    for _ in range(3):
        bucket.take()
    assert (bucket.whole(), bucket.wait()) == (0, 1.0)
    clock.now += 4.0
    assert bucket.whole() == 3


RATE_ACCOUNTS = (("main", OUR_NUMBER), ("second", OTHER_NUMBER))


def test_a_rate_limited_account_holds_back_its_own_messages_only(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """mt.rate is per account, and an account waiting for a token takes no send slot:
    with the clock standing still and one slot (max_in_flight = 1), the first account's
    second message stays queued (not claimed) while the other account's goes out. (It
    used to be claimed and wait for its token in the only slot, holding back every
    other account.)"""
    clock = FakeClock()

    def prepare(host: Host) -> None:
        host.sender.clock = clock

    node = smshost(brokers=generic_toml(fake_broker.url, extra="mt.rate = 0.001",
                                        accounts=RATE_ACCOUNTS),
                   outbox=outbox_toml(max_in_flight=1), prepare=prepare,
                   shutdown_timeout=0.5)
    first = node.queued(to=PHONE, text="first", account="main")
    node.wait_status(first["id"], "sent")
    held = node.queued(to=PHONE, text="held back", account="main")
    other = node.queued(to=PHONE, text="other account", account="second")
    node.wait_status(other["id"], "sent")
    assert node.message(held["id"])["status"] == "queued"
    assert node.rows("select in_flight, attempts from outbox where message_id = ?",
                     [held["id"]]) == [{"in_flight": 0, "attempts": 0}]
    assert fake_broker.refs() == {str(first["id"]): 1, str(other["id"]): 1}
    clock.now += 1000.0  # the account's next token
    node.wait_status(held["id"], "sent")
    assert fake_broker.refs()[str(held["id"])] == 1


def test_a_high_rate_sends_a_tenth_of_a_second_at_once(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """mt.rate = 30: after a second idle the account has 3 tokens (a tenth of a
    second's worth), so three waiting messages go out together; the fourth waits. A
    high rate is not bounded by how often the worker looks (one message per look, as
    with a single token, capped ~1k/s whatever the rate)."""
    clock = FakeClock()

    def prepare(host: Host) -> None:
        host.sender.clock = clock

    node = smshost(brokers=generic_toml(fake_broker.url, extra="mt.rate = 30",
                                        accounts=RATE_ACCOUNTS),
                   prepare=prepare, shutdown_timeout=0.5)
    first = node.queued(to=PHONE, text="first", account="main")["id"]
    node.wait_status(first, "sent")
    held = [node.queued(to=PHONE, text=f"held {n}", account="main")["id"] for n in range(4)]
    other = node.queued(to=PHONE, text="other account", account="second")["id"]
    node.wait_status(other, "sent")  # the worker has looked at the held ones since
    assert [node.message(i)["status"] for i in held] == ["queued"] * 4
    clock.now += 1.0
    for i in held[:3]:
        node.wait_status(i, "sent")
    assert node.message(held[3])["status"] == "queued"
    clock.now += 1.0 / 30
    node.wait_status(held[3], "sent")


def test_messages_waiting_for_a_token_at_a_stop_are_plain_queued_messages(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """A graceful stop while messages wait for their token: they were never claimed, so
    after the restart they are ordinary queued messages (not flagged
    possibly_duplicated), and one that waits through two stops does not fail."""
    clock = FakeClock()  # stands still: no token comes back

    def prepare(host: Host) -> None:
        host.sender.clock = clock

    node = smshost(brokers=generic_toml(fake_broker.url, extra="mt.rate = 0.001",
                                        accounts=RATE_ACCOUNTS),
                   prepare=prepare, shutdown_timeout=0.5)
    first = node.queued(to=PHONE, text="first", account="main")
    node.wait_status(first["id"], "sent")
    held = [node.queued(to=PHONE, text=f"held back {n}", account="main")["id"]
            for n in (1, 2)]
    other = node.queued(to=PHONE, text="other account", account="second")["id"]
    node.wait_status(other, "sent")  # the worker has looked at the held ones since
    assert [node.message(i)["status"] for i in held] == ["queued", "queued"]
    node.restart()  # a new bucket: one token, for the first of the two
    node.wait_status(held[0], "sent")
    assert node.message(held[1])["status"] == "queued"
    node.restart()  # the second waited through two stops; now it has its token
    sent = [node.wait_status(i, "sent") for i in held]
    assert [m["attrs"].get("possibly_duplicated") for m in sent] == [None, None]
    assert fake_broker.refs() == {str(first["id"]): 1, str(other): 1, str(held[0]): 1,
                                  str(held[1]): 1}


def test_queued_messages_are_stored_with_their_outbox_row_and_sent_after_a_restart(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """Persisted before any network call: with the worker off the message waits in the
    outbox; a restart with it on sends it (O6 resumes after restart)."""
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    body = node.queued(to=PHONE, text="waiting")
    assert node.rows("select message_id, in_flight, attempts from outbox") == [
        {"message_id": body["id"], "in_flight": 0, "attempts": 0}]
    assert fake_broker.seen() == []
    node.restart(outbox=outbox_toml())
    sent = node.wait_status(body["id"], "sent")
    assert statuses(sent) == ["queued", "sent"]
    assert fake_broker.refs() == {str(body["id"]): 1}


def test_a_message_of_an_account_gone_from_the_configuration_fails(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """The outbox is read account by account; a message whose account was removed
    while it waited is found all the same (the worker looks for such strays at start
    and now and then) and fails with the reason, instead of waiting for ever."""
    node = smshost(brokers=generic_toml(fake_broker.url, accounts=RATE_ACCOUNTS),
                   outbox=outbox_toml(enabled=False))
    gone = [node.queued(to=PHONE, text=f"from the second account {n}",
                        account="second")["id"] for n in range(4)]
    kept = node.queued(to=PHONE, text="from the main account", account="main")["id"]
    # The broker keeps a rate: the gone account's messages are not paced by it (they
    # are not sent), and all of them fail at once, not one per look every 5 minutes.
    node.restart(brokers=generic_toml(fake_broker.url, extra="mt.rate = 1"),
                 outbox=outbox_toml(max_in_flight=1))
    node.wait_status(kept, "sent")
    for message_id in gone:
        failed = node.wait_status(message_id, "failed", timeout=5)
        assert failed["events"][-1]["detail"]["error"] == \
            "account 'second' is gone from the configuration"
    assert fake_broker.refs() == {str(kept): 1}


def test_a_broker_with_mt_off_is_not_a_sender(smshost: Callable[..., Smshost],
                                              fake_broker: FakeBroker) -> None:
    brokers = generic_toml(fake_broker.url, extra="mt.enabled = false")
    node = smshost(brokers=brokers)
    answer = node.send(to=PHONE, text="hi")
    assert answer.status_code == 422 and answer.json()["error"] == "no_broker"
    named = node.send(to=PHONE, text="hi", broker="gen")
    assert named.status_code == 422 and named.json()["error"] == "unknown_broker"


def outbox_gauge(node: Smshost) -> dict[tuple[str, str], float]:
    """(account, state) → value of smshost_outbox_messages in GET /metrics."""
    text = node.api.get("/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("smshost_outbox_messages{"):
            labels, value = line[len("smshost_outbox_messages{"):].split("} ")
            fields = dict(part.split("=") for part in labels.split(","))
            assert fields["broker"] == '"gen"'
            out[(fields["account"].strip('"'), fields["state"].strip('"'))] = float(value)
    return out


def test_metrics_show_the_outbox_depth_of_each_account(
        smshost: Callable[..., Smshost]) -> None:
    release = threading.Event()
    with FakeBroker(lambda seen, n: Reply(200, {"id": f"B-{seen.ref}"}, hold=release)) as fake:
        node = smshost(brokers=generic_toml(fake.url, accounts=RATE_ACCOUNTS),
                       outbox=outbox_toml(max_in_flight=1))
        assert node.host is not None
        now = [1000.0]
        node.host.metrics.clock = lambda: now[0]  # stored gauges are read at most 1/s
        ids = [node.queued(to=PHONE, text=f"m{n}", account=account)["id"]
               for n, account in enumerate(("main", "main", "second"))]
        wait_until(lambda: len(fake.seen()) == 1, what="one send under way")
        depth = outbox_gauge(node)
        assert sum(v for k, v in depth.items() if k[1] == "in_flight") == 1
        assert sum(v for k, v in depth.items() if k[1] == "queued") == 2
        assert {a: sum(v for k, v in depth.items() if k[0] == a)
                for a in ("main", "second")} == {"main": 2, "second": 1}
        release.set()
        for message_id in ids:
            node.wait_status(message_id, "sent")
        assert outbox_gauge(node) == depth  # read less than a second ago: the same
        now[0] += 1.0
        assert outbox_gauge(node) == {}  # an empty outbox has no samples


SECRET = "kpass SECRET@1/+"  # a password every form of which differs


def secret_forms_in(text: str, wire: str = "kpass+SECRET@1/%2B") -> list[str]:
    """The forms of SECRET found in ``text``: as it is, as aiohttp sent it in the query
    (``wire``), fully percent-encoded either way, base64."""
    import base64
    from urllib.parse import quote, quote_plus
    forms = {SECRET, wire, quote(SECRET, safe=""), quote_plus(SECRET),
             quote_plus(SECRET).lower(), base64.b64encode(SECRET.encode()).decode()}
    return sorted(form for form in forms if form in text)


def kannel_toml(gateway: str) -> str:
    return f"""
[[brokers]]
name = "kn"
definition = "kannel"
encryption = "http"
mt.gateway = "{gateway}"

[[brokers.accounts]]
id = "main"
login = "kuser"
password = "{SECRET}"
local_address = "{OUR_NUMBER}"
"""


@pytest.mark.parametrize("echo", ["query", "unquoted", "base64"])
def test_a_gateway_error_echoing_the_password_is_stored_and_logged_masked(
        smshost: Callable[..., Smshost], caplog: pytest.LogCaptureFixture, echo: str) -> None:
    """Kannel's sendsms carries the password in its query; a gateway whose 400 echoes
    the request had it stored in the event detail (GET /api/messages/{id}, /api/events)
    and logged ("message N failed: ...password=kpass..."), before issue 11's review:
    only transport errors were redacted. Every form is masked: percent-encoded as sent,
    decoded, base64."""
    import base64
    from urllib.parse import unquote_plus

    def answer(seen: Seen, n: int) -> Reply:
        text = {"query": seen.target, "unquoted": unquote_plus(seen.target),
                "base64": base64.b64encode(SECRET.encode()).decode()}[echo]
        return Reply(400, f"bad request: {text}")

    with FakeBroker(answer) as fake:
        node = smshost(brokers=kannel_toml(fake.url), outbox=outbox_toml())
        body = node.queued(to=PHONE, text="hi")
        failed = node.wait_status(body["id"], "failed")
        listed = node.api.get("/api/messages").text
    assert "password=" in fake.seen()[0].target and secret_forms_in(fake.seen()[0].target)
    detail = failed["events"][-1]["detail"]
    assert detail["error"].startswith("bad request: ") and "********" in detail["error"]
    assert secret_forms_in(str(failed)) == [] and secret_forms_in(listed) == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"message {body['id']} failed" in logged and secret_forms_in(logged) == []


TOKEN = 'p@ss w/rd&x=1+\u00e9"<>Z'  # the second review's password: / & + é " < > all escape


def token_forms() -> dict[str, str]:
    """TOKEN as gateways echo it (/tmp/review2/echo_broker.py and more)."""
    import base64
    import html
    import json
    from urllib.parse import quote
    as_json = json.dumps(TOKEN)
    return {
        "json": as_json,  # "p@ss w/rd&x=1+\u00e9\"<>Z"
        "json-utf8": json.dumps(TOKEN, ensure_ascii=False),
        "json-php": as_json.replace("/", "\\/").replace("\\u00e9", "\\u00E9"),
        "html": html.escape(TOKEN),  # &amp; &quot; &lt; &gt;
        "html-named": html.escape(TOKEN).replace("\u00e9", "&eacute;"),
        "xml-decimal": "".join(f"&#{ord(c)};" for c in TOKEN),
        "xml-hex": "".join(f"&#x{ord(c):X};" for c in TOKEN),
        "percent-lower": quote(TOKEN, safe="").lower(),
        "upper": TOKEN.upper(),
        "base64url": base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("="),
        "hex": TOKEN.encode().hex(),
    }


@pytest.mark.parametrize("form", sorted(token_forms()))
def test_a_secret_echoed_escaped_is_stored_and_logged_masked(
        smshost: Callable[..., Smshost], caplog: pytest.LogCaptureFixture, form: str) -> None:
    """Second review of issue 11: a gateway answering 400 with the bearer token as
    json.dumps(token) had it stored verbatim in the event detail (GET
    /api/messages/{id}) and the WARNING log; its HTML-escaped form too. Masking knew the
    token as it is, percent-encoded and base64 only."""
    echoed = token_forms()[form]

    def answer(seen: Seen, n: int) -> Reply:
        return Reply(400, f"bad token: {echoed} (sent {seen.headers.get('authorization')})")

    with FakeBroker(answer) as fake:
        node = smshost(brokers=generic_toml(fake.url, password=TOKEN.replace('"', '\\"')),
                       outbox=outbox_toml())
        body = node.queued(to=PHONE, text="hi")
        failed = node.wait_status(body["id"], "failed")
    # the fake reads headers as Latin-1, as HTTP servers do: so it echoes "Ã©" for "é"
    assert fake.seen()[0].headers["authorization"] == \
        f"Bearer {TOKEN.encode().decode('latin-1')}"
    masked = '"********"' if echoed.startswith('"') else "********"  # JSON keeps its quotes
    assert failed["events"][-1]["detail"]["error"] == \
        f"HTTP 400: bad token: {masked} (sent Bearer ********)"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"message {body['id']} failed" in logged
    assert echoed not in logged and TOKEN not in logged


def test_a_broker_error_echoing_the_bearer_token_is_masked(
        smshost: Callable[..., Smshost]) -> None:
    def answer(seen: Seen, n: int) -> Reply:
        return Reply(401, {"error": f"token {seen.headers.get('authorization')} refused"})

    with FakeBroker(answer) as fake:
        node = node_for(smshost, fake)
        body = node.queued(to=PHONE, text="hi")
        failed = node.wait_status(body["id"], "failed")
    assert fake.seen()[0].headers["authorization"] == "Bearer broker-token-1"
    assert failed["events"][-1]["detail"]["error"] == "token Bearer ******** refused"


def test_each_attempt_keeps_its_request_and_answer_masked(
        smshost: Callable[..., Smshost]) -> None:
    """Issue 15 point 4: what the message page shows of a send (host.brokers.exchanges),
    kept in the settlement's transaction, the broker's token masked."""
    import json
    with FakeBroker(in_turn(Reply(500, {"error": "internal"}))) as fake:
        node = node_for(smshost, fake)
        body = node.queued(to=PHONE, text="Your code is 1234")
        node.wait_status(body["id"], "sent")
        url = f"{fake.url}/messages"
    kept = node.rows("select * from message_exchanges order by id")
    assert [(k["message_id"], k["kind"]) for k in kept] == [(body["id"], "mt")] * 2
    first, second = ({"request": json.loads(k["request"]),
                      "response": json.loads(k["response"])} for k in kept)
    assert first["request"]["method"] == "POST"
    assert first["request"]["url"] == url
    assert first["request"]["headers"]["authorization"] == "********"
    assert "Your code is 1234" in first["request"]["body"]
    assert first["response"]["status"] == 500 and "internal" in first["response"]["body"]
    assert second["response"]["status"] == 200
    assert "broker-token-1" not in json.dumps([first, second])
