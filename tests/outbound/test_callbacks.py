"""Per-message status callbacks (issue 16 point 3): a receiver on 127.0.0.1 (allowed in
these configurations) gets each status change signed as the webhook sink signs; a
500 is retried with backoff (a fake clock), the last failure is a dead letter that
the API replays; hosts not allowed and private addresses are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from host.core import Host
from tests.outbound.conftest import (PHONE, FakeBroker, Reply, Seen, Smshost, generic_toml,
                                     outbox_toml, wait_until)

SECRET = "cb-secret"
START = 1_900_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def callbacks_toml(hosts: str = '"127.0.0.1"', private: bool = True, **more: Any) -> str:
    lines = ["", "[callbacks]", f"allowed_hosts = [{hosts}]",
             f"allow_private = {json.dumps(private)}", f'secret = "{SECRET}"',
             "first_delay = 10.0", "max_attempts = 3"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in more.items()]
    return "\n".join(lines) + "\n"


def node_with(smshost: Callable[..., Smshost], broker: FakeBroker, clock: FakeClock,
              extra: str, **outbox: Any) -> Smshost:
    def prepare(host: Host) -> None:
        host.callbacks.clock = clock
        host.sender.clock = clock
    return smshost(brokers=generic_toml(broker.url), prepare=prepare,
                   outbox=outbox_toml(**outbox), extra=extra)


def verified(seen: Seen) -> dict[str, Any]:
    """The body, once its signature checks out as docs/sending.md tells receivers."""
    header = seen.headers["x-smshost-signature"]
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + seen.body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"]), header
    assert abs(int(fields["t"]) - time.time()) < 60
    body: dict[str, Any] = seen.json
    assert str(body["delivery_id"]) == seen.headers["x-smshost-delivery"]
    return body


def test_each_status_change_is_posted_signed(smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    with FakeBroker() as broker, FakeBroker(lambda seen, n: Reply(204)) as receiver:
        node = node_with(smshost, broker, clock, callbacks_toml())
        url = f"{receiver.url}/status?app=1"
        body = node.queued(to=PHONE, text="hi", status_callback=url)
        node.wait_status(body["id"], "sent")
        got = [verified(s) for s in receiver.wait_requests(2)]
        assert len(got) == 2
        later = node.queued(to=PHONE, text="later", status_callback=url,
                            send_at="2030-03-17T18:46:40Z")
        assert node.api.delete(f"/api/messages/{later['id']}").status_code == 200
        got += [verified(s) for s in receiver.wait_requests(4)[2:]]
        plain = node.queued(to=PHONE, text="no callback")
        node.wait_status(plain["id"], "sent")
        rows = node.rows("select message_id, status from callback_deliveries order by id")
    assert {s.path for s in receiver.seen()} == {"/status"}
    got.sort(key=lambda b: b["delivery_id"])  # two may be under way at once
    assert [(b["message_id"], b["status"]) for b in got] == [
        (body["id"], "queued"), (body["id"], "sent"), (later["id"], "scheduled"),
        (later["id"], "cancelled")]
    sent = got[1]
    assert sent["old_status"] == "sending" and sent["broker"] == "gen"
    assert sent["broker_message_id"] == f"B-{body['id']}" and sent["error"] is None
    assert sent["event"] == "message.status" and sent["to"] == PHONE
    assert node.message(body["id"])["attrs"] == {"status_callback": url}
    assert [r["message_id"] for r in rows] == [body["id"]] * 2 + [later["id"]] * 2
    assert all(r["status"] == "delivered" for r in rows)


def test_a_500_is_retried_then_dead_and_replayed(smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    answers = {"status": 500}
    with FakeBroker() as broker, \
            FakeBroker(lambda seen, n: Reply(answers["status"], "down")) as receiver:
        node = node_with(smshost, broker, clock, callbacks_toml(), enabled=False)
        node.queued(to=PHONE, text="hi", status_callback=f"{receiver.url}/cb")
        receiver.wait_requests(1)
        row = wait_until(lambda: node.rows("select * from callback_deliveries where "
                                           "attempts = 1"), what="the first attempt")[0]
        assert row["status"] == "pending" and row["last_error"] == "HTTP 500: down"
        assert row["next_attempt_at"] == START + 10.0  # first_delay
        clock.now += 9.0
        time.sleep(1.2)  # the worker looks at least once a second: not due yet
        assert len(receiver.seen()) == 1
        clock.now += 1.0
        receiver.wait_requests(2)
        wait_until(lambda: node.rows("select 1 from callback_deliveries where "
                                     "next_attempt_at = ?", [START + 30.0]),
                   what="the second retry at first_delay * factor")
        clock.now += 20.0
        receiver.wait_requests(3)
        dead = wait_until(lambda: node.api.get("/api/callbacks?status=dead").json()
                          ["callbacks"], what="a dead letter")
        assert dead[0]["attempts"] == 3 and dead[0]["last_status"] == 500
        answers["status"] = 200
        replayed = node.api.post(f"/api/callbacks/{dead[0]['id']}/replay")
        assert replayed.status_code == 200 and replayed.json()["status"] == "pending"
        wait_until(lambda: node.api.get("/api/callbacks?status=delivered").json()
                   ["callbacks"], what="the replay delivered")
        again = node.api.post(f"/api/callbacks/{dead[0]['id']}/replay")
        assert again.status_code == 409
        assert node.api.post("/api/callbacks/999/replay").status_code == 404
    assert len(receiver.seen()) == 4
    assert len({verified(s)["delivery_id"] for s in receiver.seen()}) == 1


def test_hosts_not_allowed_and_private_addresses_are_refused(
        smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    with FakeBroker() as broker, FakeBroker(lambda seen, n: Reply(200)) as receiver:
        node = node_with(smshost, broker, clock, callbacks_toml(
            hosts='"127.0.0.1", "localhost", "*.example.org"', private=False),
            enabled=False)
        port = receiver.port
        for url, reason in [
                (f"http://127.0.0.1:{port}/cb", "127.0.0.1 is a loopback address"),
                ("http://10.1.2.3/cb", "host '10.1.2.3' is not allowed"),
                ("https://example.com/cb", "host 'example.com' is not allowed"),
                ("https://example.org/cb", "host 'example.org' is not allowed"),
                ("ftp://a.example.org/cb", "must be an http:// or https:// URL"),
                ("https://u:p@a.example.org/cb", "must not carry credentials")]:
            refused = node.send(to=PHONE, text="x", status_callback=url)
            assert refused.status_code == 400, (url, refused.text)
            assert refused.json()["message"].startswith("status_callback: "), refused.text
            assert reason in refused.json()["message"], refused.text
        smuggled = node.send(to=PHONE, text="x", metadata={"status_callback": "http://x"})
        assert smuggled.status_code == 400 and "reserved" in smuggled.json()["message"]
        # a name allowed, which resolves to a loopback address: refused when it is sent
        node.queued(to=PHONE, text="x", status_callback=f"http://localhost:{port}/cb")
        dead = wait_until(lambda: node.api.get("/api/callbacks?status=dead").json()
                          ["callbacks"], what="the refused callback dead")
    assert "resolves to" in dead[0]["last_error"]
    assert "loopback" in dead[0]["last_error"]
    assert receiver.seen() == []
    assert len(node.outbound()) == 1


def test_callbacks_are_off_until_a_host_is_allowed(smshost: Callable[..., Smshost]) -> None:
    with FakeBroker() as broker:
        node = smshost(brokers=generic_toml(broker.url), outbox=outbox_toml(enabled=False))
        refused = node.send(to=PHONE, text="x", status_callback="https://example.com/cb")
        assert refused.status_code == 400
        assert "allowed_hosts: none" in refused.json()["message"]
