"""Edge cases of the send path found by review: receipts that overtake a retry, opt-outs
written in other forms, non-standard JSON, consolidation next to split messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.outbound.conftest import (PHONE, FakeBroker, Reply, Seen, Smshost, generic_ok,
                                     generic_toml, outbox_toml, side_lock, wait_until)
from tests.outbound.test_receipts_events import post_receipt
from tests.outbound.test_send_api import INBOX_QUEUE, INBOX_ROUTE


def test_a_sent_receipt_during_the_send_is_not_undone_by_a_5xx(
        smshost: Callable[..., Smshost]) -> None:
    """The broker reports the message sent (by our reference) and then answers the send
    503: the message stays sent and is not sent again."""
    box: list[Smshost] = []

    def respond(seen: Seen, n: int) -> Reply:
        if n == 1:
            def before() -> None:
                post_receipt(box[0], ref=seen.ref or "", status="sent")
            return Reply(503, {"error": "busy"}, before=before)
        return generic_ok(seen, n)
    with FakeBroker(respond) as fake:
        node = smshost(brokers=generic_toml(fake.url), outbox=outbox_toml(first_delay=0.3))
        box.append(node)
        mid = node.queued(to=PHONE, text="hi")["id"]
        wait_until(lambda: len(node.message(mid)["events"]) >= 3, what="three events")
        time.sleep(0.6)  # past the retry that must not come
        message = node.message(mid)
        assert message["status"] == "sent"
        assert len(fake.seen()) == 1
        assert node.rows("select * from outbox") == []


def test_a_delivered_receipt_cancels_the_retry_waiting_in_the_outbox(
        smshost: Callable[..., Smshost]) -> None:
    def respond(seen: Seen, n: int) -> Reply:
        return Reply(503, {"error": "busy"}) if n == 1 else generic_ok(seen, n)
    with FakeBroker(respond) as fake:
        node = smshost(brokers=generic_toml(fake.url), outbox=outbox_toml(first_delay=0.5))
        mid = node.queued(to=PHONE, text="hi")["id"]
        wait_until(lambda: len(node.message(mid)["events"]) >= 2, what="the retry event")
        assert post_receipt(node, ref=str(mid), status="delivered").status_code == 200
        time.sleep(1.0)  # past the retry that must not come
        assert node.message(mid)["status"] == "delivered"
        assert len(fake.seen()) == 1
        assert node.rows("select * from outbox") == []


@pytest.mark.parametrize(("local", "extra", "to"), [
    ("4155550100", "", PHONE),                                     # account not in E.164
    ("+14155550100", "mt.internationalize = false\n", "(415) 555-0123"),  # caller's form
])
def test_an_opt_out_holds_whatever_form_the_numbers_are_written_in(
        smshost: Callable[..., Smshost], local: str, extra: str, to: str) -> None:
    brokers = f"""
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "http"
{extra}
[[brokers.accounts]]
id = "default"
local_address = "{local}"
"""
    node = smshost(brokers=brokers, routes=INBOX_ROUTE, sinks=INBOX_QUEUE)
    stop = node.api.post("/api/simulator/mo", json={"from": PHONE, "to": local, "text": "STOP"})
    assert stop.status_code == 201, stop.text
    wait_until(lambda: node.api.get("/api/optouts").json()["optouts"], what="the opt-out")
    answer = node.send(to=to, text="offer")
    assert answer.status_code == 409, answer.text


def test_nan_or_infinity_in_the_body_is_400(smshost: Callable[..., Smshost],
                                            fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    for bad in (b'NaN', b'Infinity', b'-Infinity'):
        answer = node.api.post("/api/messages", headers={"Content-Type": "application/json"},
                               content=b'{"to": "%s", "text": "x", "metadata": {"a": %s}}'
                               % (PHONE.encode(), bad))
        assert answer.status_code == 400 and answer.json()["error"] == "bad_json", bad
    assert node.outbound() == []


def test_consolidation_never_joins_a_part_of_a_split_message(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url,
                                        extra='mt.parsing = "split"\nmt.consolidate = true\n'),
                   outbox=outbox_toml(enabled=False))
    node.queued(to=PHONE, text="A" * 160 + " end.")
    second = node.queued(to=PHONE, text="Unrelated reminder")
    assert second["consolidated"] is False
    assert [m["body"] for m in node.outbound()][-1] == "Unrelated reminder"


def test_the_sender_outlives_a_claim_that_fails(smshost: Callable[..., Smshost],
                                               fake_broker: FakeBroker) -> None:
    """Another process holds the write lock past busy_timeout while messages are due:
    the claim fails, and the sender claims them once the lock is gone (it used to stop
    for good until a restart)."""
    node = smshost(brokers=generic_toml(fake_broker.url),
                   extra="\n[store]\nbusy_timeout_ms = 100\n")
    mid = node.queued(to=PHONE, text="before the lock")["id"]
    node.wait_status(mid, "sent")
    with side_lock(node.host.store):
        time.sleep(1.5)  # claims run at least once a second: one failed meanwhile
    later = node.queued(to=PHONE, text="after the lock")["id"]
    node.wait_status(later, "sent")
    assert len(fake_broker.seen()) == 2


def test_an_orphan_receipt_naming_another_broker_id_is_not_applied_by_reference(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """A receipt for our reference 2 but the broker id OLD-77 (e.g. from before a data
    reset) waits as an orphan; message 2, sent later as B-2, is not its message."""
    node = smshost(brokers=generic_toml(fake_broker.url))
    assert post_receipt(node, id="OLD-77", ref="2", status="undelivered").status_code == 200
    first = node.queued(to=PHONE, text="one")["id"]
    second = node.queued(to=PHONE, text="two")["id"]
    assert second == 2
    node.wait_status(first, "sent")
    node.wait_status(second, "sent")
    time.sleep(0.3)  # adoption runs right after the settle
    message = node.message(second)
    assert message["status"] == "sent"
    assert [e["source"] for e in message["events"]] == ["api", "sender"]


def test_a_settlement_the_database_refuses_is_written_again(
        smshost: Callable[..., Smshost]) -> None:
    """The broker accepts the message while another process holds the write lock past
    busy_timeout: recording the outcome fails, and is tried again until the lock is
    gone. (The message used to stay "sending" until a restart, whose recovery would
    have sent it a second time.)"""
    box: list[Smshost] = []
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with side_lock(box[0].host.store):
            locked.set()
            release.wait(10)

    def respond(seen: Seen, n: int) -> Reply:
        def before() -> None:  # take the lock, then answer: the settlement meets it
            threading.Thread(target=hold_lock, daemon=True).start()
            locked.wait(5)
        return Reply(200, {"id": f"B-{seen.ref}"}, before=before)

    try:
        with FakeBroker(respond) as fake:
            node = smshost(brokers=generic_toml(fake.url),
                           extra="\n[store]\nbusy_timeout_ms = 100\n")
            box.append(node)
            mid = node.queued(to=PHONE, text="accepted while locked")["id"]
            fake.wait_requests(1)
            time.sleep(1.0)  # the settlement fails meanwhile (100 ms busy_timeout)
            assert locked.is_set() and node.message(mid)["status"] == "sending"
            release.set()
            sent = node.wait_status(mid, "sent")
            assert sent["broker_message_id"] == f"B-{mid}"
            assert fake.refs() == {str(mid): 1}
            assert node.rows("select * from outbox") == []
    finally:
        release.set()


def test_a_send_that_fails_unexpectedly_is_retried_then_failed_not_left_in_flight(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """A line break in the account's password makes the HTTP client refuse the bearer
    header with a ValueError, which is no network error: the send is retried like one
    and fails after max_attempts, with the reason. (It used to stay "sending", its
    outbox row in flight, until a restart.)"""
    node = smshost(brokers=generic_toml(fake_broker.url, password="token\\nline two"),
                   outbox=outbox_toml(max_attempts=2))
    mid = node.queued(to=PHONE, text="never leaves")["id"]
    failed = node.wait_status(mid, "failed")
    error = failed["events"][-1]["detail"]["error"]
    assert error.startswith("internal error: ValueError: ") and "2 attempt(s)" in error
    assert fake_broker.seen() == []
    assert node.rows("select * from outbox") == []


REFUSE_SENT = {  # a trigger refusing the update to "sent", in each store's dialect
    "sqlite": ["create trigger refuse_sent before update of status on messages "
               "when new.status = 'sent' begin select raise(abort, 'refused by test'); end"],
    "postgresql": [
        "create or replace function refuse_sent() returns trigger language plpgsql as "
        "$$ begin raise exception 'refused by test'; end $$",
        "create trigger refuse_sent before update of status on messages for each row "
        "when (new.status = 'sent') execute function refuse_sent()"],
}


def test_a_settlement_a_statement_fails_is_written_again(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """An error from a statement of the settlement itself (here a trigger another
    process installed refuses the update, as a full disk would) is retried like a
    refused transaction. (It used to escape the send's task: the message stayed
    "sending", in flight, until a restart.)"""
    node = smshost(brokers=generic_toml(fake_broker.url))
    for statement in REFUSE_SENT[node.host.store.dialect]:
        node.write(statement)
    mid = node.queued(to=PHONE, text="accepted, then refused")["id"]
    fake_broker.wait_requests(1)
    time.sleep(0.5)  # settlement writes fail meanwhile
    assert node.message(mid)["status"] == "sending"
    node.write("drop trigger refuse_sent" + (
        " on messages" if node.host.store.dialect == "postgresql" else ""))
    sent = node.wait_status(mid, "sent")
    assert sent["broker_message_id"] == f"B-{mid}"
    assert fake_broker.refs() == {str(mid): 1}
    assert node.rows("select * from outbox") == []
