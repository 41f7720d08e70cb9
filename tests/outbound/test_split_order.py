"""The parts of a split message leave in order (SPEC O4, issue 11 #8): part k+1 is sent
only once the broker accepted part k; a retry of part k holds the rest back; a part
that fails for good fails the parts after it; a restart keeps the order. Meanwhile
other messages, of the same account too, keep flowing.

The fake broker records, in one log, when each request arrived and when it was
answered, and answers the first part slowly (held until the test releases it): sent
side by side, the later parts would arrive before the first one is answered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.outbound.conftest import (
    OTHER_NUMBER,
    OUR_NUMBER,
    PHONE,
    FakeBroker,
    Reply,
    Seen,
    Smshost,
    generic_ok,
    generic_toml,
    outbox_toml,
    statuses,
    wait_until,
)
from tests.outbound.test_receipts_events import post_receipt

PHONE2 = "+14155550124"
TEXT = "A" * 153 + "B" * 153 + "C" * 60  # three parts: "AAA...", "BBB...", "CCC..."
SPLIT = 'mt.parsing = "split"'
ACCOUNTS = (("main", OUR_NUMBER), ("second", OTHER_NUMBER))


def label(seen: Seen) -> str:
    """A part by its first letter; any other message by its text."""
    text = seen.text or ""
    return text[0] if text[:3] in ("AAA", "BBB", "CCC") else text


class Recorder:
    """A fake broker's script: logs arrivals and answers, answers by ``answer``."""

    def __init__(self, answer: Callable[[str, int], Reply]) -> None:
        self.answer = answer
        self.log: list[tuple[str, str]] = []
        self.tries: dict[str, int] = {}
        self._lock = threading.Lock()

    def respond(self, seen: Seen, n: int) -> Reply:
        name = label(seen)
        with self._lock:
            self.log.append(("arrived", name))
            self.tries[name] = self.tries.get(name, 0) + 1
            tries = self.tries[name]
        reply = self.answer(name, tries)
        if reply.status == 200 and not reply.body:
            reply.body = generic_ok(seen, n).body

        def answered() -> None:
            with self._lock:
                self.log.append(("answered", name))
        reply.before = answered
        return reply

    def arrivals(self) -> list[str]:
        with self._lock:
            return [name for what, name in self.log if what == "arrived"]

    def of_parts(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(what, name) for what, name in self.log if name in "ABC"]


def test_each_part_leaves_after_the_previous_one_was_accepted_others_go_meanwhile(
        smshost: Callable[..., Smshost]) -> None:
    release = threading.Event()
    recorder = Recorder(lambda name, tries: Reply(200, hold=release if name == "A" else None))
    with FakeBroker(recorder.respond) as fake:
        node = smshost(brokers=generic_toml(fake.url, extra=SPLIT, accounts=ACCOUNTS))
        ids = node.queued(to=PHONE, text=TEXT)["ids"]
        assert len(ids) == 3
        fake.wait_requests(1)
        # Part A is held at the broker: other messages, of the same account to another
        # number and of another account, go out meanwhile; parts B and C wait.
        same = node.queued(to=PHONE2, text="same account")["id"]
        other = node.queued(to=PHONE, text="other account", account="second")["id"]
        node.wait_status(same, "sent")
        node.wait_status(other, "sent")
        assert sorted(recorder.arrivals()) == ["A", "other account", "same account"]
        assert [node.message(i)["status"] for i in ids] == ["sending", "queued", "queued"]
        release.set()
        for message_id in ids:
            node.wait_status(message_id, "sent")
    assert recorder.of_parts() == [("arrived", "A"), ("answered", "A"),
                                   ("arrived", "B"), ("answered", "B"),
                                   ("arrived", "C"), ("answered", "C")]


def test_a_retry_of_a_part_holds_the_next_parts_back(
        smshost: Callable[..., Smshost]) -> None:
    recorder = Recorder(lambda name, tries: Reply(503, {"error": "busy"})
                        if name == "A" and tries == 1 else Reply(200))
    with FakeBroker(recorder.respond) as fake:
        node = smshost(brokers=generic_toml(fake.url, extra=SPLIT))
        ids = node.queued(to=PHONE, text=TEXT)["ids"]
        for message_id in ids:
            node.wait_status(message_id, "sent")
        assert fake.refs() == {str(ids[0]): 2, str(ids[1]): 1, str(ids[2]): 1}
    assert recorder.arrivals() == ["A", "A", "B", "C"]
    assert statuses(node.message(ids[0])) == ["queued", "queued", "sent"]


def test_a_part_that_fails_for_good_fails_the_parts_after_it(
        smshost: Callable[..., Smshost]) -> None:
    recorder = Recorder(lambda name, tries: Reply(400, {"error": "invalid"})
                        if name == "B" else Reply(200))
    with FakeBroker(recorder.respond) as fake:
        node = smshost(brokers=generic_toml(fake.url, extra=SPLIT))
        a, b, c = node.queued(to=PHONE, text=TEXT)["ids"]
        node.wait_status(c, "failed")
        assert node.wait_status(a, "sent") and node.wait_status(b, "failed")
        failed = node.api.get("/api/messages", params={"status": "failed"}).json()
        assert sorted(m["id"] for m in failed["messages"]) == [b, c]
        later = node.message(c)
        assert statuses(later) == ["queued", "failed"]
        assert later["events"][-1]["detail"]["error"] == (
            f"not sent: part 2 of 3 (message {b}) failed")
        assert node.rows("select count(*) as n from outbox")[0]["n"] == 0
        assert recorder.arrivals() == ["A", "B"]  # C never went


def test_a_restart_with_a_part_in_flight_keeps_the_order(
        smshost: Callable[..., Smshost]) -> None:
    never = threading.Event()  # the first try of A is never answered (released at stop)
    recorder = Recorder(lambda name, tries: Reply(200, hold=never)
                        if name == "A" and tries == 1 else Reply(200))
    with FakeBroker(recorder.respond) as fake:
        node = smshost(brokers=generic_toml(fake.url, extra=SPLIT), shutdown_timeout=0.2)
        ids = node.queued(to=PHONE, text=TEXT)["ids"]
        fake.wait_requests(1)
        node.stop()  # A stays in flight: its outcome is unknown
        assert [r["in_flight"] for r in node.rows(
            "select in_flight from outbox order by message_id")] == [1, 0, 0]
        node.restart()
        for message_id in ids:
            node.wait_status(message_id, "sent")
        wait_until(lambda: len(recorder.of_parts()) == 7, what="every answer logged",
                   explain=lambda: str(recorder.of_parts()))
    assert recorder.arrivals() == ["A", "A", "B", "C"]
    assert node.message(ids[0])["attrs"]["possibly_duplicated"] is True
    assert "possibly_duplicated" not in node.message(ids[1])["attrs"]


def test_parts_of_a_message_hold_no_send_slot_while_they_wait(
        smshost: Callable[..., Smshost]) -> None:
    """One send at a time (max_in_flight = 1): waiting parts take no slot, so the
    parts of two messages interleave as each is accepted, and both finish."""
    recorder = Recorder(lambda name, tries: Reply(200))
    with FakeBroker(recorder.respond) as fake:
        node = smshost(brokers=generic_toml(fake.url, extra=SPLIT),
                       outbox=outbox_toml(max_in_flight=1, enabled=False))
        first = node.queued(to=PHONE, text=TEXT)["ids"]
        second = node.queued(to=PHONE2, text=TEXT)["ids"]
        node.restart(outbox=outbox_toml(max_in_flight=1))
        for message_id in first + second:
            node.wait_status(message_id, "sent")
        by_ref = [int(s.ref or 0) for s in fake.seen()]
    assert [i for i in by_ref if i in first] == first
    assert [i for i in by_ref if i in second] == second


def test_parts_waiting_for_a_message_that_is_gone_are_not_stuck(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """The first part's message deleted while smshost was down (as a purge would, its
    outbox row with it): at the next start the parts after it go, in order."""
    node = smshost(brokers=generic_toml(fake_broker.url, extra=SPLIT),
                   outbox=outbox_toml(enabled=False))
    a, b, c = node.queued(to=PHONE, text=TEXT)["ids"]
    node.stop()
    node.write("delete from messages where id = ?", [a])  # its outbox row with it
    node.restart(outbox=outbox_toml())
    node.wait_status(c, "sent")
    assert [int(s.ref or 0) for s in fake_broker.seen()] == [b, c]


def test_a_receipt_for_a_part_waiting_for_its_retry_lets_the_next_part_go(
        smshost: Callable[..., Smshost]) -> None:
    """The broker answered part A 503 but then reported it delivered (by our
    reference): A is not sent again, and B and C go at once, not after A's retry."""
    recorder = Recorder(lambda name, tries: Reply(503, {"error": "busy"})
                        if name == "A" else Reply(200))
    with FakeBroker(recorder.respond) as fake:
        node = smshost(brokers=generic_toml(fake.url, extra=SPLIT),
                       outbox=outbox_toml(first_delay=300.0, max_delay=600.0))
        a, b, c = node.queued(to=PHONE, text=TEXT)["ids"]
        node.wait_events(a, 2)  # queued, then queued again for its retry
        assert post_receipt(node, ref=str(a), status="delivered").status_code == 200
        node.wait_status(c, "sent")
        assert node.message(a)["status"] == "delivered"
        assert [int(s.ref or 0) for s in fake.seen()] == [a, b, c]
