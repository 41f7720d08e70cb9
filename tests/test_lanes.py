"""A conversation's lane is owned by one node at a time (issue 17 point 2): two hosts on
one PostgreSQL database deliver its messages in id order, none twice; a lane moves when
its node dies (a fake clock past routing.lane_ttl). On SQLite (one node) the sweep finds
nothing and writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from host.config import load_settings
from host.core import Host
from host.messages import NewMessage
from tests.conftest import MEMORY_SINK, base_config, routes_toml

TTL = 3600.0  # fake seconds: the background sweep (every sweep_s) never runs in a test
ROUTING = "\n[routing]\nsweep_s = 60\nlane_ttl = 3600\n"
LOCAL, REMOTE = "+15550100", "+12125550123"


class Clock:
    """The lanes' clock of both hosts (seconds since the epoch), moved by the test."""

    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def mo(body: str, remote: str = REMOTE) -> NewMessage:
    return NewMessage(direction="in", body=body, status="received", remote=remote,
                      local=LOCAL)


def make_host(root: Path, url: str | None, clock: Clock, target: str = "default") -> Host:
    """A host with its own config and data directories, on ``url`` (None: SQLite)."""
    (root / "plugins" / "sinks").mkdir(parents=True, exist_ok=True)
    (root / "plugins" / "sinks" / "memory.py").write_text(MEMORY_SINK, encoding="utf-8")
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    store = f'\n[store]\nurl = "{url}"\n' if url else ""
    (cfg / "smshost.toml").write_text(base_config(root, extra=store), encoding="utf-8")
    (cfg / "routes.toml").write_text(
        routes_toml(("default", "", "", "memory", target), extra=ROUTING), encoding="utf-8")
    host = Host(load_settings(cfg), config_dir=cfg)
    host.router.leases.clock = clock
    return host


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def two(tmp_path: Path, pg_url: str, clock: Clock) -> Iterator[Callable[[str], list[Host]]]:
    """``two(target)``: hosts A and B on one fresh PostgreSQL database."""
    yield lambda target: [make_host(tmp_path / name, pg_url, clock, target)
                          for name in ("a", "b")]


async def statuses(host: Host) -> dict[str, str]:
    rows = await host.store.read(lambda db: list(db.query(
        "select body, status from messages where direction = 'in' order by id")))
    return {r["body"]: r["status"] for r in rows}


async def all_routed(host: Host, count: int) -> None:
    """Wait (bounded) until ``count`` MOs are routed."""
    for _ in range(1000):
        done = await statuses(host)
        if len(done) == count and set(done.values()) == {"routed"}:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not all routed: {done}")


def got(host: Host) -> list[Any]:
    return host.sinks["memory"].got  # type: ignore[attr-defined, no-any-return]


def test_one_conversation_stored_on_two_nodes_is_delivered_in_order_once(
        two: Callable[[str], list[Host]]) -> None:
    a, b = two("default")

    async def flow() -> list[Any]:
        async with a.running(), b.running():
            shared = got(a)
            b.sinks["memory"].got = shared  # type: ignore[attr-defined]  # one record
            for n in range(30):
                await (a if n % 2 == 0 else b).messages.add(mo(f"m{n}"))
                if n % 7 == 0:
                    await asyncio.sleep(0)  # let routing run between some of them
            await all_routed(a, 30)
            assert await a.router.idle() and await b.router.idle()
            left = await a.store.read(lambda db: db.execute(
                "select count(*) from lanes").fetchone()[0])
            assert left == 0  # each lane released once emptied
            return list(shared)
    shared = asyncio.run(flow())
    assert [g[1] for g in shared] == [f"m{n}" for n in range(30)]


def test_a_node_starting_does_not_route_a_live_owners_messages(
        two: Callable[[str], list[Host]]) -> None:
    a, b = two("gate")

    async def flow() -> None:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(a.running())
            gate = a.sinks["memory"].gate = asyncio.Event()  # type: ignore[attr-defined]
            for n in range(3):
                await a.messages.add(mo(f"m{n}"))  # A holds the lane, delivering m0
            await stack.enter_async_context(b.running())  # B's start sweeps
            b.sinks["memory"].gate = asyncio.Event()  # type: ignore[attr-defined]
            await b.messages.add(mo("m3"))  # stored on B: the lane is A's
            assert await b.router.idle()
            assert await b.router.keeper.sweep() == 0
            assert b.sinks["memory"].tried == []  # type: ignore[attr-defined]
            gate.set()
            await all_routed(a, 4)
            assert await a.router.idle()
            assert [g[1] for g in got(a)] == ["m0", "m1", "m2", "m3"]
            assert got(b) == []
    asyncio.run(flow())


def test_the_lane_of_a_node_that_died_moves_after_its_ttl(
        two: Callable[[str], list[Host]], clock: Clock) -> None:
    a, b = two("gate")

    async def flow() -> None:
        async with b.running():
            b.sinks["memory"].gate = None  # type: ignore[attr-defined]
            async with a.running():
                a.sinks["memory"].gate = asyncio.Event()  # type: ignore[attr-defined]
                for n in range(3):
                    await a.messages.add(mo(f"m{n}"))
                await b.messages.add(mo("m3"))  # A's lane: B leaves it
                await b.messages.add(mo("other", remote="+12125550999"))  # B's own
                a.router.keeper.leases.release_all = lambda db: None  # type: ignore
                # A dies: stopped without releasing its lanes, m0 not delivered
            assert await b.router.idle()
            assert [g[1] for g in got(b)] == ["other"]
            assert await b.router.keeper.sweep() == 0  # A's lane has not expired yet
            clock.now += TTL + 1
            assert await b.router.keeper.sweep() == 4
            await all_routed(b, 5)
            assert await b.router.idle()
            assert [g[1] for g in got(b)] == ["other", "m0", "m1", "m2", "m3"]
            assert got(a) == []
    asyncio.run(flow())


@pytest.mark.sqlite_only
def test_on_sqlite_the_sweep_reads_and_writes_nothing(tmp_path: Path, clock: Clock) -> None:
    host = make_host(tmp_path, None, clock)

    async def flow() -> None:
        async with host.running():
            for n in range(5):
                await host.messages.add(mo(f"m{n}", remote=f"+1212555{n:04d}"))
            assert await host.router.idle()
            commits = host.store.stats.commits
            assert await host.router.keeper.sweep() == 0
            assert host.store.stats.commits == commits
    asyncio.run(flow())
    assert len(got(host)) == 5


@pytest.mark.sqlite_only
def test_on_sqlite_a_restart_routes_what_an_earlier_run_held(
        tmp_path: Path, clock: Clock) -> None:
    """One node on SQLite: the lanes of its earlier run (a crash) are its own at start."""
    first = make_host(tmp_path, None, clock)

    async def crash() -> None:
        async with first.running():
            await first.store.write(lambda db: db.execute(
                "insert into lanes (local, remote, owner, expires_at) values (?, ?, ?, ?)",
                [LOCAL, REMOTE, "a-dead-run", clock.now + TTL]))
            await first.router.stop()
            await first.store.write(lambda db: db.execute(
                "insert into messages (direction, local, remote, body, status, created_at, "
                "updated_at) values ('in', ?, ?, 'left', 'received', '', '')",
                [LOCAL, REMOTE]))
    asyncio.run(crash())
    again = make_host(tmp_path, None, clock)

    async def restart() -> dict[str, str]:
        async with again.running():
            assert await again.router.idle()
            return await statuses(again)
    assert asyncio.run(restart()) == {"left": "routed"}
    assert [g[1] for g in got(again)] == ["left"]


def test_a_lane_being_routed_is_renewed_by_its_nodes_sweep(
        two: Callable[[str], list[Host]], clock: Clock) -> None:
    """A delivery that takes longer than the ttl keeps its lane: the owner's sweep
    renews the lanes it has been routing since its last sweep."""
    a, b = two("gate")

    async def flow() -> None:
        async with a.running(), b.running():
            gate = a.sinks["memory"].gate = asyncio.Event()  # type: ignore[attr-defined]
            await a.messages.add(mo("m0"))
            await a.messages.add(mo("m1"))
            for _ in range(3):  # A's delivery of m0 waits at the gate for 1.8 ttl
                assert await a.router.keeper.sweep() == 0
                clock.now += 0.6 * TTL
            assert await b.router.keeper.sweep() == 0  # still A's lane
            assert b.sinks["memory"].tried == []  # type: ignore[attr-defined]
            gate.set()
            await all_routed(a, 2)
            assert [g[1] for g in got(a)] == ["m0", "m1"]
    asyncio.run(flow())
