"""Encoding and length per broker (SPEC O4) and consolidation (O5), on a running smshost
whose generic broker sends to a fake broker: what the broker receives is what counts."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from host.encoding import segments
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
)

PHONE2 = "+14155550124"


def parsing_node(smshost: Callable[..., Smshost], fake: FakeBroker, parsing: str,
                 **kwargs: object) -> Smshost:
    return smshost(brokers=generic_toml(fake.url, extra=f'mt.parsing = "{parsing}"'), **kwargs)


def received_texts(fake: FakeBroker, count: int) -> list[str]:
    """The texts the broker received, in the order of smshost's references."""
    seen = fake.wait_requests(count)
    assert len(seen) == count, [s.text for s in seen]
    return [s.text or "" for s in sorted(seen, key=lambda s: int(s.ref or 0))]


def test_parsing_none_sends_one_message_of_several_segments(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = parsing_node(smshost, fake_broker, "none")
    text = "Long text, sent as it is. " * 15  # 390 septets: 3 segments
    body = node.queued(to=PHONE, text=text)
    assert (len(body["ids"]), body["encoding"], body["segments"]) == (1, "gsm7", 3)
    sent = node.wait_status(body["id"], "sent")
    assert (sent["body"], sent["segments"]) == (text, 3)
    assert received_texts(fake_broker, 1) == [text]


@pytest.mark.parametrize(("text", "first"), [
    ("a" * 152 + "€" + "b" * 200, "a" * 152),  # the escape would straddle parts 1 and 2
    ("ж" * 66 + "😀" + "ж" * 100, "ж" * 66),  # so would the surrogate pair
    ("ж" * 66 + "👍🏽" + "ж" * 100, "ж" * 66),  # and the emoji with its skin tone
], ids=["gsm-escape", "ucs2-surrogate-pair", "emoji-cluster"])
def test_parsing_split_sends_one_message_per_segment_never_cutting_a_character(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, text: str,
        first: str) -> None:
    node = parsing_node(smshost, fake_broker, "split")
    expected = segments(text)
    body = node.queued(to=PHONE, text=text)
    assert len(body["ids"]) == expected.segments == 3
    assert body["segments"] == 3 and body["encoding"] == expected.encoding
    for n, message_id in enumerate(body["ids"], 1):
        message = node.wait_status(message_id, "sent")
        assert (message["attrs"]["part"], message["attrs"]["part_of"]) == (n, 3)
        assert message["segments"] == 1
    texts = received_texts(fake_broker, 3)
    assert "".join(texts) == text
    assert texts[0] == first
    assert all(segments(t).segments == 1 for t in texts)
    assert all("\ud83d" not in t and "\ude00" not in t for t in texts)  # no lone surrogates


@pytest.mark.parametrize(("text", "kept"), [
    ("a" * 159 + "€" + " and more", "a" * 159),
    ("ж" * 69 + "😀" + " and more", "ж" * 69),
    ("Short enough", "Short enough"),
], ids=["gsm-escape", "ucs2-surrogate-pair", "short"])
def test_parsing_truncate_cuts_to_one_segment_at_a_whole_character(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, text: str, kept: str) -> None:
    node = parsing_node(smshost, fake_broker, "truncate")
    body = node.queued(to=PHONE, text=text)
    assert (len(body["ids"]), body["segments"]) == (1, 1)
    assert node.wait_status(body["id"], "sent")["body"] == kept
    assert received_texts(fake_broker, 1) == [kept]


def test_a_text_over_the_brokers_segments_is_422_with_parsing_none(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    """generic.xml: max-segments="10"; 10 x 153 septets fit, one more does not."""
    node = parsing_node(smshost, fake_broker, "none", outbox=outbox_toml(enabled=False))
    assert node.queued(to=PHONE, text="a" * 1530)["segments"] == 10
    answer = node.send(to=PHONE, text="a" * 1531)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "too_long"
    assert "11 segments" in answer.json()["message"] and "10" in answer.json()["message"]
    emoji = node.send(to=PHONE, text="😀" * 336)  # 672 units: 11 parts of 67 (2 per emoji)
    assert emoji.status_code == 422
    assert len(node.outbound()) == 1


@pytest.mark.parametrize(("parsing", "messages"), [("split", 11), ("truncate", 1)])
def test_split_and_truncate_take_any_length(smshost: Callable[..., Smshost],
                                            fake_broker: FakeBroker, parsing: str,
                                            messages: int) -> None:
    node = parsing_node(smshost, fake_broker, parsing, outbox=outbox_toml(enabled=False))
    assert len(node.queued(to=PHONE, text="a" * 1531)["ids"]) == messages


# -- consolidation (O5) ---------------------------------------------------------------------


def blocking(release: threading.Event) -> Callable[[Seen, int], Reply]:
    """Holds the answer to the text "blocker" until ``release``; answers the rest."""
    def respond(seen: Seen, n: int) -> Reply:
        reply = generic_ok(seen, n)
        if seen.text == "blocker":
            reply.hold = release
        return reply
    return respond


def test_a_waiting_message_takes_in_the_next_one_when_it_fits_one_segment(
        smshost: Callable[..., Smshost]) -> None:
    """One send at a time (max_in_flight = 1) and the broker holding the first: the
    messages queued behind it wait, and merge while they fit one segment."""
    release = threading.Event()
    with FakeBroker(blocking(release)) as fake:
        node = smshost(brokers=generic_toml(fake.url, extra="mt.consolidate = true",
                                            accounts=(("main", OUR_NUMBER),
                                                      ("second", OTHER_NUMBER))),
                       outbox=outbox_toml(max_in_flight=1))
        blocker = node.queued(to=PHONE2, text="blocker")
        fake.wait_requests(1)
        first = node.queued(to=PHONE, text="Your table is ready.",
                            metadata={"ticket": "T-1"})
        merged = node.send(to=PHONE, text="Please come to the front desk.",
                           metadata={"ticket": "T-2", "desk": 4})
        assert merged.status_code == 201, merged.text
        assert merged.json()["consolidated"] is True
        assert merged.json()["id"] == first["id"]
        too_long = node.queued(to=PHONE, text="x" * 120)  # merged: 20+1+29+1+120 > 160
        other_account = node.queued(to=PHONE, text="From our other number", account="second")
        other_number = node.queued(to="+14155550125", text="Someone else")
        for body in (too_long, other_account, other_number):
            assert body["consolidated"] is False and body["id"] != first["id"]
        release.set()
        ids = [blocker["id"], first["id"], too_long["id"], other_account["id"],
               other_number["id"]]
        for message_id in ids:
            node.wait_status(message_id, "sent")
        texts = received_texts(fake, 5)
    assert texts == ["blocker", "Your table is ready.\nPlease come to the front desk.",
                     "x" * 120, "From our other number", "Someone else"]
    assert fake.refs() == {str(i): 1 for i in ids}
    message = node.message(first["id"])
    assert message["attrs"]["consolidated"] == 2
    # nothing the second sender gave is lost: its metadata rides along, in order
    assert message["attrs"]["ticket"] == "T-1"
    assert message["attrs"]["merged"] == [{"ticket": "T-2", "desk": 4}]
    assert statuses(message) == ["queued", "sent"]
    assert len(node.outbound()) == 5


def test_consolidation_switches_the_waiting_message_to_ucs2_when_needed(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url, extra="mt.consolidate = true"),
                   outbox=outbox_toml(enabled=False))
    first = node.queued(to=PHONE, text="Hello")
    second = node.queued(to=PHONE, text="Привет")
    third = node.queued(to=PHONE, text="ж" * 60)  # 5 + 1 + 6 + 1 + 60 = 73 > 70 units
    assert second["consolidated"] is True and third["consolidated"] is False
    (merged, alone) = node.outbound()
    assert (merged["id"], merged["body"], merged["encoding"]) == (
        first["id"], "Hello\nПривет", "ucs2")
    assert alone["id"] == third["id"]


def test_without_consolidate_nothing_merges(smshost: Callable[..., Smshost],
                                           fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    bodies = [node.queued(to=PHONE, text=t) for t in ("one", "two")]
    assert [b["consolidated"] for b in bodies] == [False, False]
    assert len(node.outbound()) == 2


def test_a_message_already_tried_is_not_merged_into(smshost: Callable[..., Smshost]) -> None:
    """Only a message never tried takes in another: one waiting for its retry may have
    reached the phone already."""
    def respond(seen: Seen, n: int) -> Reply:
        return Reply(503, {"error": "busy"}) if seen.text == "first" else generic_ok(seen, n)

    with FakeBroker(respond) as fake:
        node = smshost(brokers=generic_toml(fake.url, extra="mt.consolidate = true"),
                       outbox=outbox_toml(first_delay=300.0, max_delay=600.0))
        first = node.queued(to=PHONE, text="first")
        node.wait_events(first["id"], 2)  # queued, then queued again for a retry
        second = node.queued(to=PHONE, text="second")
        assert second["consolidated"] is False
        node.wait_status(second["id"], "sent")
    assert [s.text for s in fake.seen()] == ["first", "second"]


def test_a_split_message_is_never_merged(smshost: Callable[..., Smshost],
                                        fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url,
                                        extra='mt.consolidate = true\nmt.parsing = "split"'),
                   outbox=outbox_toml(enabled=False))
    node.queued(to=PHONE, text="short")
    long = node.queued(to=PHONE, text="y" * 200)
    assert long["consolidated"] is False and len(long["ids"]) == 2
    assert [m["body"] for m in node.outbound()] == ["short", "y" * 153, "y" * 47]
