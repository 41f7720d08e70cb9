"""The interactions API (issue 14 point 3) through HTTP with agents' tokens and
sessions: accept, decline, pick up, reply, transfer, disconnect, notes; ownership
(403 naming the holder) and states (409 naming the state); later SMS joining the open
interaction; the live streams (point 7) in order and resumed with Last-Event-ID."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.desk import Desk, config, running


@pytest.fixture
def desk(tmp_path: Path) -> Any:
    with running(config(tmp_path)) as found:
        yield found


def offered_to_alice(desk: Desk, sender: str = "+14085550001") -> int:
    desk.status("alice", "available")
    interaction = desk.interaction_of(desk.text(sender, "My order never arrived"))
    assert desk.offers("alice") == [interaction]
    return interaction


def test_accept_reply_note_and_disconnect(desk: Desk) -> None:
    interaction = offered_to_alice(desk)
    early = desk.act("alice", interaction, "reply", text="too soon")
    assert early.status_code == 409 and "is offered" in early.json()["message"]
    accepted = desk.act("alice", interaction, "accept")
    assert accepted.status_code == 200 and accepted.json()["state"] == "connected"
    sent = desk.act("alice", interaction, "reply", text="Sorry! Which order?")
    assert sent.status_code == 201, sent.text
    assert sent.json()["message"]["segments"] == 1
    assert sent.json()["message"]["to"] == "+14085550001"
    follow = desk.text("+14085550001", "Order 42")  # joins the open interaction
    assert desk.interaction_of(follow) == interaction
    noted = desk.act("alice", interaction, "notes", text="VIP customer")
    assert noted.status_code == 201
    shown = desk.client.get(f"/api/interactions/{interaction}", headers=desk.as_("alice"))
    body = shown.json()
    assert [(m["direction"], m["text"]) for m in body["messages"]] == [
        ("in", "My order never arrived"), ("out", "Sorry! Which order?"), ("in", "Order 42")]
    assert body["notes"][0]["author"] == "alice" and body["notes"][0]["text"] == "VIP customer"
    assert body["agent"] == "alice" and body["offer"] is None
    done = desk.act("alice", interaction, "disconnect")
    assert done.json()["state"] == "disconnected"
    assert [e["state"] for e in done.json()["events"]] == [
        "waiting", "offered", "connected", "connected", "disconnected"]
    again = desk.act("alice", interaction, "disconnect")
    assert again.status_code == 409 and "is disconnected" in again.json()["message"]
    new = desk.interaction_of(desk.text("+14085550001", "one more thing"))
    assert new != interaction  # a closed interaction stays closed


def test_ownership_is_checked_and_supervisors_act_on_any(desk: Desk) -> None:
    interaction = offered_to_alice(desk)
    for action, body in (("accept", {}), ("reply", {"text": "x"}), ("notes", {"text": "x"}),
                         ("transfer", {"workgroup": "support"}), ("disconnect", {})):
        refused = desk.act("bob", interaction, action, **body)
        assert refused.status_code == 403, (action, refused.text)
        assert "alice" in refused.json()["message"]
    hidden = desk.client.get(f"/api/interactions/{interaction}", headers=desk.as_("bob"))
    assert hidden.status_code == 403
    assert desk.client.get("/api/interactions", headers=desk.as_("bob")).json()[
        "interactions"] == []
    mine = desk.client.get("/api/interactions", headers=desk.as_("alice")).json()
    assert [i["id"] for i in mine["interactions"]] == [interaction]
    assert mine["interactions"][0]["preview"] == "My order never arrived"
    # the configured token supervises: it may disconnect anyone's
    assert desk.act_as_config(interaction, "notes", text="checked") == 201
    assert desk.client.get("/api/interactions/999").status_code == 404
    assert desk.client.get("/api/interactions?state=nope").status_code == 400


def test_pickup_from_ones_user_queue_and_by_a_supervisor(desk: Desk) -> None:
    mine = desk.interaction_of(desk.text("+16505550001", "for dave"))  # dave's queue
    theirs = desk.interaction_of(desk.text("+14085550009", "for support"))
    listed = desk.client.get("/api/interactions", headers=desk.as_("dave")).json()
    assert [i["id"] for i in listed["interactions"]] == [mine]
    refused = desk.act("dave", theirs, "pickup")
    assert refused.status_code == 403 and "queue support" in refused.json()["message"]
    picked = desk.act("dave", mine, "pickup")
    assert picked.json()["state"] == "connected" and picked.json()["agent"] == "dave"
    again = desk.act("dave", mine, "pickup")
    assert again.status_code == 409 and "is connected" in again.json()["message"]
    assert desk.act("alice", mine, "notes", text="x").status_code == 403


def test_transfers_keep_the_history(desk: Desk) -> None:
    interaction = offered_to_alice(desk)
    desk.act("alice", interaction, "accept")
    desk.status("bob", "available")
    bad = desk.act("alice", interaction, "transfer", agent="bob", workgroup="support")
    assert bad.status_code == 400
    assert desk.act("alice", interaction, "transfer", agent="nobody").status_code == 404
    moved = desk.act("alice", interaction, "transfer", agent="bob")
    assert moved.status_code == 200, moved.text
    assert moved.json()["queue"] == "bob" and moved.json()["offer"]["agent"] == "bob"
    assert desk.offers("bob") == [interaction]  # a transfer to an agent: an offer to it
    desk.act("bob", interaction, "accept")
    back = desk.act("bob", interaction, "transfer", workgroup="support")
    assert back.json()["queue"] == "support"
    transfers = [e["detail"]["transfer"] for e in back.json()["events"]
                 if "transfer" in e["detail"]]
    assert [(t["from"], t["to"], t["agent"]) for t in transfers] == [
        ("support", "bob", "alice"), ("bob", "support", "bob")]
    assert [m["text"] for m in back.json()["messages"]] == ["My order never arrived"]


def test_an_agent_session_works_like_a_token(desk: Desk) -> None:
    set_password = desk.client.put("/api/users/alice", json={"password": "correct horse"})
    assert set_password.status_code == 200, set_password.text
    signed = desk.client.post("/api/session", headers={"Authorization": ""},
                              json={"login": "alice", "password": "correct horse"})
    assert signed.status_code == 200, signed.text
    csrf = {"X-CSRF-Token": signed.json()["csrf_token"], "Authorization": ""}
    status = desk.client.put("/api/agents/me/status", headers=csrf,
                             json={"status": "available"})
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "available"
    assert desk.client.put("/api/agents/me/status", headers=csrf,
                           json={"status": "busy"}).status_code == 400


def test_signing_out_sets_the_agent_offline_and_returns_its_interactions(
        desk: Desk) -> None:
    assert desk.client.put("/api/users/alice", json={"password": "correct horse"}
                           ).status_code == 200
    signed = desk.client.post("/api/session", headers={"Authorization": ""},
                              json={"login": "alice", "password": "correct horse"})
    csrf = {"X-CSRF-Token": signed.json()["csrf_token"], "Authorization": ""}
    assert desk.client.put("/api/agents/me/status", headers=csrf,
                           json={"status": "available"}).status_code == 200
    held = desk.interaction_of(desk.text("+14155550100", "hello"))
    assert desk.act("alice", held, "accept").status_code == 200
    assert desk.get(held)["state"] == "connected"
    assert desk.client.delete("/api/session", headers=csrf).status_code == 204
    alice = desk.me("alice")
    assert (alice["status"], alice["reason"]) == ("offline", "signed out")
    back = desk.get(held)
    assert back["state"] in ("waiting", "offered") and back["agent"] != "alice"
    # an agent signing out again (already offline) changes nothing
    signed = desk.client.post("/api/session", headers={"Authorization": ""},
                              json={"login": "alice", "password": "correct horse"})
    csrf = {"X-CSRF-Token": signed.json()["csrf_token"], "Authorization": ""}
    assert desk.client.delete("/api/session", headers=csrf).status_code == 204
    assert desk.me("alice")["status"] == "offline"


def test_a_supervisor_sets_an_agents_own_capacity(desk: Desk) -> None:
    desk.status("alice", "available")
    default = desk.me("alice")["capacity"]
    path = "/api/agents/alice/capacity"
    assert desk.client.put(path, json={"capacity": default + 3}).json()["capacity"] == \
        default + 3
    for bad in ({"capacity": 0}, {"capacity": 1001}, {"capacity": "2"}, {"capacity": True},
                {}):
        refused = desk.client.put(path, json=bad)
        assert refused.status_code == 400 and "capacity" in refused.json()["message"], bad
    agent = desk.client.put(path, headers=desk.as_("bob"), json={"capacity": 9})
    assert agent.status_code == 403  # an agent (its token's scopes cut to its role)
    assert desk.client.put(path, json={"capacity": None}).json()["capacity"] == default
    assert desk.client.put("/api/agents/nobody/capacity", json={"capacity": 2}
                           ).status_code == 404
    # one seat: a second waiting interaction is not offered to alice until she is free
    assert desk.client.put(path, json={"capacity": 1}).status_code == 200
    for who in ("bob", "carol"):
        assert desk.client.put(f"/api/agents/{who}/status",
                               json={"status": "offline"}).status_code == 200
    first = desk.interaction_of(desk.text("+14155550101", "one"))
    second = desk.interaction_of(desk.text("+14155550102", "two"))
    assert desk.offers("alice") == [first] and desk.get(second)["state"] == "waiting"


def test_agents_list_and_a_supervisor_setting_a_status(desk: Desk) -> None:
    desk.status("alice", "away", "lunch")
    listed = desk.client.get("/api/agents").json()["agents"]
    alice = next(a for a in listed if a["login"] == "alice")
    assert (alice["status"], alice["reason"], alice["workgroups"]) == (
        "away", "lunch", ["support"])
    put = desk.client.put("/api/agents/bob/status", json={"status": "available"})
    assert put.status_code == 200 and put.json()["status"] == "available"
    assert desk.client.put("/api/agents/bob/status", headers=desk.as_("alice"),
                           json={"status": "offline"}).status_code == 403
    assert desk.client.get("/api/agents/me").status_code == 404  # the config token
    assert desk.client.put("/api/agents/nobody/status",
                           json={"status": "available"}).status_code == 404


def read_events(desk: Desk, path: str, headers: dict[str, str], count: int
                ) -> list[tuple[int, str, dict[str, Any]]]:
    """The first ``count`` events of a stream (the stored ones a Last-Event-ID asks)."""
    found: list[tuple[int, str, dict[str, Any]]] = []
    with desk.client.stream("GET", path, headers=headers) as answer:
        assert answer.status_code == 200
        event: dict[str, str] = {}
        for line in answer.iter_lines():
            if line.startswith(("id: ", "event: ", "data: ")):
                key, _, value = line.partition(": ")
                event[key] = value
            elif not line and "id" in event:
                found.append((int(event["id"]), event["event"], json.loads(event["data"])))
                event = {}
                if len(found) == count:
                    break
    return found


def test_the_agent_stream_in_order_and_resumed(desk: Desk) -> None:
    interaction = offered_to_alice(desk)
    desk.act("alice", interaction, "accept")
    desk.act("alice", interaction, "reply", text="hello")
    events = read_events(desk, "/api/agents/me/events",
                         {**desk.as_("alice"), "Last-Event-ID": "0"}, 8)
    kinds = [kind for _, kind, _ in events]
    # alice available; the SMS offered to her, her load and support's line
    assert kinds[:4] == ["status", "offer", "status", "queue"]
    assert "offer" in kinds and kinds.index("offer") < kinds.index("message")
    ids = [i for i, _, _ in events]
    assert ids == sorted(ids)
    offer = next(data for _, kind, data in events if kind == "offer")
    assert offer["interaction"] == interaction and offer["preview"] == "My order never arrived"
    message = next(data for _, kind, data in events if kind == "message")
    assert message["message"]["text"] == "hello"
    resumed = read_events(desk, "/api/agents/me/events",
                          {**desk.as_("alice"), "Last-Event-ID": str(ids[3])}, 2)
    assert [i for i, _, _ in resumed] == ids[4:6]
    bob = read_events(desk, "/api/agents/me/events",
                      {**desk.as_("bob"), "Last-Event-ID": "0"}, 1)
    assert bob[0][1] == "queue"  # the queue he is in, never alice's offers
    bad = desk.client.get("/api/agents/me/events",
                          headers={**desk.as_("alice"), "Last-Event-ID": "x"})
    assert bad.status_code == 400


def test_the_supervisors_stream(desk: Desk) -> None:
    desk.text("+14085550001", "waiting")
    events = read_events(desk, "/api/queues/events", {"Last-Event-ID": "0"}, 1)
    (_, kind, data), = events
    assert kind == "queue" and data["queue"] == "support" and data["waiting"] == 1
    assert data["agents"] == {"available": 0, "away": 0, "offline": 3}
    assert desk.client.get("/api/queues/events",
                           headers=desk.as_("alice")).status_code == 403
