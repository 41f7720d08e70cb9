"""The chat sink: one conversation per (our number, the party's number), read both ways
through the API; closed conversations make way for new ones and are purged; channels
are checked at load (SPEC S2, P2, P5).

SMS come in through the simulator broker (``POST /api/simulator/mo``) and are routed by
the real router; replies are queued with ``host.outbound.reply``. Every wait is bounded
by ``WAIT``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from host.models import to_timestamp
from host.sends import SendRequest
from tests.conftest import ROOT, base_config, run_cli

PLUGIN = ROOT / "plugins" / "sinks" / "chat"
WAIT = 10.0  # seconds: every wait on routing is bounded by this
AUTH = {"Authorization": "Bearer test-token"}
OUR_NUMBER = "+15550100"
ANN, BOB = "+14085550001", "+14085550002"

SIMULATOR = """
[[brokers]]
name = "simulator"
definition = "simulator"
encryption = "http"

[[brokers.accounts]]
id = "default"
local_address = "+15550100"
"""

ROUTES = r"""
[[inbound]]
name = "sales"
type = "body"
pattern = '(?i)buy.*'
destination = "chat"
target = "sales"

[[inbound]]
name = "default"
destination = "chat"
default = true
"""


@pytest.fixture
def chat_host(tmp_path: Path, config_dir: Callable[..., Path]) -> Callable[..., Host]:
    """``chat_host(sinks=..., routes=...)``: a host whose plugin folder holds copies of the
    shipped chat sink and simulator broker (other shipped plugins stay out)."""
    def make(sinks: str = "", routes: str = ROUTES) -> Host:
        plugins = tmp_path / "plugins"
        for kind in ("sinks", "brokers"):
            (plugins / kind).mkdir(parents=True, exist_ok=True)
        shutil.copytree(PLUGIN, plugins / "sinks" / "chat", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "plugins" / "brokers" / "simulator.xml",
                    plugins / "brokers" / "simulator.xml")
        smshost = base_config(tmp_path, extra="\n[purge]\nenabled = false\n")
        cfg = config_dir(smshost=smshost, brokers=SIMULATOR, routes=routes, sinks=sinks)
        return Host(load_settings(cfg), config_dir=cfg)
    return make


@contextmanager
def serving(host: Host) -> Iterator[TestClient]:
    with TestClient(host.app_for(), headers=AUTH) as client:
        yield client


def call(client: TestClient, fn: Callable[..., Any], *args: Any) -> Any:
    assert client.portal is not None
    return client.portal.call(fn, *args)


def text(client: TestClient, host: Host, sender: str, body: str) -> int:
    """A phone texts our number through the simulator broker; wait until it is routed."""
    answer = client.post("/api/simulator/mo", json={"from": sender, "text": body})
    assert answer.status_code == 201, answer.text
    assert call(client, host.router.idle, WAIT), "routing did not finish in time"
    return int(answer.json()["id"])


def reply(client: TestClient, host: Host, message_id: int, body: str) -> int:
    async def send() -> int:
        message = await host.messages.get(message_id)
        assert message is not None
        return (await host.outbound.reply(message, body)).id
    return int(call(client, send))


def conversations(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/api/conversations", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["conversations"])


def thread(client: TestClient, conversation_id: int) -> list[tuple[str, int, str, str, str]]:
    answer = client.get(f"/api/conversations/{conversation_id}")
    assert answer.status_code == 200, answer.text
    return [(m["direction"], m["id"], m["from"], m["to"], m["body"])
            for m in answer.json()["messages"]]


# -- conversations -------------------------------------------------------------------------

def test_sms_from_one_number_join_one_conversation(chat_host: Callable[..., Host]) -> None:
    host = chat_host()
    with serving(host) as client:
        first = text(client, host, ANN, "hello")
        other = text(client, host, BOB, "hi there")
        second = text(client, host, ANN, "are you there?")
        listed = conversations(client)
        ann_id = next(c["id"] for c in listed if c["remote"] == ANN)
        bob_id = next(c["id"] for c in listed if c["remote"] == BOB)
        ann, bob = thread(client, ann_id), thread(client, bob_id)
        detail = client.get(f"/api/conversations/{ann_id}").json()
        event = client.get(f"/api/messages/{second}").json()["events"][-1]

    assert [(c["remote"], c["local"], c["state"]) for c in listed] == [
        (BOB, OUR_NUMBER, "open"), (ANN, OUR_NUMBER, "open")]  # newest first
    assert ann == [("in", first, ANN, OUR_NUMBER, "hello"),
                   ("in", second, ANN, OUR_NUMBER, "are you there?")]
    assert bob == [("in", other, BOB, OUR_NUMBER, "hi there")]
    assert (detail["messages_in"], detail["messages_out"]) == (2, 0)
    assert (detail["broker"], detail["account"], detail["channel"]) == ("simulator",
                                                                         "default", "")
    assert detail["started_at"] <= detail["last_activity"]
    assert event["detail"]["conversation"] == ann_id and event["status"] == "routed"


def test_replies_appear_in_the_conversation_in_time_order(
        chat_host: Callable[..., Host]) -> None:
    host = chat_host()
    with serving(host) as client:
        question = text(client, host, ANN, "what are your hours?")
        bob_sms = text(client, host, BOB, "hi")
        answer = reply(client, host, question, "9 to 5")
        follow_up = text(client, host, ANN, "thanks")
        # Not part of any conversation: a number nobody is chatting with.
        async def stranger() -> int:
            return (await host.outbound.submit(SendRequest(to="+14085559999", text="ad"))).id
        call(client, stranger)
        listed = {c["remote"]: c for c in conversations(client)}
        ann, bob = thread(client, listed[ANN]["id"]), thread(client, listed[BOB]["id"])

    assert ann == [("in", question, ANN, OUR_NUMBER, "what are your hours?"),
                   ("out", answer, OUR_NUMBER, ANN, "9 to 5"),
                   ("in", follow_up, ANN, OUR_NUMBER, "thanks")]
    assert bob == [("in", bob_sms, BOB, OUR_NUMBER, "hi")]
    assert (listed[ANN]["messages_in"], listed[ANN]["messages_out"]) == (2, 1)
    assert "+14085559999" not in listed


def test_a_closed_conversation_makes_way_for_a_new_one(chat_host: Callable[..., Host]) -> None:
    host = chat_host()
    with serving(host) as client:
        first = text(client, host, ANN, "hello")
        (old,) = conversations(client)
        sink = host.sinks["chat"]
        assert call(client, sink.close, old["id"], "agent done")
        assert not call(client, sink.close, old["id"], "again")
        assert not call(client, sink.close, 999_999, "unknown")
        late = reply(client, host, first, "bye")  # nobody is chatting with Ann now
        second = text(client, host, ANN, "me again")
        opened = conversations(client, state="open")
        closed = conversations(client, state="closed")
        old_thread = thread(client, old["id"])
        new_thread = thread(client, opened[0]["id"])

    assert len(opened) == 1 and opened[0]["id"] != old["id"]
    assert [(c["id"], c["state"], c["close_reason"]) for c in closed] == [
        (old["id"], "closed", "agent done")]
    assert closed[0]["closed_at"] is not None
    assert old_thread == [("in", first, ANN, OUR_NUMBER, "hello")]
    assert new_thread == [("in", second, ANN, OUR_NUMBER, "me again")]
    assert late not in [m[1] for m in old_thread + new_thread]


def test_the_route_target_is_the_channel(chat_host: Callable[..., Host]) -> None:
    host = chat_host()
    with serving(host) as client:
        text(client, host, ANN, "Buy 3 apples")  # the "sales" route opens it
        text(client, host, ANN, "and a pear")     # the default route: joins it
        (conversation,) = conversations(client)
    assert conversation["channel"] == "sales" and conversation["messages_in"] == 2


def test_open_conversations_survive_a_restart(chat_host: Callable[..., Host]) -> None:
    host = chat_host()
    with serving(host) as client:
        first = text(client, host, ANN, "before")
    again = Host(host.settings, config_dir=host.config_dir)
    with serving(again) as client:
        answer = reply(client, again, first, "after the restart")
        second = text(client, again, ANN, "still here")
        (conversation,) = conversations(client)
        messages = thread(client, conversation["id"])
    assert [(m[0], m[1]) for m in messages] == [("in", first), ("out", answer), ("in", second)]


def test_routing_a_message_again_does_not_repeat_it(chat_host: Callable[..., Host]) -> None:
    host = chat_host()
    with serving(host) as client:
        message_id = text(client, host, ANN, "once")
        message = call(client, host.messages.get, message_id)
        again = call(client, host.sinks["chat"].deliver, message, host.router.routes[-1])
        (conversation,) = conversations(client)
        messages = thread(client, conversation["id"])
    assert again.outcome == "delivered" and again.data == {"conversation": conversation["id"]}
    assert len(messages) == 1 and conversation["messages_in"] == 1


# -- listing: filters and paging -----------------------------------------------------------

def test_filters_and_paging(chat_host: Callable[..., Host]) -> None:
    host = chat_host()
    numbers = [f"+1408555010{n}" for n in range(5)]
    with serving(host) as client:
        for number in numbers:
            text(client, host, number, "hi")
        page = client.get("/api/conversations", params={"limit": 2}).json()
        rest = client.get(page["next"]).json()
        last = client.get(rest["next"]).json()
        by_remote = conversations(client, remote=numbers[3])
        unencoded = client.get(f"/api/conversations?remote={numbers[3]}").json()
        by_local = conversations(client, local=OUR_NUMBER, state="open")
        nobody = conversations(client, local="+15550199")
        bad = [client.get("/api/conversations", params=p) for p in (
            {"state": "sleeping"}, {"limit": "0"}, {"limit": "501"}, {"before": "x"},
            {"color": "red"}, {"limit": "\u00b2"}, {"before": "\u00b2"})]

    remotes = [c["remote"] for c in page["conversations"] + rest["conversations"]
               + last["conversations"]]
    assert remotes == numbers[::-1]
    assert last["next"] is None
    assert [c["remote"] for c in by_remote] == [numbers[3]]
    assert [c["remote"] for c in unencoded["conversations"]] == [numbers[3]]
    assert len(by_local) == 5 and nobody == []
    assert [r.status_code for r in bad] == [400] * 7
    assert {r.json()["error"] for r in bad} == {"bad_parameter"}


def test_unknown_conversation_is_404(chat_host: Callable[..., Host]) -> None:
    with serving(chat_host()) as client:
        unknown = client.get("/api/conversations/424242")
        not_a_number = client.get("/api/conversations/abc")
        too_big = client.get("/api/conversations/99999999999999999999")
    assert unknown.status_code == 404 and too_big.status_code == 404
    assert unknown.json() == {"error": "not_found", "message": "no conversation with id 424242"}
    assert not_a_number.status_code == 404


@pytest.mark.parametrize("path", ["/api/conversations", "/api/conversations/1"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_chat_api_needs_the_token(chat_host: Callable[..., Host], path: str,
                                  headers: dict[str, str]) -> None:
    with TestClient(chat_host().app_for()) as client:
        answer = client.get(path, headers=headers)
        allowed = client.get(path, headers=AUTH)
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    assert allowed.status_code in (200, 404)  # past the token check


# -- configuration -------------------------------------------------------------------------

def test_channels_are_checked_at_load(chat_host: Callable[..., Host]) -> None:
    host = chat_host(sinks='[chat]\nchannels = ["support"]\n')
    host.load_plugins()
    problems = [r.error for r in host.plugins.failures]
    assert host.config_dir is not None
    assert problems == [f"{host.config_dir / 'routes.toml'}:2: inbound[0].target: no chat "
                        "channel 'sales'; channels: support (or leave the target empty)"]
    result = run_cli("check", "--config", str(host.config_dir))
    assert result.returncode == 1 and "no chat channel 'sales'" in result.stdout

    fine = chat_host(sinks='[chat]\nchannels = ["sales"]\n')
    fine.load_plugins()
    assert fine.plugins.failures == []  # the default route's empty target is fine too


def test_unknown_chat_setting_is_reported(chat_host: Callable[..., Host]) -> None:
    host = chat_host(sinks='[chat]\nchanels = ["sales"]\n')
    host.load_plugins()
    (problem,) = [r.error or "" for r in host.plugins.failures if r.kind == "sink settings"]
    assert problem.endswith("sinks.toml:2: chat.chanels: unknown key 'chanels'; did you mean "
                            "'channels'?")


# -- purge ---------------------------------------------------------------------------------

def test_purge_takes_closed_conversations_and_keeps_open_ones(
        chat_host: Callable[..., Host]) -> None:
    host = chat_host()
    later = to_timestamp(datetime.now(UTC) + timedelta(days=1))  # everything is older
    with serving(host) as client:
        first = text(client, host, ANN, "hello")
        reply(client, host, first, "hi Ann")
        text(client, host, BOB, "hello")
        listed = {c["remote"]: c["id"] for c in conversations(client)}
        assert call(client, host.sinks["chat"].close, listed[ANN], "done")
        counted = call(client, host.hooks.purge, host, later, 100, True).results
        purged = call(client, host.hooks.purge, host, later, 100, False).results
        left = conversations(client)
        gone = client.get(f"/api/conversations/{listed[ANN]}")
        bob = client.get(f"/api/conversations/{listed[BOB]}").json()
        rows = call(client, host.store.read, lambda db: db.execute(
            "select count(*) from chat_messages").fetchone()[0])
        bodies = call(client, host.store.read, lambda db: sorted(
            r["body"] for r in db.query("select body from messages")))
    assert {"chat_conversations": 1, "chat_messages": 2} in counted
    assert {"chat_conversations": 1, "chat_messages": 2} in purged
    assert [c["id"] for c in left] == [listed[BOB]] and gone.status_code == 404
    # Bob's conversation is open: its message is kept with its link (Ann's went). The
    # reply to Ann is still in the outbox (the phone's port is closed here): kept too.
    assert rows == 1 and bodies == ["hello", "hi Ann"]
    assert [m["body"] for m in bob["messages"]] == ["hello"]


def test_the_chat_sink_is_shipped(tmp_path: Path, config_dir: Callable[..., Path]) -> None:
    smshost = base_config(tmp_path).replace("shipped = false", "shipped = true")
    cfg = config_dir(smshost=smshost, brokers=SIMULATOR, routes=ROUTES)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    (record,) = [r for r in host.plugins.records if r.kind == "sink" and r.name == "chat"]
    assert record.ok and record.source == str(PLUGIN)
    assert type(host.sinks["chat"]).__name__ == "ChatSink"
    assert not [r for r in host.plugins.failures if "chat" in (r.error or "")]
