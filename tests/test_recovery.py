"""kill -9 between commit and routing: after a restart every message is routed, once (P5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.brokers.conftest import broker_config
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow

GATE = '''
import time
from pathlib import Path

LOG = Path({log!r})
BLOCK = Path({block!r})


def handle(ctx):
    with LOG.open("a") as out:
        out.write(ctx.body + "\\n")
    for _ in range(300):  # bounded: 30 s at most
        if not BLOCK.exists():
            break
        time.sleep(0.1)
    ctx.state["seen"] = True
'''


def start(cfg: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "host", "serve", "--config", str(cfg)],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait(condition, seconds: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.1)):
        try:
            if condition():
                return True
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    return False


def test_messages_committed_but_not_routed_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = broker_config(tmp_path, """
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "http"

[[brokers.accounts]]
id = "main"
local_address = "+15550100"
""", public_url=base, port=port)
    plugins = tmp_path / "plugins" / "handlers"
    plugins.mkdir(parents=True)
    log, block = tmp_path / "handled.log", tmp_path / "block"
    (plugins / "Gate.py").write_text(GATE.format(log=str(log), block=str(block)))
    text = (cfg / "smshost.toml").read_text().replace("dirs = []",
                                                      f'dirs = ["{tmp_path / "plugins"}"]')
    (cfg / "smshost.toml").write_text(text)
    (cfg / "routes.toml").write_text('[[inbound]]\nname = "gate"\ndestination = "handler"\n'
                                     'target = "Gate"\ndefault = true\n')
    api = httpx2.Client(base_url=base, headers={"Authorization": "Bearer test-token"},
                        timeout=10, trust_env=False)
    block.touch()
    server = start(cfg, tmp_path)
    try:
        assert wait(lambda: api.get("/health").status_code == 200)
        ids = []
        for text in ("first", "second", "third"):  # one sender: one lane, in order
            answer = api.post("/api/simulator/mo", json={"from": "+14155550123", "text": text})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        assert wait(lambda: log.exists() and log.read_text() == "first\n")
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        statuses = [api_status(tmp_path, i) for i in ids]
        assert statuses == ["received"] * 3  # committed, none routed

        block.unlink()
        server = start(cfg, tmp_path)
        assert wait(lambda: all(api.get(f"/api/messages/{i}").json()["status"] == "routed"
                                for i in ids))
        routed_events = [[e for e in api.get(f"/api/messages/{i}").json()["events"]
                          if e["status"] == "routed"] for i in ids]
    finally:
        server.terminate()
        server.wait(timeout=15)
        api.close()
    assert [len(events) for events in routed_events] == [1, 1, 1]
    # "first" was in the handler at the kill (at-least-once for that one), then once each
    assert log.read_text().splitlines() == ["first", "first", "second", "third"]


def api_status(tmp_path: Path, message_id: int) -> str:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "data" / "smshost.db")
    try:
        return str(conn.execute("select status from messages where id = ?",
                                [message_id]).fetchone()[0])
    finally:
        conn.close()
