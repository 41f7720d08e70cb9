"""What a load balancer reads (SPEC P10): /health answers 503 from SIGTERM on, while the
node drains (``server.drain_seconds``), and a broker path asked with
``?healthcheckignore=1`` answers 200 on both webhook paths (the fast path and ASGI),
storing, counting and logging nothing."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.conftest import free_port
from tests.nodes import MO_PATH, node_config, post_mo, start_node

STOP_WAIT = 15.0


def test_a_stopping_node_answers_503_on_every_listener(tmp_path: Path) -> None:
    cfg = node_config(tmp_path / "n", free_port(),
                      extra=f"\n[[listeners]]\nname = \"brokers\"\nport = {free_port()}\n")
    host = Host(load_settings(cfg), config_dir=cfg)
    api, brokers = host.settings.listeners[0], host.settings.listeners[1]
    with TestClient(host.app_for(api)) as inside, TestClient(host.app_for(brokers)) as outside:
        assert inside.get("/health").status_code == 200
        host.stopping = True
        for client in (inside, outside):
            response = client.get("/health")
            assert (response.status_code, response.json()["status"]) == (503, "stopping")
        assert inside.get("/health").json()["database"]["ok"] is True  # only stopping


def test_sigterm_drains_health_503_while_webhooks_go_on_then_closes(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    node = start_node(tmp_path / "n", port, extra="drain_seconds = 2.0")
    try:
        node.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        with httpx2.Client(trust_env=False, timeout=5) as client:
            health = client.get(f"{base}/health")
            stored = post_mo(client, base, "during-drain")
            early = time.monotonic() - signalled
        assert early < 2.0, "the check ran after the drain: the test proves nothing"
        assert (health.status_code, health.json()["status"]) == (503, "stopping")
        assert stored.status_code == 200
        assert node.proc.wait(timeout=STOP_WAIT) == 0
        assert time.monotonic() - signalled >= 2.0  # the listeners stayed open to the end
        assert "/health answers 503; the listeners close in 2 s" in node.output
    finally:
        node.stop()
    with sqlite3.connect(tmp_path / "n" / "data" / "smshost.db") as db:
        assert db.execute("select broker_message_id from messages").fetchall() == [
            ("during-drain",)]


def test_sigterm_without_drain_closes_at_once(tmp_path: Path) -> None:
    port = free_port()
    node = start_node(tmp_path / "n", port)
    try:
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=STOP_WAIT) == 0
        assert "SIGTERM received: finishing in-flight requests" in node.output
    finally:
        node.stop()


def metrics_of(client: httpx2.Client, base: str) -> str:
    return client.get(f"{base}/metrics", headers={"Authorization": "Bearer test-token"}).text


def broker_warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if "WARNING" in line and "smshost.brokers" in line]


@pytest.mark.parametrize("fast", ["true", "false"])
def test_broker_path_health_check_stores_counts_and_logs_nothing(
        tmp_path: Path, fast: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    counted = 'smshost_broker_webhooks_total{broker="gen"'
    node = start_node(tmp_path / "n", port, extra=f"webhook_fast_path = {fast}")
    try:
        with httpx2.Client(trust_env=False, timeout=5) as client:
            answers = [client.request(method, f"{base}{MO_PATH}?healthcheckignore=1")
                       for method in ("GET", "HEAD", "POST")]
            quiet_metrics, quiet_log = metrics_of(client, base), node.output
            # The same path without the flag, a body it cannot read: refused, counted, logged
            refused = client.post(f"{base}{MO_PATH}", content=b"{", headers={
                "Content-Type": "application/json"})
            loud_metrics = metrics_of(client, base)
    finally:
        node.proc.send_signal(signal.SIGTERM)
        node.proc.wait(timeout=STOP_WAIT)
        node.stop()
    assert [(a.status_code, a.text) for a in answers] == [
        (200, "alive primary"), (200, ""), (200, "alive primary")]
    assert counted not in quiet_metrics and broker_warnings(quiet_log) == []
    assert refused.status_code == 400
    assert counted in loud_metrics and len(broker_warnings(node.output)) == 1
    with sqlite3.connect(tmp_path / "n" / "data" / "smshost.db") as db:
        assert db.execute("select count(*) from messages").fetchone() == (0,)
