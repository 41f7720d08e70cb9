"""Recovery of the desk (issue 14 point 6, SPEC P5): offers, statuses and wrap-ups are
stored deadlines. In process, a node stopped with an offer pending and a wrap-up running
comes back and (fake clock) expires and re-offers from the stored deadlines; a real
server killed with SIGKILL does the same with its own clock, after an agent's reply
reached the simulator phone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from tests.brokers.conftest import broker_config
from tests.conftest import ROOT, free_port
from tests.desk import ROUTES, SIMULATOR, Clock, config, running


def test_a_pending_offer_and_a_wrapup_resume_after_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    clock = Clock()
    with running(cfg, clock) as desk:
        desk.status("alice", "available")
        desk.status("bob", "available")
        first = desk.interaction_of(desk.text("+14085550001", "one"))
        desk.act("alice", first, "accept")
        desk.act("alice", first, "disconnect")  # alice in wrap-up for 10 s
        pending = desk.interaction_of(desk.text("+14085550002", "two"))
        assert desk.offers("bob") == [pending]  # deadline in 30 s
    with running(cfg, clock) as desk:  # the stored state, nothing in memory
        assert desk.offers("bob") == [pending]
        assert desk.me("alice")["wrapup_until"] is not None
        desk.tick(11)
        assert desk.me("alice")["wrapup_until"] is None
        assert desk.offers("bob") == [pending]
        desk.tick(20)  # bob's offer expired while... now: goes to alice
        assert (desk.offers("bob"), desk.offers("alice")) == ([], [pending])


def wait(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    for _ in range(int(seconds / 0.1)):
        try:
            if condition():
                return True
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_kill_9_with_an_offer_pending_then_it_is_offered_again(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = broker_config(tmp_path, SIMULATOR.replace("https", "http"), public_url=base,
                        port=port)
    (cfg / "sinks.toml").write_text(
        '[queue]\nwrapup = 0\n\n[[queue.queues]]\nname = "support"\n'
        'members = ["alice", "bob"]\n')
    (cfg / "routes.toml").write_text(ROUTES.replace('target = "dave"', 'target = "support"'))
    admin = {"Authorization": "Bearer test-token"}

    logs = tmp_path / "server.log"  # both runs' logs, shown when the test fails

    def start() -> subprocess.Popen[bytes]:
        with logs.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "host", "serve", "--config", str(cfg)], cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=out)

    server = start()
    try:
        assert wait(lambda: httpx2.get(f"{base}/health").status_code == 200)
        tokens = {login: {"Authorization": "Bearer " + httpx2.post(
            f"{base}/api/tokens", headers=admin, json={"user": login, "scopes": ["admin"]}
        ).json()["token"]} for login in ("alice", "bob")}
        httpx2.put(f"{base}/api/agents/me/status", headers=tokens["alice"],
                   json={"status": "available"})
        httpx2.post(f"{base}/api/simulator/mo", headers=admin,
                    json={"from": "+14085550001", "text": "where is my parcel"})

        def offer() -> list[int]:
            return [o["interaction"] for o in httpx2.get(
                f"{base}/api/agents/me", headers=tokens["alice"]).json()["offers"]]
        assert wait(lambda: offer() != [])
        (interaction,) = offer()
        httpx2.post(f"{base}/api/interactions/{interaction}/accept", headers=tokens["alice"])
        sent = httpx2.post(f"{base}/api/interactions/{interaction}/reply",
                           headers=tokens["alice"], json={"text": "On my way"})
        assert sent.status_code == 201, sent.text
        assert wait(lambda: any(m["text"] == "On my way" for m in httpx2.get(
            f"{base}/api/simulator/inbox", headers=admin).json()["messages"]))
        httpx2.post(f"{base}/api/interactions/{interaction}/disconnect",
                    headers=tokens["alice"])
        short = httpx2.put(f"{base}/api/queues/support/settings", headers=admin,
                           json={"offer_timeout": 1})
        assert short.json()["effective"]["offer_timeout"] == 1, short.text
        httpx2.put(f"{base}/api/agents/me/status", headers=tokens["bob"],
                   json={"status": "available"})
        httpx2.put(f"{base}/api/agents/me/status", headers=tokens["alice"],
                   json={"status": "away"})
        httpx2.post(f"{base}/api/simulator/mo", headers=admin,
                    json={"from": "+14085550002", "text": "second"})
        bob = {"Authorization": tokens["bob"]["Authorization"]}
        assert wait(lambda: httpx2.get(f"{base}/api/agents/me", headers=bob).json()["offers"])
        (pending,) = httpx2.get(f"{base}/api/agents/me", headers=bob).json()["offers"]
        server.send_signal(signal.SIGKILL)  # an offer pending, its deadline 1 s away
        server.wait(timeout=15)
        server = start()
        assert wait(lambda: httpx2.get(f"{base}/health").status_code == 200)

        def offered_again() -> bool:
            events = httpx2.get(f"{base}/api/interactions/{pending['interaction']}",
                                headers=admin).json()["events"]
            expired = [e for e in events if e["detail"].get("offer") == "expired"]
            return bool(expired) and events[-1]["state"] in ("offered", "waiting") and \
                sum(e["state"] == "offered" for e in events) >= 2
        assert wait(offered_again, 40), (httpx2.get(  # expired from its stored deadline, offered again
            f"{base}/api/interactions/{pending['interaction']}", headers=admin).json()["events"],
            logs.read_text()[-6000:])
    finally:
        server.terminate()
        server.wait(timeout=15)
