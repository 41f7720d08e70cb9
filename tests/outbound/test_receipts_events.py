"""Receipts and status events (SPEC O8) on a running smshost: receipts through the
generic broker's receipt webhook move a sent message on, GET /api/messages/{id} shows
the whole history, GET /api/events streams every change (SSE), and a receipt that
arrives before the send recorded the broker's answer is applied after it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2

from tests.outbound.conftest import (
    PHONE,
    TOKEN,
    WAIT,
    FakeBroker,
    Reply,
    Seen,
    Smshost,
    generic_ok,
    generic_toml,
    statuses,
)


def post_receipt(node: Smshost, **fields: str) -> httpx2.Response:
    """What the broker does: POST the receipt to the instance's receipt path (no token)."""
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        return client.post(f"{node.base}/generic/receipt", json=fields)


def sent_message(smshost: Callable[..., Smshost], fake: FakeBroker) -> tuple[Smshost, int]:
    node = smshost(brokers=generic_toml(fake.url))
    body = node.queued(to=PHONE, text="Your parcel arrives today")
    node.wait_status(body["id"], "sent")
    return node, body["id"]


def test_receipts_move_the_status_forward_and_the_history_keeps_them_all(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, message_id = sent_message(smshost, fake_broker)
    broker_id = f"B-{message_id}"
    answers = [post_receipt(node, id=broker_id, status="delivered"),
               post_receipt(node, id=broker_id, status="sent"),  # late: history only
               post_receipt(node, id=broker_id, status="failed", error="30003")]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"ok": True})] * 3
    message = node.message(message_id)
    assert message["status"] == "delivered"  # a final state never changes
    assert [(e["status"], e["source"]) for e in message["events"]] == [
        ("queued", "api"), ("sent", "sender"), ("delivered", "receipt"),
        ("sent", "receipt"), ("failed", "receipt")]
    assert message["events"][1]["detail"]["broker_message_id"] == broker_id
    assert message["events"][2]["detail"] == {"broker_status": "delivered"}
    assert message["events"][4]["detail"] == {"broker_status": "failed", "error": "30003"}


def test_a_receipt_naming_our_reference_is_applied(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, message_id = sent_message(smshost, fake_broker)
    answer = post_receipt(node, ref=str(message_id), status="undelivered",
                          error_text="unknown subscriber")
    assert answer.status_code == 200
    message = node.message(message_id)
    assert message["status"] == "undelivered"
    assert message["events"][-1]["detail"] == {"broker_status": "undelivered",
                                               "error_text": "unknown subscriber"}


def test_a_receipt_for_no_known_message_is_kept_aside(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, message_id = sent_message(smshost, fake_broker)
    assert post_receipt(node, id="B-unknown", status="delivered").status_code == 200
    orphans = node.rows("select broker, broker_message_id, status from orphan_receipts")
    assert orphans == [{"broker": "gen", "broker_message_id": "B-unknown",
                        "status": "delivered"}]
    assert node.message(message_id)["status"] == "sent"


# -- receipts before the send's answer ------------------------------------------------------


def receipt_first(node_box: list[Smshost], **fields: Callable[[Seen], str]
                  ) -> Callable[[Seen, int], Reply]:
    """The broker posts a receipt to smshost *before* answering the send."""
    def respond(seen: Seen, n: int) -> Reply:
        reply = generic_ok(seen, n)
        values = {k: f(seen) for k, f in fields.items()}

        def before() -> None:
            answer = post_receipt(node_box[0], **values)
            assert answer.status_code == 200, answer.text
        reply.before = before
        return reply
    return respond


def test_a_receipt_by_broker_id_before_the_answer_is_applied_after_it(
        smshost: Callable[..., Smshost]) -> None:
    box: list[Smshost] = []
    respond = receipt_first(box, id=lambda s: f"B-{s.ref}", status=lambda s: "delivered")
    with FakeBroker(respond) as fake:
        node = smshost(brokers=generic_toml(fake.url))
        box.append(node)  # before the first send: the message is queued below
        body = node.queued(to=PHONE, text="hi")
        message = node.wait_status(body["id"], "delivered")
        assert not fake.errors, fake.errors
    assert [(e["status"], e["source"]) for e in message["events"]] == [
        ("queued", "api"), ("sent", "sender"), ("delivered", "receipt")]
    assert node.rows("select * from orphan_receipts") == []  # adopted


def test_a_receipt_by_our_reference_before_the_answer_is_not_undone_by_it(
        smshost: Callable[..., Smshost]) -> None:
    """The receipt finds the message by its reference while the send is under way and
    moves it to delivered; the broker's answer then records the broker id but must not
    move the status back to sent."""
    box: list[Smshost] = []
    respond = receipt_first(box, ref=lambda s: s.ref or "", status=lambda s: "delivered")
    with FakeBroker(respond) as fake:
        node = smshost(brokers=generic_toml(fake.url))
        box.append(node)
        body = node.queued(to=PHONE, text="hi")
        node.wait_events(body["id"], 3)
        assert not fake.errors, fake.errors
        message = node.message(body["id"])
    assert message["broker_message_id"] == f"B-{body['id']}"
    assert message["status"] == "delivered"
    assert [(e["status"], e["source"]) for e in message["events"]] == [
        ("queued", "api"), ("delivered", "receipt"), ("sent", "sender")]  # history only
    assert node.rows("select * from outbox") == []


# -- the event stream -------------------------------------------------------------------------


@contextmanager
def event_stream(node: Smshost) -> Iterator[Callable[[Callable[[list[dict[str, Any]]], bool]],
                                                      list[dict[str, Any]]]]:
    """Opens GET /api/events; yields ``read(until)`` which reads events (bounded in time
    and count) until ``until(events so far)`` holds."""
    client = httpx2.Client(trust_env=False, timeout=httpx2.Timeout(10.0, read=5.0),
                           headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with client.stream("GET", f"{node.base}/api/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(lines) == ": connected"  # subscribed from here on
            events: list[dict[str, Any]] = []

            def read(until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
                deadline = time.monotonic() + WAIT
                kind = None
                for _ in range(10_000):
                    if until(events) or time.monotonic() > deadline:
                        break
                    line = next(lines)
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "status":
                        events.append(json.loads(line[6:]))
                assert until(events), f"the stream gave {events}"
                return events
            yield read
    finally:
        client.close()


def test_status_changes_stream_as_server_sent_events(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    with event_stream(node) as read:
        body = node.queued(to=PHONE, text="Track me")
        message_id = body["id"]

        def mine(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in events if e["message_id"] == message_id]
        read(lambda events: any(e["new"] == "sent" for e in mine(events)))
        post_receipt(node, id=f"B-{message_id}", status="delivered")
        events = mine(read(lambda events: any(e["new"] == "delivered" for e in mine(events))))
    assert [(e["old"], e["new"], e["source"]) for e in events] == [
        (None, "queued", "api"), ("sending", "sent", "sender"),
        ("sent", "delivered", "receipt")]
    assert events[1]["detail"]["broker_message_id"] == f"B-{message_id}"
    assert all((e["direction"], e["broker"], e["remote"]) == ("out", "gen", PHONE)
               for e in events)
    assert statuses(node.message(message_id)) == ["queued", "sent", "delivered"]


def test_the_event_stream_needs_the_api_token(smshost: Callable[..., Smshost],
                                              fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    with httpx2.Client(trust_env=False, timeout=5.0) as client:
        assert client.get(f"{node.base}/api/events").status_code == 401
