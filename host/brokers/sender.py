"""The outbox worker: sends queued messages through their broker (SPEC O6, O7, O8).

Every message was persisted, with its outbox row, before any network call. A send is:

1. claimed: its outbox row marked in flight (committed) before the request leaves,
   once its account has a token (``mt.rate`` messages per second, see
   :mod:`host.brokers.pacing`; until then it stays queued and takes no slot). A send
   accepted by the API while its account has a token and the worker a free slot is
   stored claimed already, in the write that stores it, and handed over in memory
   (:meth:`Sender.reserve`, :meth:`Sender.launch`, :mod:`host.outbound`): no claim
   read, no claim write;
2. built from the broker definition (an adapter or definition that cannot build it
   fails the message);
3. sent with the broker definition's MT request through one shared HTTP client
   (:mod:`host.httpclient`, ``outbox.http_client``)
   (through the broker's proxy, with Proxy-Authorization, when one is set), with the
   broker instance's ``mt.timeout`` (2 and 3: :mod:`host.brokers.attempts`);
4. settled: accepted → ``sent`` with the broker's message id (receipts that came
   first are applied then); retry (network error, timeout, 5xx, 429 with Retry-After)
   → back in the outbox after an exponential backoff with jitter; anything else, or
   ``outbox.max_attempts`` / ``outbox.max_age`` reached → ``failed``. The parts of a
   split message go one after the other, each once the one before was accepted
   (:mod:`host.brokers.parts`). The sends that end while a settlement is being written
   are settled together in the next write (:mod:`host.brokers.settlements`).

A send that fails in an unexpected way (a bug) is retried like a network error, and a
settlement the database refuses for a while (locked by another process, a full disk)
is written again with a backoff for about a minute; only one refused longer than that,
or during a stop, stays in flight until the next start. After a crash, rows still
marked in flight are sends whose outcome is unknown: each is
tried again once, flagged ``possibly_duplicated`` (the broker may have accepted it
before the crash); one found in flight a second time fails instead. A message the
broker accepted (we hold its id) is never sent again. With several nodes on one
database, a claim names its node (``outbox.claimed_by``, host.cluster) and only the
claims of dead nodes are recovered: at the start and after each heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from host.backoff import grown
from host.brokers.attempts import attempt
from host.brokers.http import MtResult
from host.brokers.claims import Claimed, claim, due_messages, orphans
from host.brokers.settlements import Settlement, Settler, settle_many
from host.brokers.pacing import Clock, Key, Pacer
from host.brokers.parts import repair
from host.httpclient import Transport, open_client
from host.outage import Outage
from host import ledger
from host.ledger import Change
from host.models import Message

if TYPE_CHECKING:
    from collections.abc import Mapping

    from host.brokers.instances import BrokerInstance
    from host.cluster import Cluster
    from host.config.settings import Settings
    from host.ledger import Ledger
    from host.store import Store

log = logging.getLogger("smshost.sender")

# Waits between writes of a settlement the database refused (locked past busy_timeout
# by another process, say): about a minute in all, then the row is left in flight for
# the next start to recover.
SETTLE_RETRIES = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# How often the worker also looks for messages of accounts no longer configured.
STRAYS_EVERY = 300.0
# A heartbeat "since" no node has: without a cluster, every claim in flight is a dead one.
ALONE = 1e18


class Sender:
    """Sends the outbox of ``store`` through ``brokers``; once a send is accepted, the
    receipts that came before it are applied (in its settlement's write)."""

    def __init__(self, settings: Settings, store: Store, ledger: Ledger,
                 brokers: Mapping[str, BrokerInstance],
                 clock: Clock = time.time, cluster: Cluster | None = None) -> None:
        self._settings = settings
        self._cluster = cluster  # None: alone, and every row in flight at start is ours
        self._store = store
        self._ledger = ledger
        self._brokers = brokers
        self._clock = clock  # wall time: next_attempt_at and enqueued_at are stored
        # Token buckets measure intervals: a clock that never jumps back, unless given one.
        self._pacer = Pacer(brokers, time.monotonic if clock is time.time else clock,
                            lambda: cluster.alive_count if cluster is not None else 1)
        self._session: Transport | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._active: set[asyncio.Task[None]] = set()
        self._reserved = 0  # slots taken by sends being stored claimed (host.outbound)
        self._claiming = 0  # slots the loop's claim may fill, while it reads and writes
        self._limit = settings.outbox.max_in_flight  # as the loop started
        self._running = False
        self._strays_at = 0.0  # monotonic; the first claim looks for them
        # (broker, account) removed by a live change: their messages wait, neither sent
        # nor failed as strays, until the account is configured again (or a restart).
        self.held: set[Key] = set()
        self.outage = Outage("sending", log)
        self._settler = Settler(store, lambda: self._running, self.outage, SETTLE_RETRIES)

    def configure(self, settings: Settings, held: set[Key]) -> None:
        """Take new settings (a live change; ``outbox.enabled``, ``max_in_flight`` and
        ``ca_file`` take effect at the next start) and the accounts to hold."""
        self._settings = settings
        self.held = held
        self._wakeup.set()

    @property
    def pacer(self) -> Pacer:
        """The token buckets of the accounts (their rates shared by the live nodes)."""
        return self._pacer

    @property
    def clock(self) -> Clock:
        return self._clock

    @clock.setter
    def clock(self, clock: Clock) -> None:  # tests stand the clock still, buckets too
        self._clock = clock
        self._pacer.clock = clock

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        settings = self._settings.outbox
        self._wakeup = asyncio.Event()  # bound to this start's loop
        recovered = await self._store.write(partial(self._recover, self._live_since(), True))
        if recovered:
            log.warning("%d send(s) were in flight at the last stop: trying each again once,"
                        " flagged possibly_duplicated", recovered)
        self._session = open_client(settings.http_client, settings.max_in_flight,
                                    settings.ca_file)
        self._running = True
        self._strays_at = 0.0
        self._task = asyncio.create_task(self._loop(), name="smshost-sender")

    async def stop(self) -> None:
        self._running = False
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._active:  # let sends under way finish: their outcome is then recorded
            await asyncio.wait(self._active, timeout=self._settings.server.shutdown_timeout)
        pending = list(self._active)
        for task in pending:
            task.cancel()
        if pending:  # they end before the session closes (their rows stay in flight)
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        self._wakeup.set()

    # -- sends claimed as they are stored (host.outbound) --------------------------------

    @property
    def node(self) -> str | None:
        """What a claim of this node names (``outbox.claimed_by``)."""
        return self._cluster.node_id if self._cluster is not None else None

    def reserve(self, key: Key) -> bool:
        """Take a slot and a token of ``key`` for a send about to be stored claimed, when
        there are both (and ``key`` is configured, not held, the worker running); give
        them back with :meth:`release`, or use them with :meth:`launch`. Taken now, so two
        sends stored at once never exceed ``max_in_flight`` nor the account's rate."""
        instance = self._brokers.get(key[0])
        if not self._running or key in self.held or instance is None \
                or key[1] not in instance.accounts or not instance.settings.mt_active \
                or len(self._active) + self._reserved + self._claiming >= self._limit \
                or self._pacer.tokens(key, 1) < 1:
            return False
        self._pacer.took(key)
        self._reserved += 1
        return True

    def release(self, key: Key) -> None:
        """A reservation not used (the send was not stored, or stored waiting)."""
        self._reserved -= 1
        self._pacer.gave_back(key)
        self._wakeup.set()

    def launch(self, claimed: Claimed) -> None:
        """Send ``claimed``, stored claimed by this node with a reservation, as the loop
        sends what it claimed. Stopped meanwhile, its row stays in flight: the next start
        recovers it."""
        self._reserved -= 1
        if not self._running:
            return
        task = asyncio.create_task(self._send(claimed))
        self._active.add(task)
        task.add_done_callback(self._done)

    def _live_since(self) -> float:
        """Claims of nodes with a heartbeat since then are live: not recovered."""
        return self._cluster.live_since() if self._cluster is not None else ALONE

    async def adopt_dead(self) -> int:
        """After each heartbeat: the sends in flight of nodes that died are recovered as
        at a start (tried again once, flagged possibly_duplicated); how many."""
        if not self._running:
            return 0
        since = self._live_since()
        if not await self._store.read(partial(orphans, since=since)):
            return 0  # the usual case: a read, no write transaction each heartbeat
        adopted = await self._store.write(partial(self._recover, since, False))
        if adopted:
            log.warning("%d send(s) in flight on a node that died: trying each again once,"
                        " flagged possibly_duplicated", adopted)
            self._wakeup.set()
        return adopted

    def _recover(self, since: float, starting: bool, db: Any) -> int:
        conn = db.conn
        rows = orphans(db, since)
        for message_id, recovered in rows:
            if recovered >= 1:
                settle_many(db, [Settlement(message_id, None, "failed", {
                    "error": "in flight at two crashes in a row; not tried again",
                    "possibly_duplicated": True})])
                continue
            conn.execute("update outbox set in_flight = 0, claimed_by = null, "
                         "recovered = recovered + 1 where message_id = ?", [message_id])
            ledger.flag(db, message_id, "possibly_duplicated")
        if starting:
            repair(db)
        return len(rows)

    # -- the loop -----------------------------------------------------------------------

    async def _loop(self) -> None:
        limit = self._limit = self._settings.outbox.max_in_flight
        while self._running:
            self._wakeup.clear()
            room = limit - len(self._active) - self._reserved
            try:
                due, next_at = ([], None) if room <= 0 else await self._claim(room)
            # The worker must outlive a failed claim (a full disk, the database locked by
            # another process past busy_timeout): nothing was claimed; try again in a
            # second, logged once per failing spell (BLE001).
            except Exception as exc:  # noqa: BLE001
                self.outage.failed(exc)
                due, next_at = [], self.clock() + 1.0
            else:
                if room > 0:
                    self.outage.succeeded()
            for claimed in due:
                task = asyncio.create_task(self._send(claimed))
                self._active.add(task)
                task.add_done_callback(self._done)
            if due and len(due) == room:
                continue
            wait = 1.0 if next_at is None else max(0.0, min(1.0, next_at - self.clock()))
            try:
                async with asyncio.timeout(wait):  # not wait_for: 3.11's may lose a cancel
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self._wakeup.set()

    async def _claim(self, room: int) -> tuple[list[Claimed], float | None]:
        """Claim up to ``room`` due messages whose accounts have a token; also say when
        to look again (the next retry due, or the next token of an account without).

        Sends reserved meanwhile (:meth:`reserve`) never take the claim's slots and
        tokens: room counted again after the read; slots and tokens held while it writes."""
        now = self.clock()
        pacer = self._pacer
        strays = time.monotonic() >= self._strays_at  # accounts gone from the config
        window = room * 2 + 16
        asks = [(key, min(window, whole)) for key in self._accounts()
                if (whole := pacer.tokens(key, window)) > 0]
        rows, found_strays = await self._store.read(partial(
            due_messages, asks, now, window, strays, self._accounts() + sorted(self.held)))
        if strays:  # looked: again in a while, or at once while there are more
            self._strays_at = time.monotonic() + (0.0 if found_strays else STRAYS_EVERY)
        room = min(room, self._limit - len(self._active) - self._reserved)
        chosen = pacer.choose([((r[1], r[2]), r[0]) for r in rows[:window]], room)
        ids = list(chosen)
        node = self._cluster.node_id if self._cluster is not None else None
        self._claiming, claimed = len(ids), list[Claimed]()
        try:
            claimed, next_at = await self._store.write(partial(claim, ids, now, node))
        finally:
            self._claiming = 0  # the claimed go in _active before the loop yields
            for message_id in chosen.keys() - {item.message.id for item in claimed}:
                pacer.gave_back(chosen[message_id])  # taken meanwhile, or not written
        token = pacer.next_token(pacer.exhausted())
        if token is not None:
            at = self.clock() + token
            next_at = at if next_at is None else min(next_at, at)
        if len(claimed) < len(ids) or len(rows) > window or found_strays:
            next_at = now  # some were taken meanwhile, or more are waiting: look again
        return claimed, next_at

    def _accounts(self) -> list[Key]:
        """Every configured (broker, account): the outbox is read account by account."""
        return [(name, account) for name, instance in self._brokers.items()
                for account in instance.accounts]

    # -- one send -----------------------------------------------------------------------

    async def _send(self, claimed: Claimed) -> None:
        message = claimed.message
        try:
            result = await attempt(self._session, self._brokers, message)
        # A bug while building or sending: the request may or may not have left, as with
        # a network error, so it is retried like one (bounded by max_attempts) (BLE001).
        except Exception as exc:  # noqa: BLE001
            log.exception("sending message %d failed unexpectedly", message.id)
            result = MtResult("retry", error=f"internal error: {type(exc).__name__}: {exc}")
        try:
            await self._settle(message, result, claimed.attempts, claimed.enqueued_at)
        # What _write_settlement does not handle (a bug after the write, in a hook): the
        # worker goes on; the row, if not settled, is recovered at the next start (BLE001).
        except Exception:  # noqa: BLE001
            log.exception("message %d: settling its send failed", message.id)

    async def _settle(self, message: Message, result: MtResult, attempts: int,
                      enqueued_at: float | None = None) -> None:
        settings = self._settings.outbox
        outcome = result.outcome
        detail: dict[str, Any] = {"attempt": attempts}
        for key in ("status", "error", "error_code"):
            value = getattr(result, key)
            if value is not None:
                detail["http_status" if key == "status" else key] = value
        if outcome == "retry":
            age = self.clock() - (enqueued_at or self.clock())
            if attempts >= settings.max_attempts or age >= settings.max_age:
                outcome = "fail"
                detail["error"] = (f"{result.error}; gave up after {attempts} attempt(s)"
                                   if result.error else f"gave up after {attempts} attempts")
        if outcome == "retry":
            delay = self.backoff(attempts, result.retry_after)
            detail["retry_in"] = round(delay, 3)
        status = {"accepted": "sent", "retry": "queued", "fail": "failed"}[outcome]
        if outcome == "accepted":
            detail["broker_message_id"] = result.message_id
        settled = await self._settler.settle(Settlement(
            message.id, message.broker, status, detail,
            result.message_id if outcome == "accepted" else None,
            self.clock() + detail["retry_in"] if outcome == "retry" else None,
            result.error, result.exchange))
        if settled is None:  # the row stays in flight: the next start recovers it
            return
        change, later = settled.change, settled.later
        # not when a receipt's final state stood; then the parts after a failed one
        await self._ledger.announce(
            [change, *later] if change.message.status == status else later)
        await self._ledger.announce(Change(a.message, a.event, a.old)
                                    for a in settled.adopted
                                    if a.message is not None and a.event is not None
                                    and a.changed)
        if outcome == "fail":
            log.warning("message %d failed: %s", message.id, detail.get("error"))

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        s = self._settings.outbox
        if retry_after is not None:
            return min(max(retry_after, 0.0), s.max_delay)
        base = grown(s.first_delay, s.factor, attempts - 1, s.max_delay)
        return max(0.0, base * (1 + random.uniform(-s.jitter, s.jitter)))
