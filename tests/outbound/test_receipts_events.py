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
    outbox_toml,
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
def event_stream(node: Smshost, last_event_id: str | None = None,
                 dropped: list[int] | None = None
                 ) -> Iterator[Callable[[Callable[[list[dict[str, Any]]], bool]],
                                        list[dict[str, Any]]]]:
    """Opens GET /api/events (sending ``last_event_id`` as Last-Event-ID); yields
    ``read(until)`` which reads status events (bounded in time and count) until
    ``until(events so far)`` holds, each with its SSE ``id`` as ``sse_id``; the data of
    ``dropped`` events go to ``dropped``."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    client = httpx2.Client(trust_env=False, timeout=httpx2.Timeout(10.0, read=5.0),
                           headers=headers)
    try:
        with client.stream("GET", f"{node.base}/api/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(lines) == ": connected"  # subscribed from here on
            events: list[dict[str, Any]] = []

            def read(until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
                deadline = time.monotonic() + WAIT
                kind, sse_id = None, None
                for _ in range(10_000):
                    if until(events) or time.monotonic() > deadline:
                        break
                    line = next(lines)
                    if line.startswith("id: "):
                        sse_id = line[4:]
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "status":
                        events.append({**json.loads(line[6:]), "sse_id": sse_id})
                    elif line.startswith("data: ") and kind == "dropped" and \
                            dropped is not None:
                        dropped.append(int(line[6:]))
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
    # Live on one node, ``old`` is the status the change left ("sending": a claim, which
    # records no event); on PostgreSQL every node streams the stored events, shaped as a
    # reconnecting client's replay: ``old`` is the status of the event before.
    assert node.host is not None
    sending = "sending" if node.host.store.dialect == "sqlite" else "queued"
    assert [(e["old"], e["new"], e["source"]) for e in events] == [
        (None, "queued", "api"), (sending, "sent", "sender"),
        ("sent", "delivered", "receipt")]
    assert events[1]["detail"]["broker_message_id"] == f"B-{message_id}"
    assert all((e["direction"], e["broker"], e["remote"]) == ("out", "gen", PHONE)
               for e in events)
    assert statuses(node.message(message_id)) == ["queued", "sent", "delivered"]


def test_a_client_that_reconnects_gets_the_stored_events_it_missed(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """Event ids are the stored event ids; Last-Event-ID replays the stored events after
    it, then the stream goes on live, without sending one twice."""
    node = smshost(brokers=generic_toml(fake_broker.url))
    with event_stream(node) as read:
        first = node.queued(to=PHONE, text="one")["id"]
        seen = read(lambda events: any(e["new"] == "sent" for e in events))
    stored = node.message(first)["events"]
    assert [(e["sse_id"], e["id"], e["new"]) for e in seen] == [
        (str(s["id"]), s["id"], s["status"]) for s in stored]
    # while the client is away: a receipt for the first, a second message sent
    assert post_receipt(node, id=f"B-{first}", status="delivered").status_code == 200
    second = node.queued(to=PHONE, text="two")["id"]
    node.wait_status(second, "sent")
    with event_stream(node, last_event_id=seen[-1]["sse_id"]) as read:
        replayed = read(lambda events: len(events) >= 3)
        third = node.queued(to=PHONE, text="three")["id"]
        events = read(lambda events: any(e["message_id"] == third and e["new"] == "sent"
                                         for e in events))
    assert [(e["message_id"], e["old"], e["new"], e["source"]) for e in replayed[:3]] == [
        (first, "sent", "delivered", "receipt"), (second, None, "queued", "api"),
        (second, "queued", "sent", "sender")]
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)) and ids[0] > seen[-1]["id"]  # in order, none twice
    assert [(e["message_id"], e["new"]) for e in events[3:]] == [
        (third, "queued"), (third, "sent")]
    assert replayed[0]["detail"] == node.message(first)["events"][-1]["detail"]
    assert (replayed[1]["direction"], replayed[1]["broker"], replayed[1]["remote"]) == (
        "out", "gen", PHONE)


def test_the_replay_is_bounded_and_says_what_it_left_out(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    ids = [node.queued(to=PHONE, text=f"m{i}")["id"] for i in range(5)]  # 5 events
    node.stop()
    text = (node.cfg / "smshost.toml").read_text()
    (node.cfg / "smshost.toml").write_text(text.replace(
        f'token = "{TOKEN}"', f'token = "{TOKEN}"\nevents_replay = 2'))
    node.start()  # the same data, at most 2 events replayed
    first_event = node.message(ids[0])["events"][0]["id"]
    dropped: list[int] = []
    with event_stream(node, last_event_id=str(first_event), dropped=dropped) as read:
        replayed = read(lambda events: len(events) >= 2)
    assert [e["message_id"] for e in replayed] == ids[3:]  # the newest two
    assert dropped == [2]  # the events of ids[1] and ids[2]
    for bogus in ("not-a-number", "99999999999999999999999"):  # no replay, still live
        with event_stream(node, last_event_id=bogus) as read:
            late = node.queued(to=PHONE, text="late")["id"]
            events = read(lambda events: len(events) >= 1)
        assert [e["message_id"] for e in events] == [late]


def test_the_event_stream_needs_the_api_token(smshost: Callable[..., Smshost],
                                              fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url))
    with httpx2.Client(trust_env=False, timeout=5.0) as client:
        assert client.get(f"{node.base}/api/events").status_code == 401
