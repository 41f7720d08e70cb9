"""Who routes each conversation: the ``lanes`` table (m018; issue 17, several nodes).

Nodes sharing one database route the messages of one conversation (local, remote) one
node at a time, in id order. A conversation's lane is owned by one node (``owner``, its
id, made at each start) until ``expires_at``; every statement here runs in a store
write, and every write runs alone (SQLite's lock; on PostgreSQL the cluster-wide lock of
host.pg.writer), so taking a lane is exclusive. No statement here costs a commit of its
own on the way of a message:

- the write that stores an MO takes its lane (:meth:`Leases.take`: free, expired or
  already ours), so the node that stored it routes it unless another node holds the
  lane;
- the write that records a message's routing renews the lane, or releases it when no
  message of the conversation is left to route (:meth:`Leases.after`), and names the
  next one (stored by any node) for the owner to route;
- before routing, the read of the conversation's next message reads the lane with it
  (:data:`HEAD`).

A node that dies leaves its lanes to expire (``routing.lane_ttl``); the sweep of every
node (``routing.sweep_s``) takes messages whose lane is free or expired, oldest first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable, Container, Iterable
from typing import TYPE_CHECKING, Any

from host.models import Message
from host.outage import expected

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.routing.lanes import Lanes
    from host.store import Store

log = logging.getLogger("smshost.routing")
SWEEP_LIMIT = 1000  # messages taken by one sweep at most (the next sweep goes on)

Key = tuple[str, str]  # (local, remote), '' for none

_TAKE = ("insert into lanes (local, remote, owner, expires_at) values (?, ?, ?, ?) "
         "on conflict (local, remote) do update set owner = excluded.owner, "
         "expires_at = excluded.expires_at "
         "where lanes.owner = excluded.owner or lanes.expires_at < ?")
_OWNER = "select owner from lanes where local = ? and remote = ?"
_RELEASE = "delete from lanes where owner = ?"
_RELEASE_ONE = "delete from lanes where local = ? and remote = ? and owner = ?"
_RENEW = "update lanes set expires_at = ? where local = ? and remote = ? and owner = ?"
_DROP = ("delete from lanes where local = ? and remote = ? and owner = ? "
         "and not exists ({waiting})")
# Messages of one conversation still to route, oldest first (index messages_unrouted).
_WAITING = ("select {cols} from messages m{join} where m.direction = 'in' "
            "and m.status = 'received' and m.local {local} and m.remote {remote} "
            "order by m.id limit {limit}")
_LANE_JOIN = " left join lanes l on l.local = ? and l.remote = ?"
_ALL = ("select id, local, remote from messages where direction = 'in' "
        "and status = 'received' order by id limit ?")
_SWEEP = ("select m.id, m.local, m.remote from messages m left join lanes l "
          "on l.local = coalesce(m.local, '') and l.remote = coalesce(m.remote, '') "
          "where m.direction = 'in' and m.status = 'received' "
          "and (l.owner is null or l.expires_at < ?) order by m.id limit ?")


def key_of(local: str | None, remote: str | None) -> Key:
    return (local or "", remote or "")


def waiting_sql(key: Key, *, limit: int, lane: bool) -> tuple[str, list[Any]]:
    """The query of ``key``'s messages still to route (ids; with ``lane``, the whole
    rows and the lane's owner and expiry), and its arguments."""
    args: list[Any] = list(key) if lane else []
    args.extend(value for value in key if value)
    return _waiting_text(bool(key[0]), bool(key[1]), limit, lane), args


@functools.lru_cache(maxsize=64)
def _waiting_text(local: bool, remote: bool, limit: int, lane: bool) -> str:
    return _WAITING.format(
        cols="m.*, l.owner as lane_owner, l.expires_at as lane_expires" if lane else "m.id",
        join=_LANE_JOIN if lane else "", limit=limit, local="= ?" if local else "is null",
        remote="= ?" if remote else "is null")


class Leases:
    """This node's hold on lanes: ``owner`` (a uuid per start unless given), ``ttl``
    seconds, ``clock`` (seconds since the epoch; tests give a fake one)."""

    def __init__(self, owner: str | None = None, ttl: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.owner = owner or uuid.uuid4().hex
        self.ttl = ttl
        self.clock = clock

    def claim(self, db: Database, local: str | None, remote: str | None) -> None:
        """Take (or renew) the lane of (local, remote) unless another live node holds
        it. In the caller's write (the one that stores an MO: host.ledger.insert)."""
        now = self.clock()
        db.conn.execute(_TAKE, [*key_of(local, remote), self.owner, now + self.ttl, now])

    def take(self, db: Database, local: str | None, remote: str | None) -> bool:
        """:meth:`claim`, then whether this node holds the lane now."""
        self.claim(db, local, remote)
        row = db.conn.execute(_OWNER, list(key_of(local, remote))).fetchone()
        return row is not None and row[0] == self.owner

    def take_all(self, db: Database, keys: Iterable[Key]) -> set[Key]:
        """Take each lane of ``keys`` that is free or expired; the ones now held."""
        return {key for key in keys if self.take(db, *key)}

    def renew(self, db: Database, keys: Iterable[Key]) -> None:
        expires = self.clock() + self.ttl
        db.conn.executemany(_RENEW, [[expires, *key, self.owner] for key in keys])

    def after(self, db: Database, key: Key) -> int | None:
        """After a message of ``key`` was routed (in that write): the next message of
        the conversation to route (stored by any node), the lane renewed; None, the
        lane released."""
        sql, args = waiting_sql(key, limit=1, lane=False)
        if db.conn.execute(_DROP.format(waiting=sql), [*key, self.owner, *args]).rowcount:
            return None  # the usual case: one statement
        row = db.conn.execute(sql, args).fetchone()
        if row is None:  # not this node's lane (taken over): nothing to release
            return None
        db.conn.execute(_RENEW, [self.clock() + self.ttl, *key, self.owner])
        return int(row[0])

    def holds(self, owner: str | None, expires: float | None) -> bool | None:
        """From a lane's row as read: True held by this node (long enough to route a
        message), False by another live node, None free (or to renew first)."""
        if owner is None or expires is None:
            return None
        left = float(expires) - self.clock()
        if owner == self.owner:
            return True if left > self.ttl / 2 else None
        return False if left >= 0 else None

    def release(self, db: Database, key: Key) -> None:
        """Give up the lane of ``key`` (a message routed at ingest, nothing left)."""
        db.conn.execute(_RELEASE_ONE, [*key, self.owner])

    def release_all(self, db: Database) -> None:
        """Give up every lane of this node (a clean stop)."""
        db.conn.execute(_RELEASE, [self.owner])

    def orphans(self, db: Database, limit: int, everyone: bool = False
                ) -> list[dict[str, Any]]:
        """Messages still to route whose lane is free or expired (``everyone``: all),
        oldest first."""
        if everyone:
            return list(db.query(_ALL, [limit]))
        return list(db.query(_SWEEP, [self.clock(), limit]))


class LaneKeeper:
    """The router's side of the lanes: the read of a conversation's next message with
    its lane, the sweep (every ``sweep_s``), the start and the stop."""

    def __init__(self, store: Store, leases: Leases, lanes: Lanes,
                 submit: Callable[[int, str | None, str | None], None],
                 sweep_s: float) -> None:
        self.store = store
        self.leases = leases
        self._lanes = lanes
        self._submit = submit
        self.sweep_s = sweep_s
        self.skip: set[int] = set()  # given up until the next start (retries ran out)
        self._seen: set[Key] = set()  # lanes being routed at the last sweep
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take this node's lanes and what no live node routes; sweep from now on."""
        self.skip.clear()
        # SQLite has one node (the data directory's lock): the lanes of an earlier run
        # are this node's, and it takes every message still to route.
        await self.sweep(everyone=self.store.dialect == "sqlite")
        self._task = asyncio.create_task(self._sweeping(), name="smshost-lanes")

    async def stop(self) -> None:
        """Stop sweeping and give up this node's lanes (another node takes them)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.store.write(self.leases.release_all)
        # Stopping: a database that refuses leaves the lanes to expire (BLE001).
        except Exception as exc:  # noqa: BLE001
            if not expected(exc):
                raise
            log.warning("lanes not released (they expire in %ss): %s", self.leases.ttl, exc)

    async def _sweeping(self) -> None:
        while True:
            await asyncio.sleep(min(self.sweep_s, self.leases.ttl / 3))
            try:
                await self.sweep()
            # The next sweep tries again; a refusing database is the outage's (BLE001).
            except Exception as exc:  # noqa: BLE001
                if not expected(exc):
                    log.exception("the routing sweep failed")

    async def sweep(self, everyone: bool = False) -> int:
        """Renew the lanes this node has been routing since the last sweep; take the
        messages still to route whose lane is free or expired (oldest first; with
        ``everyone``, every lane: no other node exists) and route them; how many were
        taken."""
        rows = [row for row in await self.store.read(
            lambda db: self.leases.orphans(db, SWEEP_LIMIT, everyone))
            if row["id"] not in self.skip]
        busy = set(self._lanes.keys())
        renew, self._seen = busy & self._seen, busy
        if not rows and not renew and not everyone:
            return 0  # the usual case: one indexed read, no write
        keys = list(dict.fromkeys(key_of(r["local"], r["remote"]) for r in rows))

        def write(db: Database) -> set[Key]:
            if everyone:
                db.execute("delete from lanes")
            self.leases.renew(db, renew)
            return self.leases.take_all(db, keys)

        taken = await self.store.write(write)
        routed = [row for row in rows if key_of(row["local"], row["remote"]) in taken]
        for row in routed:
            self._submit(row["id"], row["local"], row["remote"])
        if routed:
            log.info("routing %d message(s) no node was routing", len(routed))
        return len(routed)

    async def head(self, key: Key, skip: Container[int]) -> tuple[Message | None, bool]:
        """The oldest message of ``key`` still to route (None: none) and whether this
        node holds its lane (taken now if it was free or about to expire)."""
        sql, args = waiting_sql(key, limit=3 + min(len(self.skip), 50), lane=True)
        rows = self.store.read_now(lambda db: list(db.query(sql, args)))  # index lookup
        row = next((r for r in rows if r["id"] not in skip and r["id"] not in self.skip),
                   None)
        if row is None:
            return None, True
        held = self.leases.holds(row.pop("lane_owner"), row.pop("lane_expires"))
        if held is None:  # free, or ours for a short while only: one write (rare)
            held = await self.store.write(lambda db: self.leases.take(db, *key))
        return Message.from_row(row), held
