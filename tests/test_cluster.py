"""Several nodes on one database (issue 17 point 2; host.cluster): node rows and
heartbeats, sends in flight owned by their node and adopted only when it died (flagged
possibly_duplicated), leases (a timer on one node), the rate shared, /health listing the
nodes. Two Hosts in one event loop on the same PostgreSQL database (two data
directories); a fake clock drives heartbeats and leases (no sleeps: the only waits are
for a real broker's requests, bounded)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from host.brokers.pacing import Pacer
from host.cluster import Cluster
from host.config import load_settings
from host.config.cluster import ClusterSettings
from host.core import Host
from host.errors import ConfigError
from host.sends import SendRequest
from tests.outbound.conftest import (
    PHONE,
    FakeBroker,
    Reply,
    Seen,
    free_port,
    generic_ok,
    generic_toml,
    outbox_toml,
    write_config,
)


class Clock:
    """Unix seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class HeldBroker:
    """Answers at once, except texts starting with "inflight" while ``holding``."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.holding.set()
        self.never = threading.Event()
        self.fake = FakeBroker(self.respond)

    def respond(self, seen: Seen, n: int) -> Reply:
        reply = generic_ok(seen, n)
        if self.holding.is_set() and (seen.text or "").startswith("inflight"):
            reply.hold = self.never
        return reply


@pytest.fixture
def broker() -> Iterator[HeldBroker]:
    found = HeldBroker()
    with found.fake:
        yield found
        found.never.set()


def node(root: Path, gateway: str, url: str | None, *, broker_extra: str = "",
         clock: Clock | None = None, sinks: str = "") -> Host:
    store = f'\n[store]\nurl = "{url}"\n' if url else ""
    cfg = write_config(root, free_port(), brokers=generic_toml(gateway, extra=broker_extra),
                       outbox=outbox_toml(max_in_flight=4), shutdown_timeout=0.3,
                       extra=store, sinks=sinks)
    # The queue sink's migrations are not ready for PostgreSQL yet (sqlite_master).
    smshost = cfg / "smshost.toml"
    smshost.write_text(smshost.read_text().replace(
        "entry_points = false", 'entry_points = false\ndisabled = ["queue"]'))
    host = Host(load_settings(cfg), config_dir=cfg)
    if clock is not None:
        host.cluster.clock = clock
    return host


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Wait for real I/O (a broker's request, a send's outcome): at most 10 s."""
    for _ in range(500):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def outbox_row(host: Host, message_id: int) -> Callable[[], Awaitable[Any]]:
    async def read() -> Any:
        return await host.store.read(lambda db: db.execute(
            "select in_flight, claimed_by, recovered from outbox where message_id = ?",
            [message_id]).fetchone())
    return read


async def status_of(host: Host, message_id: int) -> tuple[str, dict[str, Any]]:
    message = await host.messages.get(message_id)
    assert message is not None
    return message.status, message.attrs


# -- sends in flight ---------------------------------------------------------------------


def test_a_live_nodes_send_is_left_alone_and_a_dead_ones_adopted_flagged(
        tmp_path: Path, pg_url: str, broker: HeldBroker) -> None:
    clock = Clock()
    a = node(tmp_path / "a", broker.fake.url, pg_url, clock=clock)
    b = node(tmp_path / "b", broker.fake.url, pg_url, clock=clock)

    async def main() -> None:
        async with a.running():
            queued = await a.send(SendRequest(to=PHONE, text="inflight 1"))
            message_id = queued.messages[0].id
            # stored claimed by a (a token, a free slot: host.outbound), not by its loop
            assert tuple(await outbox_row(a, message_id)()) == (1, a.cluster.node_id, 0)
            await until(lambda: asyncio.sleep(0, len(broker.fake.seen()) == 1), "the send")
            async with b.running():  # its start recovers nothing of a live node's
                await b.cluster.beat()  # nor does its heartbeat
                assert b.cluster.alive_count == 2
                assert tuple(await outbox_row(b, message_id)()) == (1, a.cluster.node_id, 0)
                assert await status_of(b, message_id) == ("sending", {})
                clock.now += a.settings.cluster.node_timeout - 1  # a late, not dead
                await b.cluster.beat()
                assert tuple(await outbox_row(b, message_id)()) == (1, a.cluster.node_id, 0)

                a.cluster.halt()  # a dies: no more heartbeats, its row stays
                clock.now += 2
                broker.holding.clear()
                await b.cluster.beat()
                assert b.cluster.alive_count == 1

                async def sent() -> bool:
                    return (await status_of(b, message_id))[0] == "sent"
                await until(sent, "b to send it again")
                status, attrs = await status_of(b, message_id)
                assert attrs == {"possibly_duplicated": True}
                assert broker.fake.refs() == {str(message_id): 2}
                assert await outbox_row(b, message_id)() is None
    asyncio.run(main())


def test_a_node_that_never_came_back_and_claims_of_before_are_adopted_at_start(
        tmp_path: Path, store_url: str | None, broker: HeldBroker) -> None:
    """On both stores: rows claimed by a node with no row, by none (claimed before
    nodes had ids) or by the node that served from this data directory before (killed:
    its heartbeat still fresh) are recovered at the start, flagged; a clean stop leaves
    no row."""
    clock = Clock()  # stands still: "killed" would stay alive but for its home
    host = node(tmp_path / "a", broker.fake.url, store_url, clock=clock)
    broker.holding.clear()

    async def main() -> None:
        async with host.running(background=False):
            ids = []
            for text in ("one", "two", "three"):
                queued = await host.send(SendRequest(to=PHONE, text=text))
                ids.append(queued.messages[0].id)

            def crashed(db: Any) -> None:
                now = clock.now
                db.conn.execute("insert into nodes (id, name, started_at, heartbeat_at, "
                                "home) values ('killed', 'h/1', ?, ?, ?)",
                                [now, now, f"{socket.gethostname()}:{host.data_dir.resolve()}"])
                db.conn.execute(
                    "update outbox set in_flight = 1, claimed_by = case message_id "
                    "when ? then 'gone-node' when ? then 'killed' end", ids[:2])
            await host.store.write(crashed)
        async with host.running():
            assert [n["this"] for n in await host.cluster.nodes()] == [True]
            for message_id in ids:
                async def sent(message_id: int = message_id) -> bool:
                    return (await status_of(host, message_id))[0] == "sent"
                await until(sent, "the recovered send")
                assert (await status_of(host, message_id))[1] == {"possibly_duplicated": True}
        async with host.running(background=False):
            assert await host.store.read(lambda db: db.execute(
                "select count(*) from nodes").fetchone()[0]) == 0
    asyncio.run(main())


# -- webhook deliveries ------------------------------------------------------------------

# A target nobody answers (port 9, discard): a delivery there stays pending.
NOWHERE = ('[webhook.targets.app]\nurl = "http://127.0.0.1:9/hook"\n'
           'secret = "a-secret-of-the-test"\n')


def test_a_dead_nodes_pending_webhook_deliveries_are_adopted_not_a_live_ones(
        tmp_path: Path, pg_url: str, broker: HeldBroker) -> None:
    clock = Clock()
    a = node(tmp_path / "a", broker.fake.url, pg_url, clock=clock, sinks=NOWHERE)
    b = node(tmp_path / "b", broker.fake.url, pg_url, clock=clock, sinks=NOWHERE)

    def owners(db: Any) -> dict[str, str | None]:
        return {r[0]: r[1] for r in db.execute(
            "select route, node from webhook_deliveries order by id").fetchall()}

    async def main() -> None:
        async with a.running(), b.running():
            assert b.sink("webhook") is not None, b.plugins.failures

            def pending(db: Any) -> None:
                for route, owner in (("of-a", a.cluster.node_id), ("of-gone", "gone"),
                                     ("of-old", None)):
                    db.conn.execute(
                        "insert into webhook_deliveries (message_id, route, target, "
                        "payload, status, next_attempt_at, created_at, updated_at, node) "
                        "values (null, ?, 'app', '{}', 'pending', '2999-01-01T00:00:00Z', "
                        "'x', 'x', ?)", [route, owner])
            await a.store.write(pending)
            await b.cluster.beat()
            mine = b.cluster.node_id
            assert await b.store.read(owners) == {"of-a": a.cluster.node_id,
                                                  "of-gone": mine, "of-old": mine}
            a.cluster.halt()
            clock.now += a.settings.cluster.node_timeout + 1
            await b.cluster.beat()
            assert set((await b.store.read(owners)).values()) == {mine}
    asyncio.run(main())


# -- leases ------------------------------------------------------------------------------


def test_a_lease_is_held_by_one_node_until_it_runs_out_or_is_given_back(
        tmp_path: Path, store_url: str | None) -> None:
    """Two nodes' clusters on one store (both stores): a second Cluster on the host's."""
    clock = Clock()
    host = node(tmp_path / "a", "http://127.0.0.1:9", store_url, clock=clock)
    ttl = host.settings.cluster.node_timeout

    async def main() -> None:
        async with host.running(background=False):
            one = Cluster(host.store, host.settings.cluster, clock)
            two = Cluster(host.store, host.settings.cluster, clock)
            await one.start()
            await two.start()
            try:
                assert await one.lease("timer") is True
                assert await two.lease("timer") is False
                assert await one.holds("timer") and not await two.holds("timer")
                clock.now += ttl - 1
                await one.beat()  # renews what it holds
                clock.now += 2  # past the first expiry: renewed, still one's
                assert await two.lease("timer") is False
                one.halt()  # one dies: its lease runs out after ttl
                clock.now += ttl - 2
                assert await two.lease("timer") is False
                clock.now += 3
                assert await two.holds("timer") is True
                assert await one.holds("timer") is False  # it would have to ask again
                await two.stop()  # a clean stop gives it back at once
                assert await one.lease("timer") is True
            finally:
                await one.stop()
                await two.stop()
    asyncio.run(main())


def test_a_cluster_timer_runs_on_exactly_one_of_two_hosts(tmp_path: Path, pg_url: str,
                                                          broker: HeldBroker) -> None:
    clock = Clock()
    a = node(tmp_path / "a", broker.fake.url, pg_url, clock=clock)
    b = node(tmp_path / "b", broker.fake.url, pg_url, clock=clock)

    async def main() -> None:
        async with a.running(), b.running():
            gates = {"purge": (a.purger.gate, b.purger.gate),
                     "callbacks": (a.callbacks.gate, b.callbacks.gate)}
            for name, (on_a, on_b) in gates.items():
                assert on_a is not None and on_b is not None
                held = [await on_a(), await on_b()]
                assert sorted(held) == [False, True], name
            holder, other = (a, b) if await a.cluster.holds("purge") else (b, a)
            holder.cluster.halt()
            clock.now += a.settings.cluster.node_timeout + 1
            await other.cluster.beat()
            assert other.purger.gate is not None and await other.purger.gate()
            assert other.callbacks.gate is not None and await other.callbacks.gate()
    asyncio.run(main())


# -- the rate ----------------------------------------------------------------------------


def test_an_accounts_rate_is_shared_by_the_live_nodes(tmp_path: Path, pg_url: str,
                                                      broker: HeldBroker) -> None:
    clock = Clock()
    rate = 'mt.rate = 10\n'
    a = node(tmp_path / "a", broker.fake.url, pg_url, broker_extra=rate, clock=clock)
    b = node(tmp_path / "b", broker.fake.url, pg_url, broker_extra=rate, clock=clock)
    key = ("gen", "main")

    async def main() -> None:
        async with a.running():
            assert a.sender.pacer.rate(key) == 10
            async with b.running():
                await a.cluster.beat()
                assert (a.sender.pacer.rate(key), b.sender.pacer.rate(key)) == (5, 5)
            await a.cluster.beat()  # b stopped cleanly: its row is gone
            assert a.sender.pacer.rate(key) == 10
    asyncio.run(main())


def test_a_new_share_keeps_the_tokens_left() -> None:
    """A node joining halves the rate without a fresh token (no burst on each change)."""
    class Instance:
        accounts = {"main": None}

        class settings:  # noqa: N801
            class mt:  # noqa: N801
                rate = 20.0

    now, nodes = [0.0], [1]
    pacer = Pacer({"gen": Instance()}, lambda: now[0], lambda: nodes[0])  # type: ignore[dict-item]
    key = ("gen", "main")
    assert pacer.tokens(key, 99) == 1
    pacer.took(key)
    nodes[0] = 2
    assert pacer.rate(key) == 10 and pacer.tokens(key, 99) == 0
    now[0] += 0.1  # a tenth of a second at 10/s: one token
    assert pacer.tokens(key, 99) == 1


# -- /health -----------------------------------------------------------------------------


def test_health_lists_both_nodes_and_a_stale_one(tmp_path: Path, pg_url: str,
                                                 broker: HeldBroker) -> None:
    clock = Clock()
    a = node(tmp_path / "a", broker.fake.url, pg_url, clock=clock)
    b = node(tmp_path / "b", broker.fake.url, pg_url, clock=clock)

    async def health(host: Host) -> dict[str, Any]:
        transport = httpx2.ASGITransport(app=host.app_for())
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get("/health")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    async def main() -> None:
        async with a.running(), b.running():
            body = await health(a)
            assert body["node"]["id"] == a.cluster.node_id
            nodes = {n["id"]: n for n in body["cluster"]["nodes"]}
            assert set(nodes) == {a.cluster.node_id, b.cluster.node_id}
            assert all(n["alive"] for n in nodes.values())
            assert nodes[a.cluster.node_id]["this"] and not nodes[b.cluster.node_id]["this"]
            assert nodes[b.cluster.node_id]["config_version"] == b.live.version
            b.cluster.halt()
            clock.now += a.settings.cluster.node_timeout + 1
            await a.cluster.beat()
            stale = {n["id"]: n for n in (await health(a))["cluster"]["nodes"]}
            assert stale[b.cluster.node_id]["alive"] is False
            assert stale[b.cluster.node_id]["heartbeat_age"] > a.settings.cluster.node_timeout
            assert stale[a.cluster.node_id]["alive"] is True
    asyncio.run(main())


# -- settings ----------------------------------------------------------------------------


def test_node_timeout_must_be_at_least_twice_the_heartbeat(tmp_path: Path) -> None:
    assert list(ClusterSettings().problems()) == []
    cfg = write_config(tmp_path, free_port(), brokers="",
                       extra="\n[cluster]\nheartbeat_s = 5\nnode_timeout = 8\n")
    with pytest.raises(ConfigError, match="node_timeout"):
        load_settings(cfg)


def test_a_start_ends_the_node_before_it_in_its_home_only(tmp_path: Path,
                                                          pg_url: str) -> None:
    """Workers of one data directory (serve --workers) are nodes of their own: a worker
    started again ends its predecessor only, at once (its sends adopted now)."""
    clock = Clock()
    host = node(tmp_path / "a", "http://127.0.0.1:9", pg_url, clock=clock)

    async def main() -> None:
        async with host.running(background=False):
            settings = host.settings.cluster
            one, two, again = (Cluster(host.store, settings, clock) for _ in range(3))
            await one.start("h:/data:worker-1")
            await two.start("h:/data:worker-2")
            assert await one.lease("timer")
            await again.start("h:/data:worker-1")  # worker 1 died and was restarted
            try:
                ids = {n["id"] for n in await again.nodes()}
                assert ids == {two.node_id, again.node_id}
                assert await two.lease("timer")  # its lease went with it
            finally:
                for cluster in (one, two, again):
                    cluster.halt()
                    await cluster.stop()
    asyncio.run(main())
