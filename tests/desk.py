"""A running node with the queue sink, a workgroup of agents and a fake clock, for the
desk's tests (tests/test_acd.py, tests/test_interactions.py).

SMS come in through the simulator broker and the real router; agents call the API with
tokens of their own; timers run only when a test advances the clock and ticks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.brokers.conftest import PUBLIC_URL, broker_config

CONFIG = {"Authorization": "Bearer test-token"}
WAIT = 10.0
OUR_NUMBER = "+15550100"
SIMULATOR = """
[[brokers]]
name = "simulator"
definition = "simulator"
encryption = "https"
[[brokers.accounts]]
id = "default"
local_address = "+15550100"
"""
AGENTS = ("alice", "bob", "carol")
SINKS = """
[queue]
capacity = {capacity}
offer_timeout = 30
missed_offers_limit = 2
wrapup = 10
sticky_seconds = 600
strategy = "{strategy}"
priorities = {{vip = 5}}

[[queue.queues]]
name = "support"
members = ["alice", "bob", "carol"]

[[queue.queues]]
name = "dave"
kind = "user"
"""
ROUTES = r"""
[[inbound]]
name = "vip"
type = "ani"
pattern = '\+1415555\d{4}'
destination = "queue"
target = "support"

[[inbound]]
name = "mine"
type = "ani"
pattern = '\+1650555\d{4}'
destination = "queue"
target = "dave"

[[inbound]]
name = "default"
destination = "queue"
target = "support"
default = true
"""


class Clock:
    """A clock the test moves (Unix seconds)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Desk:
    client: TestClient
    host: Host
    clock: Clock
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def sink(self) -> Any:
        return self.host.sinks["queue"]

    def call(self, fn: Any, *args: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)

    def text(self, sender: str, body: str) -> int:
        """A phone texts our number; routed before this returns; the message id."""
        answer = self.client.post("/api/simulator/mo", json={"from": sender, "text": body})
        assert answer.status_code == 201, answer.text
        assert self.call(self.host.router.idle, WAIT), "routing did not finish"
        return int(answer.json()["id"])

    def as_(self, login: str) -> dict[str, str]:
        return self.tokens[login]

    def status(self, login: str, status: str, reason: str = "") -> dict[str, Any]:
        answer = self.client.put("/api/agents/me/status", headers=self.as_(login),
                                 json={"status": status, "reason": reason})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def me(self, login: str) -> dict[str, Any]:
        answer = self.client.get("/api/agents/me", headers=self.as_(login))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def offers(self, login: str) -> list[int]:
        return [o["interaction"] for o in self.me(login)["offers"]]

    def tick(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        self.call(self.sink.tick)

    def act(self, login: str, interaction: int, action: str, **body: Any) -> Any:
        return self.client.post(f"/api/interactions/{interaction}/{action}",
                                headers=self.as_(login), json=body)

    def act_as_config(self, interaction: int, action: str, **body: Any) -> int:
        """An action with the configured token (admin: it supervises); the status."""
        return self.client.post(f"/api/interactions/{interaction}/{action}",
                                json=body).status_code

    def get(self, interaction: int) -> dict[str, Any]:
        answer = self.client.get(f"/api/interactions/{interaction}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def interaction_of(self, message: int) -> int:
        return int(self.call(self.host.store.read, lambda db: db.execute(
            "select interaction_id from queue_messages where message_id = ?",
            [message]).fetchone()[0]))


def config(tmp_path: Path, *, strategy: str = "longest_idle", capacity: int = 2) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = broker_config(tmp_path, SIMULATOR)
    (cfg / "sinks.toml").write_text(SINKS.format(strategy=strategy, capacity=capacity))
    (cfg / "routes.toml").write_text(ROUTES)
    return cfg


@contextmanager
def running(cfg: Path, clock: Clock | None = None) -> Iterator[Desk]:
    host = Host(load_settings(cfg), config_dir=cfg)
    clock = clock or Clock()
    with TestClient(host.app_for(), base_url=PUBLIC_URL, headers=CONFIG) as client:
        desk = Desk(client, host, clock)
        desk.sink.clock = clock
        for login in (*AGENTS, "dave"):
            made = client.post("/api/tokens", json={"user": login, "scopes": ["admin"]})
            assert made.status_code == 201, made.text
            desk.tokens[login] = {"Authorization": f"Bearer {made.json()['token']}"}
        yield desk
