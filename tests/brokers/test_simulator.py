"""The simulator broker: phones that text the server and receive its messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

from host.brokers.engine import OutboundMessage
from host.brokers.http import MtResponse
from host.core import Host
from host.messages import NewMessage
from tests.brokers.conftest import broker_config, serving, stored
from tests.conftest import ROOT, free_port

SIMULATOR = """
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "{scheme}"

[[brokers.accounts]]
id = "default"
local_address = "+15550100"
"""


def test_a_phone_texts_the_server(broker_host: Callable[..., Host]) -> None:
    host = broker_host(SIMULATOR.format(scheme="https"))
    with serving(host) as client:
        answer = client.post("/api/simulator/mo", json={"from": "+14155550123", "text": "hi"})
        listed = client.get("/api/messages", params={"direction": "in"}).json()["messages"]
        refused = client.post("/api/simulator/mo", json={"text": "nobody"})
        unauthenticated = client.post("/api/simulator/mo", json={"from": "+1"},
                                      headers={"Authorization": "Bearer wrong"})
    assert answer.status_code == 201
    (message,) = listed
    assert message["id"] == answer.json()["id"]
    assert (message["remote"], message["local"], message["body"], message["broker"]) == (
        "+14155550123", "+15550100", "hi", "sim")
    assert refused.status_code == 400 and unauthenticated.status_code == 401


def test_server_texts_a_phone_and_gets_a_receipt(broker_host: Callable[..., Host]) -> None:
    host = broker_host(SIMULATOR.format(scheme="https"))
    instance = host.brokers["sim"]
    account = instance.account_values(instance.accounts["default"])
    with serving(host) as client:
        async def queue() -> int:
            message, _ = await host.messages.add(NewMessage(
                direction="out", body="Your code is 1234", status="queued", broker="sim",
                local="+15550100", remote="+14155550123"))
            return message.id
        mid = client.portal.call(queue)  # type: ignore[union-attr]
        outbound = OutboundMessage(id=mid, ref=str(mid), to="+14155550123", from_="+15550100",
                                   text="Your code is 1234")
        request = instance.broker.build_mt_request(outbound, account)
        sent = client.request(request.method, urlsplit(request.url).path, content=request.body,
                              headers=request.headers)
        result = instance.broker.read_mt_response(
            MtResponse(sent.status_code, dict(sent.headers), sent.content), outbound, account)
        assert result.outcome == "accepted" and result.message_id

        async def record() -> None:  # what the outbound worker does after a send
            await host.store.write(lambda db: db.execute(
                "update messages set broker_message_id = ?, status = 'sent' where id = ?",
                [result.message_id, mid]))
            await host.receipts.adopt_orphans(mid)
        client.portal.call(record)  # type: ignore[union-attr]
        status = None
        for _ in range(100):  # the phone answers with a receipt shortly after
            status = client.get(f"/api/messages/{mid}").json()["status"]
            if status == "delivered":
                break
            time.sleep(0.02)
        inbox = client.get("/api/simulator/inbox", params={"number": "+14155550123"}).json()
    assert status == "delivered"
    (received,) = inbox["messages"]
    assert (received["text"], received["from"], received["ref"]) == (
        "Your code is 1234", "+15550100", str(mid))


def test_simulate_command_texts_a_running_server(tmp_path: Path) -> None:
    port = free_port()
    cfg = broker_config(tmp_path, SIMULATOR.format(scheme="http"),
                        public_url=f"http://127.0.0.1:{port}", port=port)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "host", "serve", "--config", str(cfg)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.1)
        result = subprocess.run(
            [sys.executable, "-m", "host", "simulate", "--config", str(cfg),
             "--from", "+14155550123", "Hello there"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("stored message 1 (broker sim)")
        listed = httpx2.get(f"http://127.0.0.1:{port}/api/messages",
                            headers={"Authorization": "Bearer test-token"}).json()
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert [m["body"] for m in listed["messages"]] == ["Hello there"]


def test_simulate_without_a_server_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    cfg = broker_config(tmp_path, SIMULATOR.format(scheme="http"))
    result = subprocess.run(
        [sys.executable, "-m", "host", "simulate", "--config", str(cfg), "--url",
         f"http://127.0.0.1:{port}", "--from", "+14155550123", "hi"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert f"cannot reach http://127.0.0.1:{port}" in result.stderr


def test_inbox_json_shape(broker_host: Callable[..., Host]) -> None:
    host = broker_host(SIMULATOR.format(scheme="https"))
    with serving(host) as client:
        assert client.post("/simulator/phone", content=b"[]").status_code == 400
        assert client.post("/simulator/phone", json={"to": "+1"}).status_code == 400
        ok = client.post("/simulator/phone", json={"to": "+14155550123", "text": "x"})
        inbox = client.get("/api/simulator/inbox").json()
        assert stored(client, host) == []
    assert ok.status_code == 201 and json.loads(ok.text)["id"].startswith("SIM")
    assert inbox["messages"][0]["to"] == "+14155550123"


def test_inbox_limit_and_unknown_parameters(broker_host: Callable[..., Host]) -> None:
    """The inbox read ?limit= and any misspelt parameter as nothing and listed 200: it
    takes limit (1-500) and refuses what it does not know, as the other lists do."""
    host = broker_host(SIMULATOR.format(scheme="https"))
    with serving(host) as client:
        for n in range(3):
            assert client.post("/simulator/phone", json={
                "to": "+14155550123", "text": f"m{n}"}).status_code == 201
        two = client.get("/api/simulator/inbox", params={"limit": "2"})
        answers = {q: client.get(f"/api/simulator/inbox?{q}")
                   for q in ("limit=0", "limit=501", "limit=ten", "lmit=2", "cursor=5")}
        every = client.get("/api/simulator/inbox", params={"number": "+14155550123",
                                                           "limit": "500"})
    assert [m["text"] for m in two.json()["messages"]] == ["m2", "m1"]
    assert len(every.json()["messages"]) == 3
    for query, answer in answers.items():
        assert answer.status_code == 400, query
        assert answer.json()["error"] == "bad_parameter"
    assert answers["limit=0"].json()["message"] == "limit must be an integer from 1 to 500"
    assert answers["lmit=2"].json()["message"] == \
        "unknown parameter 'lmit'; allowed: number, limit"
