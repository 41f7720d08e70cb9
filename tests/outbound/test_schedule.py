"""Scheduled sends and cancelling (issue 16 point 2): ``send_at`` keeps a message in the
outbox until then (a fake clock drives the sender), across a restart; DELETE cancels
one not yet handed to a broker; a cancel and the sender's claim never both win."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from host.brokers.claims import claim, due_messages
from host.core import Host
from host.ledger import NewMessage, insert
from host.migrations import core
from host.schedule import cancel, parse_send_at
from tests.outbound.conftest import (PHONE, FakeBroker, Reply, Smshost, generic_ok,
                                     generic_toml, outbox_toml, statuses, wait_until)

START = 1_900_000_000.0  # 2030-03-17T17:46:40Z


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rfc3339(seconds: float, offset: str = "Z") -> str:
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + offset


def scheduled_node(smshost: Callable[..., Smshost], fake: FakeBroker, clock: FakeClock,
                   extra: str = "", **outbox: Any) -> Smshost:
    def prepare(host: Host) -> None:
        host.sender.clock = clock
    return smshost(brokers=generic_toml(fake.url, extra=extra), prepare=prepare,
                   outbox=outbox_toml(**outbox))


def test_a_scheduled_send_waits_for_its_time_across_a_restart(
        smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    with FakeBroker() as fake:
        node = scheduled_node(smshost, fake, clock)
        later = node.queued(to=PHONE, text="later", send_at=rfc3339(START + 3600))
        assert later["status"] == "scheduled"
        assert later["send_at"] == "2030-03-17T18:46:40.000000Z"
        # a message sent now goes past it: the sender ran, and left the scheduled one
        now = node.queued(to=PHONE, text="now")
        node.wait_status(now["id"], "sent")
        assert fake.refs() == {str(now["id"]): 1}
        row = node.rows("select next_attempt_at, enqueued_at from outbox "
                        "where message_id = ?", [later["id"]])[0]
        assert row == {"next_attempt_at": START + 3600, "enqueued_at": START + 3600}

        node.restart()  # it is just a row: still scheduled after the restart
        assert node.message(later["id"])["status"] == "scheduled"
        clock.now += 3599
        node.queued(to=PHONE, text="a second before")  # the loop ran at START + 3599
        wait_until(lambda: len(fake.seen()) == 2, what="the second message")
        assert node.message(later["id"])["status"] == "scheduled"
        clock.now += 1
        sent = node.wait_status(later["id"], "sent")
    assert statuses(sent) == ["scheduled", "sent"]
    assert sent["events"][0]["detail"] == {"send_at": "2030-03-17T18:46:40.000000Z"}
    assert fake.refs()[str(later["id"])] == 1


def test_send_at_now_or_past_sends_now_and_beyond_the_horizon_is_refused(
        smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    with FakeBroker() as fake:
        node = scheduled_node(smshost, fake, clock, schedule_horizon=86400.0)
        past = node.queued(to=PHONE, text="past", send_at=rfc3339(START - 60, "+02:00"))
        assert past["status"] == "queued" and "send_at" not in past
        node.wait_status(past["id"], "sent")
        ok = node.queued(to=PHONE, text="in a day", send_at=rfc3339(START + 86400))
        assert ok["status"] == "scheduled"
        for value, reason in [
                (rfc3339(START + 86401), "more than 86400 s ahead"),
                ("2030-03-17T18:46:40", "needs a date, a time and an offset"),
                ("2030-03-17", "needs a date, a time and an offset"),
                ("tomorrow", "not an RFC 3339 time")]:
            refused = node.send(to=PHONE, text="x", send_at=value)
            assert refused.status_code == 400, (value, refused.text)
            assert refused.json()["message"].startswith("send_at: "), refused.text
            assert reason in refused.json()["message"]
        assert node.send(to=PHONE, text="x", send_at=12).status_code == 400
    assert len(node.outbound()) == 2


def test_parse_send_at_takes_offsets() -> None:
    assert parse_send_at("2030-03-17T19:46:40+01:00") == START + 3600
    assert parse_send_at("2030-03-17t17:46:40z") == START


def test_cancel_a_scheduled_send(smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    with FakeBroker() as fake:
        node = scheduled_node(smshost, fake, clock)
        later = node.queued(to=PHONE, text="later", send_at=rfc3339(START + 60))
        done = node.api.delete(f"/api/messages/{later['id']}")
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "cancelled"
        assert done.json()["cancelled"] == [later["id"]]
        again = node.api.post(f"/api/messages/{later['id']}/cancel")
        assert again.status_code == 409
        assert again.json()["status"] == "cancelled"
        assert again.json()["error"] == "not_cancellable"
        assert node.api.delete("/api/messages/999999").status_code == 404
        assert node.api.delete("/api/messages/abc").status_code == 404
        clock.now += 120
        sent = node.queued(to=PHONE, text="now")
        node.wait_status(sent["id"], "sent")
        refused = node.api.delete(f"/api/messages/{sent['id']}")
        assert refused.status_code == 409 and refused.json()["status"] == "sent"
        assert sent["id"] and str(later["id"]) not in fake.refs()
        message = node.message(later["id"])
    assert statuses(message) == ["scheduled", "cancelled"]
    assert message["events"][-1]["source"] == "api"
    assert message["events"][-1]["detail"] == {"by": "the configured api.token"}
    assert not node.rows("select * from outbox where message_id = ?", [later["id"]])


def test_cancelling_a_part_cancels_the_parts_after_it(smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    with FakeBroker() as fake:
        node = scheduled_node(smshost, fake, clock, extra='mt.parsing = "split"\n')
        body = node.queued(to=PHONE, text="x" * 400, send_at=rfc3339(START + 60))
        assert len(body["ids"]) == 3
        done = node.api.delete(f"/api/messages/{body['ids'][1]}")
        assert done.json()["cancelled"] == body["ids"][1:]
        clock.now += 60
        node.wait_status(body["ids"][0], "sent")
        assert [m["status"] for m in node.outbound()] == ["sent", "cancelled", "cancelled"]
    assert list(fake.refs()) == [str(body["ids"][0])]


def test_a_message_being_sent_is_not_cancelled(smshost: Callable[..., Smshost]) -> None:
    release = threading.Event()
    with FakeBroker(lambda seen, n: Reply(200, {"id": f"B-{seen.ref}"}, hold=release)) \
            as fake:
        node = smshost(brokers=generic_toml(fake.url), outbox=outbox_toml())
        body = node.queued(to=PHONE, text="hi")
        fake.wait_requests(1)
        refused = node.api.delete(f"/api/messages/{body['id']}")
        release.set()
        assert refused.status_code == 409 and refused.json()["status"] == "sending"
        assert "is sending" in refused.json()["message"]
        node.wait_status(body["id"], "sent")


def test_scheduled_sends_and_idempotency_and_consolidation(
        smshost: Callable[..., Smshost]) -> None:
    clock = FakeClock()
    with FakeBroker() as fake:
        node = scheduled_node(smshost, fake, clock, extra="mt.consolidate = true\n",
                              enabled=False)
        at = rfc3339(START + 60)
        first = node.send("k1", to=PHONE, text="a", send_at=at)
        assert first.status_code == 201
        again = node.send("k1", to=PHONE, text="a", send_at=at)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        other = node.send("k1", to=PHONE, text="a", send_at=rfc3339(START + 61))
        assert other.status_code == 422
        # never merged into a scheduled one, nor a scheduled one into a queued one
        queued = node.queued(to=PHONE, text="b")
        assert queued["consolidated"] is False
        merged = node.queued(to=PHONE, text="c")
        assert merged["consolidated"] is True and merged["id"] == queued["id"]
        late = node.queued(to=PHONE, text="d", send_at=at)
        assert late["consolidated"] is False and late["id"] != queued["id"]
        assert late["status"] == "scheduled"


# -- the race: a cancel and the sender's claim, interleaved --------------------------------

def _queued_db(tmp_path: Path) -> tuple[Database, int]:
    db = Database(tmp_path / "race.db")
    core.apply(db)
    message, _ = insert(db, NewMessage(direction="out", body="hi", status="scheduled",
                                       broker="gen", account="main", remote=PHONE))
    db.conn.execute("insert into outbox (message_id, next_attempt_at, enqueued_at, broker, "
                    "account) values (?, 10, 10, 'gen', 'main')", [message.id])
    return db, message.id


def _anyone(owner: str | None) -> bool:
    return True


def test_a_claim_before_the_cancel_wins(tmp_path: Path) -> None:
    db, message_id = _queued_db(tmp_path)
    claimed, _ = claim([message_id], 20.0, None, db)
    assert [c.message.id for c in claimed] == [message_id]
    done = cancel(db, message_id, "test", _anyone)
    assert done.changes == [] and done.status == "sending"


def test_a_cancel_between_the_senders_read_and_its_claim_wins(tmp_path: Path) -> None:
    db, message_id = _queued_db(tmp_path)
    due, _ = due_messages([(("gen", "main"), 10)], 20.0, 10, False, [("gen", "main")], db)
    assert [row[0] for row in due] == [message_id]  # the sender read it as due
    done = cancel(db, message_id, "test", _anyone)
    assert done.status == "cancelled" and len(done.changes) == 1
    claimed, _ = claim([message_id], 20.0, None, db)  # then tries to claim it: nothing
    assert claimed == []
    status = db.execute("select status from messages where id = ?", [message_id]).fetchone()
    assert status == ("cancelled",)


def test_cancels_racing_the_sender_never_both_win(smshost: Callable[..., Smshost]) -> None:
    """Sends and cancels interleaved for real (bounded: 30 messages): each message ends
    either cancelled and never seen by the broker, or sent once and its cancel refused."""
    with FakeBroker(generic_ok) as fake:
        node = smshost(brokers=generic_toml(fake.url), outbox=outbox_toml())
        answers: dict[int, int] = {}
        for n in range(30):
            message_id = node.queued(to=PHONE, text=f"race {n}")["id"]
            answers[message_id] = node.api.delete(f"/api/messages/{message_id}").status_code
        for message_id, code in answers.items():
            final = node.wait_status(message_id, "sent", "cancelled")
            seen = fake.refs()[str(message_id)]
            if code == 200:
                assert final["status"] == "cancelled" and seen == 0, final
            else:
                assert code == 409 and final["status"] == "sent" and seen == 1, final
    assert set(answers.values()) <= {200, 409}
