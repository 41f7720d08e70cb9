"""The send API (SPEC O1, O3, O9, R6): POST /api/messages and POST /api/segments on a
running smshost, the CLI's ``smshost send``, with a fake generic broker behind it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from tests.conftest import run_cli
from tests.outbound.conftest import (
    OTHER_NUMBER,
    OUR_NUMBER,
    PHONE,
    FakeBroker,
    Smshost,
    generic_toml,
    outbox_toml,
    statuses,
    wait_until,
)

TWO_ACCOUNTS = (("main", OUR_NUMBER), ("second", OTHER_NUMBER))


def test_send_answers_201_with_the_id_encoding_and_segments(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    answer = node.send(to=PHONE, text="Hello from smshost", metadata={"order": "1234"})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert isinstance(body["id"], int) and body["ids"] == [body["id"]]
    assert {k: body[k] for k in ("status", "encoding", "segments", "broker", "account", "from",
                                 "to", "replayed", "consolidated", "route")} == {
        "status": "queued", "encoding": "gsm7", "segments": 1, "broker": "gen",
        "account": "main", "from": OUR_NUMBER, "to": PHONE, "replayed": False,
        "consolidated": False, "route": None}
    sent = node.wait_status(body["id"], "sent")
    assert sent["attrs"]["order"] == "1234"
    assert sent["broker_message_id"] == f"B-{body['id']}"
    (seen,) = fake_broker.seen()
    assert seen.json["text"] == "Hello from smshost" and seen.json["to"] == PHONE


def test_unicode_text_is_ucs2_and_counted_in_segments(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    body = node.queued(to=PHONE, text="Привет! " * 10)  # 80 UTF-16 units: 2 x 67
    assert (body["encoding"], body["segments"]) == ("ucs2", 2)


def test_idempotency_key_replays_the_first_message_and_sends_nothing_new(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    first = node.send(key="order-1234", to=PHONE, text="Your order shipped")
    assert first.status_code == 201, first.text
    message_id = first.json()["id"]
    node.wait_status(message_id, "sent")
    again = [node.send(key="order-1234", to=PHONE, text="Your order shipped")
             for _ in range(3)]
    assert [a.status_code for a in again] == [200, 200, 200]
    for answer in again:
        body = answer.json()
        assert body["replayed"] is True
        assert body["id"] == message_id and body["ids"] == [message_id]
        assert {k: body[k] for k in ("encoding", "segments", "to", "from", "broker")} == {
            k: first.json()[k] for k in ("encoding", "segments", "to", "from", "broker")}
    # nothing new stored, queued or sent
    assert [m["id"] for m in node.outbound()] == [message_id]
    assert node.rows("select * from outbox") == []
    assert fake_broker.refs() == {str(message_id): 1}
    assert statuses(node.message(message_id)) == ["queued", "sent"]


def test_idempotency_key_replay_of_a_split_message_answers_alike(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """The replayed answer is the first answer (same ids, encoding, segments)."""
    node = smshost(brokers=generic_toml(fake_broker.url, extra='mt.parsing = "split"'),
                   outbox=outbox_toml(enabled=False))
    first = node.send(key="split-1", to=PHONE, text="x" * 400)
    again = node.send(key="split-1", to=PHONE, text="x" * 400)
    assert (first.status_code, again.status_code) == (201, 200)
    keys = ("id", "ids", "encoding", "segments", "broker", "account", "from", "to")
    assert {k: again.json()[k] for k in keys} == {k: first.json()[k] for k in keys}


def test_concurrent_retries_with_one_key_store_the_messages_once(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """A client retrying before its first request was answered: the requests race into
    the store together; one creates the (split) messages, the others get them back."""
    node = smshost(brokers=generic_toml(fake_broker.url, extra='mt.parsing = "split"'),
                   outbox=outbox_toml(enabled=False))
    barrier = threading.Barrier(8)

    def post(_: int) -> httpx2.Response:
        with httpx2.Client(base_url=node.base, trust_env=False, timeout=10.0,
                           headers={"Authorization": "Bearer test-token",
                                    "Idempotency-Key": "race-1"}) as client:
            barrier.wait(timeout=10)
            return client.post("/api/messages", json={"to": PHONE, "text": "z" * 400})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], \
        [a.text for a in answers]
    assert len({tuple(a.json()["ids"]) for a in answers}) == 1
    assert [a.json()["replayed"] for a in answers].count(False) == 1
    assert len(node.outbound()) == 3


def test_same_key_with_another_body_is_refused(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    assert node.send(key="k-1", to=PHONE, text="first").status_code == 201
    for changed in ({"to": PHONE, "text": "second"},
                    {"to": "+14155550124", "text": "first"},
                    {"to": PHONE, "text": "first", "metadata": {"x": "1"}}):
        answer = node.send(key="k-1", **changed)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "idempotency_mismatch"
    assert len(node.outbound()) == 1


@pytest.mark.parametrize("payload", [
    {"text": "no recipient"},
    {"to": PHONE},
    {"to": PHONE, "text": ""},
    {"to": "", "text": "x"},
    {"to": 14155550123, "text": "x"},
    {"to": PHONE, "text": "x", "colour": "blue"},
    {"to": PHONE, "text": "x", "metadata": ["not", "an", "object"]},
], ids=["no-to", "no-text", "empty-text", "empty-to", "number-to", "unknown-field",
        "metadata-list"])
def test_malformed_requests_are_400(smshost: Callable[..., Smshost],
                                    fake_broker: FakeBroker, payload: dict[str, object]) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    answer = node.send(**payload)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_parameter"
    bad_json = node.api.post("/api/messages", content=b"{nope",
                             headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert node.outbound() == []


@pytest.mark.parametrize("number", ["+1415555", "+1 415 555", "not a number", "+15550100"])
def test_invalid_numbers_are_422_and_nothing_is_queued(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, number: str) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    answer = node.send(to=number, text="hi")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_number"
    assert number in answer.json()["message"]
    assert node.outbound() == [] and fake_broker.seen() == []


def test_numbers_are_sent_in_e164_with_the_accounts_region(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """O3: a national number is read with the broker's region and sent as +CC..."""
    brokers = generic_toml(fake_broker.url, extra='region = "FR"')
    node = smshost(brokers=brokers)
    body = node.queued(to="06 12 34 56 78", text="Bonjour")
    assert body["to"] == "+33612345678"
    node.wait_status(body["id"], "sent")
    assert fake_broker.seen()[0].json["to"] == "+33612345678"


def test_without_internationalize_the_number_goes_as_given(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    brokers = generic_toml(fake_broker.url, extra='region = "FR"\nmt.internationalize = false')
    node = smshost(brokers=brokers)
    body = node.queued(to="0612345678", text="Bonjour")
    node.wait_status(body["id"], "sent")
    assert fake_broker.seen()[0].json["to"] == "0612345678"


def test_short_codes_pass_as_they_are(smshost: Callable[..., Smshost],
                                      fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    body = node.queued(to="72345", text="JOIN")
    node.wait_status(body["id"], "sent")
    assert fake_broker.seen()[0].json["to"] == "72345"


# -- opt-out (R6) ---------------------------------------------------------------------------

SIMULATOR = f"""
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "http"

[[brokers.accounts]]
id = "default"
local_address = "{OUR_NUMBER}"

[[brokers.accounts]]
id = "other"
local_address = "{OTHER_NUMBER}"
"""

# Routing on (opt-out keywords are handled by the router); other MO wait in a queue.
INBOX_ROUTE = """
[[inbound]]
name = "default"
destination = "queue"
target = "inbox"
default = true
"""
INBOX_QUEUE = """
[[queue.queues]]
name = "inbox"
kind = "workgroup"
members = ["alice"]
"""


def test_a_recipient_who_texted_stop_is_refused_409_until_start(
        smshost: Callable[..., Smshost]) -> None:
    """STOP arrives as an MO through the simulator broker, is handled by the router,
    and the send API then refuses that number from that account (and only that one)."""
    node = smshost(brokers=SIMULATOR, routes=INBOX_ROUTE, sinks=INBOX_QUEUE)
    mo = node.api.post("/api/simulator/mo", json={"from": PHONE, "to": OUR_NUMBER,
                                                   "text": "stop"})
    assert mo.status_code == 201, mo.text
    wait_until(lambda: node.api.get("/api/optouts").json()["optouts"],
               what="the opt-out to be recorded")
    refused = node.send(to=PHONE, text="A new offer!", account="default")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "opted_out"
    assert PHONE in refused.json()["message"] and OUR_NUMBER in refused.json()["message"]
    # the same person from another of our numbers, and someone else: allowed
    assert node.send(to=PHONE, text="From the other number", account="other").status_code == 201
    assert node.send(to="+14155550124", text="Someone else").status_code == 201
    # START opts back in
    node.api.post("/api/simulator/mo", json={"from": PHONE, "to": OUR_NUMBER, "text": "START"})
    wait_until(lambda: not node.api.get("/api/optouts").json()["optouts"],
               what="the opt-in to be recorded")
    assert node.send(to=PHONE, text="Welcome back", account="default").status_code == 201
    bodies = [m["body"] for m in node.outbound() if m["remote"] == PHONE
              and m["local"] == OUR_NUMBER]
    assert "A new offer!" not in bodies and "Welcome back" in bodies
    # the STOP confirmation itself went out (exempt), before the refusal
    assert bodies[0].startswith("You are unsubscribed")


def test_an_optout_row_refuses_by_local_and_remote(smshost: Callable[..., Smshost],
                                                   fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    node.write("insert into optouts (local, remote, opted_out_at, broker) values "
               "(?, ?, '2026-01-01T00:00:00.000000Z', 'gen')", [OUR_NUMBER, PHONE])
    answer = node.send(to="(415) 555-0123", text="hi")  # the same number, written nationally
    assert answer.status_code == 409, answer.text


# -- the sender: account, workgroup, user (O9) ------------------------------------------------

QUEUES = """
[[queue.queues]]
name = "support"
kind = "workgroup"
members = ["alice", "bob"]
account = "second"

[[queue.queues]]
name = "carol"
kind = "user"
account = "main"

[[queue.queues]]
name = "sales"
kind = "workgroup"
members = ["dan"]
"""


def sender_node(smshost: Callable[..., Smshost], fake: FakeBroker) -> Smshost:
    return smshost(brokers=generic_toml(fake.url, accounts=TWO_ACCOUNTS), sinks=QUEUES,
                   outbox=outbox_toml(enabled=False))


@pytest.mark.parametrize(("sender", "expected"), [
    ({}, ("main", OUR_NUMBER)),
    ({"account": "second"}, ("second", OTHER_NUMBER)),
    ({"account": "second", "broker": "gen"}, ("second", OTHER_NUMBER)),
    ({"workgroup": "support"}, ("second", OTHER_NUMBER)),
    ({"user": "carol"}, ("main", OUR_NUMBER)),
], ids=["default", "account", "account-at-broker", "workgroup", "user"])
def test_the_sender_picks_the_number(smshost: Callable[..., Smshost], fake_broker: FakeBroker,
                                     sender: dict[str, str], expected: tuple[str, str]) -> None:
    node = sender_node(smshost, fake_broker)
    body = node.queued(to=PHONE, text="hi", **sender)
    assert (body["account"], body["from"]) == expected
    (row,) = node.outbound()
    assert (row["account"], row["local"]) == expected


@pytest.mark.parametrize(("sender", "code"), [
    ({"account": "nobody"}, "unknown_account"),
    ({"broker": "nowhere"}, "unknown_broker"),
    ({"account": "main", "broker": "nowhere"}, "unknown_broker"),
    ({"workgroup": "nobody"}, "unknown_workgroup"),
    ({"user": "nobody"}, "unknown_user"),
    ({"workgroup": "carol"}, "unknown_workgroup"),  # carol is a user queue
    ({"workgroup": "sales"}, "no_account"),
], ids=["account", "broker", "account-at-unknown-broker", "workgroup", "user",
        "user-as-workgroup", "workgroup-without-account"])
def test_unknown_senders_are_422(smshost: Callable[..., Smshost], fake_broker: FakeBroker,
                                 sender: dict[str, str], code: str) -> None:
    node = sender_node(smshost, fake_broker)
    answer = node.send(to=PHONE, text="hi", **sender)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == code
    assert node.outbound() == []


def test_a_user_sends_as_the_member_of_their_user_queue(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """A user queue may be named apart from its user (members = ["dan"]): sending as the
    user dan picks that queue's account."""
    sinks = QUEUES + '\n[[queue.queues]]\nname = "dans-desk"\nkind = "user"\n' \
        'members = ["dan"]\naccount = "second"\n'
    node = smshost(brokers=generic_toml(fake_broker.url, accounts=TWO_ACCOUNTS), sinks=sinks,
                   outbox=outbox_toml(enabled=False))
    body = node.queued(to=PHONE, text="hi", user="dan")
    assert (body["account"], body["from"]) == ("second", OTHER_NUMBER)


# -- POST /api/segments --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello", {"encoding": "gsm7", "segments": 1, "units": 5, "unit": "septet",
               "per_segment": 160, "remaining": 155, "non_gsm7": []}),
    ("a" * 160, {"encoding": "gsm7", "segments": 1, "units": 160, "remaining": 0}),
    ("a" * 161, {"encoding": "gsm7", "segments": 2, "units": 161, "per_segment": 153,
                 "remaining": 145}),
    ("€" * 80, {"encoding": "gsm7", "segments": 1, "units": 160, "remaining": 0}),
    # the escape would straddle parts 1 and 2: it moves whole, a third part is needed
    ("a" * 152 + "€" + "a" * 152, {"encoding": "gsm7", "segments": 3, "units": 306}),
    ("Привет", {"encoding": "ucs2", "segments": 1, "units": 6, "unit": "utf16",
                "per_segment": 70, "remaining": 64,
                "non_gsm7": ["П", "р", "и", "в", "е", "т"]}),
    ("ж" * 71, {"encoding": "ucs2", "segments": 2, "per_segment": 67}),
    ("😀", {"encoding": "ucs2", "segments": 1, "units": 2, "non_gsm7": ["😀"]}),
    ("😀" * 35, {"encoding": "ucs2", "segments": 1, "units": 70, "remaining": 0}),
    ("a" * 66 + "😀", {"encoding": "ucs2", "segments": 1, "units": 68}),
    # the surrogate pair would straddle parts 1 and 2: it moves whole
    ("ж" * 66 + "😀" + "ж" * 66, {"encoding": "ucs2", "segments": 3, "units": 134}),
    ("ж" * 65 + "👍🏽" * 2, {"encoding": "ucs2", "segments": 2, "units": 73}),
], ids=["gsm", "gsm-160", "gsm-161", "escapes-160", "escape-at-the-boundary", "cyrillic",
        "ucs2-71", "emoji", "emoji-70", "emoji-68", "surrogate-at-the-boundary",
        "skin-tone-cluster"])
def test_segments_api(smshost: Callable[..., Smshost], fake_broker: FakeBroker, text: str,
                      expected: dict[str, object]) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    answer = node.api.post("/api/segments", json={"text": text})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: body[k] for k in expected} == expected


def test_segments_api_with_a_forced_encoding_and_errors(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    forced = node.api.post("/api/segments", json={"text": "Hello", "encoding": "ucs2"})
    assert forced.json()["encoding"] == "ucs2" and forced.json()["per_segment"] == 70
    not_gsm = node.api.post("/api/segments", json={"text": "Привет", "encoding": "gsm7"})
    assert not_gsm.status_code == 400 and "not GSM-7" in not_gsm.json()["message"]
    assert node.api.post("/api/segments", json={}).status_code == 400
    assert node.api.post("/api/segments", json={"text": "x", "encoding": "utf8"}
                         ).status_code == 400
    unauthenticated = node.api.post("/api/segments", json={"text": "x"},
                                    headers={"Authorization": "Bearer wrong"})
    assert unauthenticated.status_code == 401


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_send_queues_through_the_running_server(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, tmp_path: Path) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url, accounts=TWO_ACCOUNTS))
    args = ("send", "--config", str(node.cfg), "--to", PHONE, "--account", "second",
            "--idempotency-key", "cli-1", "Sent from the CLI")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "queued message" in first.stdout and PHONE in first.stdout
    again = run_cli(*args)
    assert again.returncode == 0 and "already queued with this key" in again.stdout
    refused = run_cli("send", "--config", str(node.cfg), "--to", "+1415555", "x")
    assert refused.returncode == 1 and "422" in refused.stderr
    (row,) = node.outbound()
    node.wait_status(row["id"], "sent")
    assert fake_broker.refs() == {str(row["id"]): 1}
    assert fake_broker.seen()[0].json["from"] == OTHER_NUMBER


def test_cli_send_needs_no_broker_secret_in_its_environment(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server reads the broker's password from its environment; `send` and
    `simulate` only talk to the server (with the API token), so a shell without that
    variable can still use them."""
    monkeypatch.setenv("SMALL_BROKER_TOKEN", "broker-token-1")
    brokers = generic_toml(fake_broker.url).replace(
        'password = "broker-token-1"', 'password = { env = "SMALL_BROKER_TOKEN" }')
    brokers += ('\n[[brokers]]\nname = "sim"\ndefinition = "simulator"\nencryption = "http"\n'
                'mo.path = "/sim/mo"\n\n[[brokers.accounts]]\nid = "phone"\n'
                'local_address = "+15550199"\n')
    node = smshost(brokers=brokers)
    monkeypatch.delenv("SMALL_BROKER_TOKEN")
    sent = run_cli("send", "--config", str(node.cfg), "--to", PHONE, "from a bare shell")
    assert sent.returncode == 0, sent.stderr
    assert "queued message" in sent.stdout
    texted = run_cli("simulate", "--config", str(node.cfg), "--from", PHONE, "hi")
    assert texted.returncode == 0, texted.stderr
    assert "stored message" in texted.stdout
    (row,) = node.outbound()
    node.wait_status(row["id"], "sent")
    assert fake_broker.seen()[0].text == "from a bare shell"


def test_replaying_a_key_whose_messages_were_purged_is_not_a_500(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    first = node.send(key="old-key", to=PHONE, text="long ago")
    node.wait_status(first.json()["id"], "sent")
    node.write("update messages set created_at = '2020-01-01T00:00:00.000000Z', "
               "updated_at = '2020-01-01T00:00:00.000000Z'")
    node.write("update message_events set at = '2020-01-01T00:00:00.000000Z'")
    url = getattr(node.host.store, "url", None) if node.host else None
    if url is not None:  # the CLI's purge on the node's PostgreSQL database too
        with (node.cfg / "smshost.toml").open("a") as config:
            config.write(f'\n[store]\nurl = "{url}"\n')
    purged = run_cli("purge", "--config", str(node.cfg), "--older-than", "30")
    assert purged.returncode == 0, purged.stderr
    assert node.outbound() == []
    again = node.send(key="old-key", to=PHONE, text="long ago")
    assert again.status_code == 201, again.text  # the forgotten key: a new message
    assert again.json()["replayed"] is False and again.json()["id"] != first.json()["id"]


def test_text_that_cannot_round_trip_is_sent_stored_and_read_as_u_fffd(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """A lone surrogate or NUL in `text` or anywhere in `metadata` (keys too) becomes
    U+FFFD (host/text.py): answered 201, sent and stored so, and read back by the API.
    Before issue 11 (point 3) the text answered 500 and the metadata broke every read
    of the page holding the message."""
    node = smshost(brokers=generic_toml(fake_broker.url))
    body = (b'{"to": "%s", "text": "hi \\ud83d\\u0000!", "metadata": {"k\\udc00": '
            b'["\\ud800", {"n": "x\\u0000"}], "fine": "\\ud83d\\ude00"}}' % PHONE.encode())
    answer = node.api.post("/api/messages", content=body,
                           headers={"content-type": "application/json"})
    assert answer.status_code == 201, answer.text
    sent = node.wait_status(answer.json()["id"], "sent")
    page = node.api.get("/api/messages")
    assert page.status_code == 200, page.text
    assert page.json()["messages"][0] == {k: v for k, v in sent.items() if k != "events"}
    assert sent["body"] == "hi \ufffd\ufffd!"
    assert sent["attrs"] == {"k\ufffd": ["\ufffd", {"n": "x\ufffd"}], "fine": "\U0001f600"}
    (seen,) = fake_broker.seen()
    assert seen.json["text"] == "hi \ufffd\ufffd!"
