"""Replies go out through the broker account that received the message (SPEC B8, H3,
issue 11 #9); outbound routes are for new conversations. A reply or send smshost
refuses is visible: a ``failed`` message with the reason (listed by
``/api/messages?status=failed``), the ``smshost_sends_refused`` metric, and the routing
event of the message it answers.

A real smshost with two generic brokers, each sending to its own fake broker; MO
arrive as the broker posts them, and a handler script answers them.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.outbound.conftest import (
    OTHER_NUMBER,
    OUR_NUMBER,
    PHONE,
    FakeBroker,
    Smshost,
    generic_toml,
    statuses,
    wait_until,
)
from tests.outbound.test_send_api import INBOX_QUEUE

NEW_NUMBER = "+14155550124"
ECHO = """
def handle(ctx):
    ctx.reply("echo: " + ctx.body)
    ctx.send("+14155550124", "a new conversation")
"""
TO_ECHO = """
[[inbound]]
name = "echo"
type = "body"
pattern = '.*'
destination = "handler"
target = "Echo"

[[inbound]]
name = "default"
destination = "queue"
target = "inbox"
default = true
"""
UK_ONLY = """
[[outbound]]
name = "uk"
pattern = '\\+44\\d+'
broker = "far"
"""  # covers neither the texter nor the new number
EVERYTHING_ELSEWHERE = """
[[outbound]]
name = "everything-far"
pattern = '\\+14155550123'
broker = "far"
account = "far-main"
"""  # covers the texter (a reply must not take it), not the new number


def plugins(tmp_path: Path, source: str = ECHO) -> Path:
    folder = tmp_path / "plugins"
    (folder / "handlers").mkdir(parents=True)
    (folder / "handlers" / "Echo.py").write_text(textwrap.dedent(source))
    return folder


def two_brokers(near: FakeBroker, far: FakeBroker, near_extra: str = "") -> str:
    return (generic_toml(near.url, extra=near_extra) +
            generic_toml(far.url, name="far", accounts=(("far-main", OTHER_NUMBER),)))


def post_mo(node: Smshost, text: str, mo_id: str = "mo-1", to: str | None = None) -> int:
    """The broker posts an MO (no ``to``: the account's number, B8); its message id."""
    fields = {"id": mo_id, "from": PHONE, "text": text, **({"to": to} if to else {})}
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        answer = client.post(f"{node.base}/generic/mo", json=fields)
    assert answer.status_code == 200, answer.text
    found = wait_until(lambda: node.rows("select id from messages where direction = 'in' "
                                         "and broker_message_id = ?", [mo_id]),
                       what="the MO to be stored")
    return int(found[0]["id"])


def routed(node: Smshost, mo: int) -> dict[str, Any]:
    """The MO once routed: its last routing event's detail."""
    node.wait_status(mo, "routed", "failed")
    return node.message(mo)["events"][-1]["detail"]  # type: ignore[no-any-return]


def refused_count(node: Smshost, source: str, reason: str) -> float:
    text = node.api.get("/metrics").text
    match = re.search(rf'^smshost_sends_refused_total\{{(?=[^}}]*source="{source}")'
                      rf'(?=[^}}]*reason="{reason}")[^}}]*\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("outbound_routes", [UK_ONLY, EVERYTHING_ELSEWHERE],
                         ids=["no-route-covers-the-texter", "a-route-names-another-broker"])
def test_a_reply_goes_out_through_the_account_that_received_the_message(
        smshost: Callable[..., Smshost], tmp_path: Path, outbound_routes: str) -> None:
    with FakeBroker() as near, FakeBroker() as far:
        node = smshost(brokers=two_brokers(near, far), routes=TO_ECHO + outbound_routes,
                       sinks=INBOX_QUEUE, plugin_dirs=(plugins(tmp_path),))
        mo = post_mo(node, "hello")
        detail = routed(node, mo)
        (answer,) = near.wait_requests(1)
        assert (answer.json["from"], answer.json["to"], answer.json["text"]) == (
            OUR_NUMBER, PHONE, "echo: hello")
        assert far.seen() == []  # the routes are for new conversations
        reply = node.message(int(answer.ref or 0))
        assert (reply["broker"], reply["account"], reply["route"]) == ("gen", "main", None)
        assert reply["attrs"]["in_reply_to"] == mo
        node.wait_status(reply["id"], "sent")
        # ctx.send to a new number: the outbound routes decide, and none covers it
        assert node.message(mo)["status"] == "routed"  # the handler ran to its end
        sent = {o["kind"]: o for o in detail["sent"]}
        assert sent["reply"] == {"kind": "reply", "to": PHONE, "message_id": reply["id"],
                                 "status": "queued"}
        assert sent["send"]["status"] == "failed"
        assert sent["send"]["error"].startswith(f"no outbound route matches '{NEW_NUMBER}'")


def test_a_reply_comes_from_the_number_that_was_texted(
        smshost: Callable[..., Smshost], tmp_path: Path) -> None:
    """The broker names which of our numbers was texted (not the account's own): the
    reply comes from that number, through the same account."""
    pool_number = "+14155550177"
    with FakeBroker() as near, FakeBroker() as far:
        node = smshost(brokers=two_brokers(near, far), routes=TO_ECHO, sinks=INBOX_QUEUE,
                       plugin_dirs=(plugins(tmp_path),))
        routed(node, post_mo(node, "hello", to=pool_number))
        answer = next(r for r in near.wait_requests(2) if r.json["to"] == PHONE)
        assert answer.json["from"] == pool_number
        assert node.message(int(answer.ref or 0))["account"] == "main"


def test_a_refused_send_is_a_failed_message_listed_and_counted(
        smshost: Callable[..., Smshost], tmp_path: Path) -> None:
    with FakeBroker() as near, FakeBroker() as far:
        node = smshost(brokers=two_brokers(near, far), routes=TO_ECHO + UK_ONLY,
                       sinks=INBOX_QUEUE, plugin_dirs=(plugins(tmp_path),))
        mo = post_mo(node, "hello")
        detail = routed(node, mo)
        failed = node.api.get("/api/messages", params={"status": "failed"}).json()["messages"]
        assert [(m["remote"], m["body"], m["status"]) for m in failed] == [
            (NEW_NUMBER, "a new conversation", "failed")]
        message = node.message(failed[0]["id"])
        assert message["attrs"]["error_code"] == "no_route"
        assert message["attrs"]["error"].startswith("no outbound route matches")
        assert statuses(message) == ["failed"]
        assert message["events"][0]["detail"]["error_code"] == "no_route"
        assert detail["sent"][1]["message_id"] == message["id"]
        assert refused_count(node, "handler", "no_route") == 1.0
        # the API answers its caller, stores nothing, and counts it too
        api = node.send(to=NEW_NUMBER, text="from the API")
        assert api.status_code == 422 and api.json()["error"] == "no_route"
        assert refused_count(node, "api", "no_route") == 1.0
        assert len(node.api.get("/api/messages", params={"status": "failed"}).json()[
            "messages"]) == 1
        assert far.seen() == []


def test_a_reply_to_an_opted_out_texter_is_a_failed_message(
        smshost: Callable[..., Smshost], tmp_path: Path) -> None:
    with FakeBroker() as near, FakeBroker() as far:
        node = smshost(brokers=two_brokers(near, far), routes=TO_ECHO, sinks=INBOX_QUEUE,
                       plugin_dirs=(plugins(tmp_path, "def handle(ctx):\n"
                                                      "    ctx.reply('still here?')\n"),))
        stop = post_mo(node, "STOP", "mo-stop")
        node.wait_status(stop, "routed")
        near.wait_requests(1)  # the STOP confirmation (exempt) went out
        mo = post_mo(node, "one more thing", "mo-2")
        detail = routed(node, mo)
        (outcome,) = detail["sent"]
        assert outcome["status"] == "failed"
        message = node.message(outcome["message_id"])
        assert (message["status"], message["attrs"]["error_code"]) == ("failed", "opted_out")
        assert (message["broker"], message["account"], message["local"]) == (
            "gen", "main", OUR_NUMBER)
        assert refused_count(node, "handler", "opted_out") == 1.0
        assert len(near.seen()) == 1


def test_an_optout_confirmation_that_cannot_be_sent_is_a_failed_message(
        smshost: Callable[..., Smshost], tmp_path: Path) -> None:
    """HELP arrives through a broker that does not send (mt.enabled = false): the
    answer is refused, stored failed with the reason, and the HELP's event says so."""
    with FakeBroker() as near, FakeBroker() as far:
        node = smshost(brokers=two_brokers(near, far, near_extra="mt.enabled = false"),
                       routes=TO_ECHO + UK_ONLY, sinks=INBOX_QUEUE,
                       plugin_dirs=(plugins(tmp_path),))
        mo = post_mo(node, "HELP")
        detail = routed(node, mo)
        message = node.message(detail["reply"])
        assert (message["status"], message["attrs"]["error_code"]) == ("failed", "no_broker")
        assert detail["reply_error"] == message["attrs"]["error"]
        assert "not configured to send" in detail["reply_error"]
        assert refused_count(node, "optout", "no_broker") == 1.0
        assert near.seen() == [] and far.seen() == []
        events = node.api.get("/api/messages", params={"status": "failed"}).json()
        assert [m["id"] for m in events["messages"]] == [message["id"]]
        assert message["attrs"]["in_reply_to"] == mo
