"""This node among the others on one database: its identity, heartbeat and leases.

Every process start is a node with a fresh id (uuid4) and a row in ``nodes``: its name
(host/pid, for people), when it started, its last heartbeat (Unix seconds), the
configuration version it applied and its listeners. The heartbeat is written every
``cluster.heartbeat_s``; a node whose heartbeat is older than ``cluster.node_timeout``
(or that has no row) is dead, and the others adopt its work: its sends in flight
(host.brokers.sender), its webhook deliveries. A clean stop removes the row and the
node's leases.

A lease (``leases``: name, holder, expires_at) makes a timer run on one node of the
cluster: :meth:`Cluster.lease` acquires or renews it in one write, for ``node_timeout``
seconds; the heartbeat renews every lease held, so :meth:`Cluster.holds` (what a loop
asks each tick) writes nothing while this node holds it, and at most once per heartbeat
while another node does. The lease moves when its holder dies (stops renewing).

On SQLite there is one node: the same code, trivially alone. Clocks of the nodes must
agree (NTP) to well under ``node_timeout``: liveness and leases compare Unix times
written by one node with another's clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from host.errors import StoreError
from host.outage import Outage

if TYPE_CHECKING:
    from pathlib import Path
    from host.config.cluster import ClusterSettings
    from host.store import Store

log = logging.getLogger("smshost.cluster")
Clock = Callable[[], float]
# Rows of nodes dead this long are removed by the next heartbeat of any node (kept
# until then so that /health shows a stale node).
FORGET_AFTER = 3600.0


def node_name() -> str:
    """This process, for people: host name and pid."""
    return f"{socket.gethostname()}/{os.getpid()}"


class Cluster:
    """This node's row, heartbeat and leases in ``store``; ``clock`` in Unix seconds
    (tests drive it, and :meth:`beat`, by hand)."""

    def __init__(self, store: Store, settings: ClusterSettings, clock: Clock = time.time,
                 *, version: Callable[[], str] = str, address: str = "",
                 home: str = "") -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.node_id = str(uuid.uuid4())
        self.name = node_name()
        self.address = address
        # Where this node serves from (host, data directory and worker number: one
        # process at a time): a start there ends the node before it there at once, not
        # after node_timeout. "" for none (a second Cluster of a test).
        self.home = home
        self._version = version
        self.alive_count = 1  # live nodes at the last heartbeat, this one included
        self.on_beat: list[Callable[[], Awaitable[object]]] = []  # after each heartbeat
        self._held: dict[str, float] = {}  # lease name -> when it runs out (our clock)
        self._denied: dict[str, float] = {}  # lease name -> when to ask again
        self._task: asyncio.Task[None] | None = None
        self.joined = False
        self.outage = Outage("the heartbeat", log)

    @property
    def timeout(self) -> float:
        return self.settings.node_timeout

    def _until(self) -> float:
        return self.clock() + self.settings.node_timeout

    def live_since(self) -> float:
        """Heartbeats at or after this time are of live nodes."""
        return self.clock() - self.settings.node_timeout

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, home: str | None = None) -> None:
        """Write this node's row (before anything adopts work: this node is alive) and
        start the heartbeat; ``home``: where it serves from (see ``self.home``)."""
        if home is not None:
            self.home = home
        self.alive_count, _ = await self.store.write(partial(
            _beat, self._row(started=True), self.live_since(), self._until(), []))
        self.joined = True
        self._task = asyncio.create_task(self._run(), name="smshost-heartbeat")

    def halt(self) -> None:
        """Stop the heartbeat, leaving the row and leases as they are (a crash, for
        tests: the others see this node die after node_timeout)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def stop(self) -> None:
        """A clean stop: the heartbeat ends, the row and this node's leases go."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.joined:
            self.joined = False
            self._held.clear()
            try:
                await self.store.write(partial(_leave, self.node_id))
            except StoreError as exc:  # the row runs out after node_timeout instead
                log.warning("this node's row could not be removed at stop (%s): the "
                            "others count it dead after node_timeout", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            await self.beat()

    async def beat(self) -> None:
        """One heartbeat: this node's row and leases renewed, the live nodes counted (one
        write); then what waits on it (adopting dead nodes' work). A failure is logged
        once per failing spell; leases not renewed run out by themselves."""
        until = self._until()
        try:
            self.alive_count, renewed = await self.store.write(partial(
                _beat, self._row(), self.live_since(), until, sorted(self._held)))
        # The heartbeat must outlive a database that refuses for a while (BLE001).
        except Exception as exc:  # noqa: BLE001
            self.outage.failed(exc)
            return
        self.outage.succeeded()
        self._held = {name: until for name in renewed}
        self._denied.clear()
        for call in list(self.on_beat):
            try:
                await call()
            # One follower failing must not stop the heartbeat (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("after the heartbeat: %r failed", call)

    def _row(self, started: bool = False) -> dict[str, Any]:
        now = self.clock()
        row = {"id": self.node_id, "name": self.name, "started_at": now,
               "heartbeat_at": now, "config_version": self._version(),
               "address": self.address, "home": self.home,
               "alone": self.store.dialect == "sqlite" and ":worker-" not in self.home}
        if not started:
            row.pop("started_at")
        return row

    # -- leases -------------------------------------------------------------------------

    async def lease(self, name: str, ttl: float | None = None) -> bool:
        """Acquire or renew lease ``name`` for ``ttl`` seconds (default node_timeout), in
        one write: True when this node holds it now."""
        ttl = self.settings.node_timeout if ttl is None else ttl
        now = self.clock()
        held = await self.store.write(partial(_lease, name, self.node_id, now, now + ttl))
        if held:
            self._held[name] = now + ttl
        else:
            self._held.pop(name, None)
        return held

    async def holds(self, name: str) -> bool:
        """Whether this node runs the once-per-cluster work ``name`` now (what a loop asks
        each tick): no write while it holds the lease (each heartbeat renews it), at
        most one per heartbeat while another node does."""
        now = self.clock()
        until = self._held.get(name)
        if until is not None and now < until - self.settings.heartbeat_s:
            return True
        if now < self._denied.get(name, 0.0):
            return False
        if await self.lease(name):
            return True
        self._denied[name] = now + self.settings.heartbeat_s
        return False

    # -- reading ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """This node, for /health."""
        return {"id": self.node_id, "name": self.name, "alive": self.alive_count}

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node with a row (one read), alive or not, with its heartbeat's age."""
        rows = await self.store.read(lambda db: list(db.query(
            "select id, name, started_at, heartbeat_at, config_version, address "
            "from nodes order by started_at, id")))
        now, since = self.clock(), self.live_since()
        return [{"id": r["id"], "name": r["name"], "this": r["id"] == self.node_id,
                 "alive": r["heartbeat_at"] >= since,
                 "heartbeat_age": round(now - r["heartbeat_at"], 3),
                 "config_version": r["config_version"], "address": r["address"]}
                for r in rows]


def alive_ids(since: float) -> tuple[str, list[float]]:
    """SQL (a sub-select) of the ids of nodes alive since ``since``, and its argument:
    ``claimed_by not in (...)`` picks the work of dead nodes."""
    return "select id from nodes where heartbeat_at >= ?", [since]


def _beat(row: dict[str, Any], since: float, until: float, leases: list[str], db: Any
          ) -> tuple[int, list[str]]:
    conn = db.conn
    if "started_at" in row:
        _forget_before(conn, row)
        conn.execute("insert into nodes (id, name, started_at, heartbeat_at, "
                     "config_version, address, home) values (?, ?, ?, ?, ?, ?, ?)",
                     [row["id"], row["name"], row["started_at"], row["heartbeat_at"],
                      row["config_version"], row["address"], row["home"]])
    else:  # upsert: a row removed meanwhile (forgotten as dead) comes back
        conn.execute("insert into nodes (id, name, started_at, heartbeat_at, "
                     "config_version, address, home) values (?, ?, ?, ?, ?, ?, ?) "
                     "on conflict (id) do update set heartbeat_at = excluded.heartbeat_at, "
                     "config_version = excluded.config_version",
                     [row["id"], row["name"], row["heartbeat_at"], row["heartbeat_at"],
                      row["config_version"], row["address"], row["home"]])
    conn.execute("delete from nodes where heartbeat_at < ?", [since - FORGET_AFTER])
    renewed: list[str] = []
    if leases:
        marks = ",".join("?" * len(leases))
        renewed = [r[0] for r in conn.execute(
            f"update leases set expires_at = ? where holder = ? and name in ({marks}) "
            "returning name", [until, row["id"], *leases]).fetchall()]
    alive = conn.execute("select count(*) from nodes where heartbeat_at >= ?",
                         [since]).fetchone()[0]
    return max(1, int(alive)), renewed


def _forget_before(conn: Any, row: dict[str, Any]) -> None:
    """The nodes that served before from this node's home are dead (one process serves
    from a data directory, or as one worker of it, at a time): on SQLite every other
    node (the database is in the data directory; not under ``--workers``); elsewhere
    those of the same home. Their rows and leases go (no row is
    dead: their claims are adopted now, not after node_timeout)."""
    if row["alone"]:
        where, args = "id <> ?", [row["id"]]
    elif row["home"]:
        where, args = "id <> ? and home = ?", [row["id"], row["home"]]
    else:
        return
    conn.execute(f"delete from leases where holder in (select id from nodes where {where})",
                 args)
    conn.execute(f"delete from nodes where {where}", args)


def _lease(name: str, node: str, now: float, until: float, db: Any) -> bool:
    held = db.conn.execute(
        "insert into leases (name, holder, expires_at) values (?, ?, ?) "
        "on conflict (name) do update set holder = excluded.holder, "
        "expires_at = excluded.expires_at "
        "where leases.holder = excluded.holder or leases.expires_at < ? "
        "returning holder", [name, node, until, now]).fetchone()
    return held is not None


def _leave(node: str, db: Any) -> None:
    db.conn.execute("delete from leases where holder = ?", [node])
    db.conn.execute("delete from nodes where id = ?", [node])


def home(data_dir: Path, worker: int | None) -> str:
    """Where a node serves from: host, data directory and worker number (under ``serve
    --workers``), which one process holds at a time."""
    return f"{socket.gethostname()}:{data_dir.resolve()}" + \
        (f":worker-{worker}" if worker is not None else "")
