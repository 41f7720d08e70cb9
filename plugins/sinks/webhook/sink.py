"""The webhook sink itself: a durable queue of deliveries and the worker that POSTs them."""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from host.api import (ApiError, Delivery, HttpClient, HttpError, Outage, Sink, __version__,
                      expected, open_http_client, redact, to_epoch, utcnow)

from .deliveries import (Result, adopt, delivery_row, enqueue, orphaned, record, replay,
                         waiting_and_dead)
from .payloads import build_payload, sign
from .settings import (DELIVERY_HEADER, ERROR_BODY_CHARS, IDLE_WAKEUP, RESPONSE_READ_LIMIT,
                       SIGNATURE_HEADER, WebhookSettings, backoff, http_url,
                       retry_after_seconds)

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.api import HostAPI, Message, StatusEvent
    from host.api import InboundRoute as Route

log = logging.getLogger("smshost.webhook")


# -- the sink ---------------------------------------------------------------------------

class WebhookSink(Sink):
    """POSTs routed messages to webhook targets, durably, with retries and dead letters."""

    kind = "webhook"
    settings_class = WebhookSettings

    def __init__(self, host: HostAPI, settings: WebhookSettings) -> None:
        super().__init__(host, settings)
        self.settings: WebhookSettings = settings
        self._session: HttpClient | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._due: list[tuple[float, int]] = []  # (next attempt, delivery id), a heap
        self._queued: set[int] = set()  # ids in _due
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._again: dict[int, float] = {}  # queued again while in flight (a replay)
        self._errors: dict[int, int] = {}  # unexpected failures in a row, per delivery
        self.outage = Outage("webhook deliveries", log)
        self._running = False
        host.metrics.stored_gauge(
            "smshost_webhook_deliveries", "Webhook deliveries waiting (pending) and dead "
            "letters (dead), at scrape time.", ("status",), waiting_and_dead)

    # -- targets ------------------------------------------------------------------------

    def _target_name(self, target: str) -> str:
        return target or self.settings.default_target

    def check_target(self, target: str) -> str | None:
        name = self._target_name(target)
        known = ", ".join(sorted(self.settings.targets)) or "none"
        if not name:
            return (f"a webhook route names its target (targets: {known}), or set "
                    "webhook.default_target in sinks.toml")
        found = self.settings.targets.get(name)
        if found is None:
            return f"no webhook target named {name!r} in sinks.toml (targets: {known})"
        problem = http_url(found.url)
        return f"webhook target {name!r}: url {problem}" if problem else None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._session = open_http_client(self.host.settings.outbox.http_client,
                                         self.settings.max_in_flight)
        # A CLI command (purge, ...) opens the host with background=False and must not send
        # deliveries the server process owns.
        if not self.host.background:
            return
        # Merged with what deliver() queued before the start (a sink built by a live
        # change takes deliveries at once; its start reads the rest from the table).
        # With several nodes, each keeps the deliveries it queued: a start, and each
        # heartbeat, adopts those of dead nodes only (host.cluster).
        self._running = True
        rows = await self._adopt(mine=True)
        if rows:
            log.info("webhook: %d pending deliveries resumed", rows)
        self.host.cluster.on_beat.append(self._adopt_dead)
        self._worker = asyncio.create_task(self._work(), name="smshost-webhook-worker")

    async def _adopt(self, mine: bool = False) -> int:
        """Queue here the pending deliveries of dead nodes (or of none; ``mine``: and
        this node's, at a start); how many."""
        cluster = self.host.cluster
        rows = await self.host.store.write(
            lambda db: adopt(db, cluster.node_id, cluster.live_since(), mine))
        now = time.time()
        for delivery_id, next_at in rows:
            self._push(delivery_id, to_epoch(next_at) if next_at else now)
        return len(rows)

    async def _adopt_dead(self) -> None:
        since = self.host.cluster.live_since()
        if not self._running or not await self.host.store.read(
                lambda db: orphaned(db, since)):
            return  # the usual case: a read, no write transaction each heartbeat
        if count := await self._adopt():
            log.warning("webhook: %d pending deliveries of a node that died adopted", count)

    async def stop(self) -> None:
        self._running = False
        if self._adopt_dead in self.host.cluster.on_beat:
            self.host.cluster.on_beat.remove(self._adopt_dead)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        tasks = list(self._in_flight.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.stop_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if late:
                log.warning("webhook: %d deliveries under way at shutdown will be sent "
                            "again after the restart", len(late))
        self._in_flight.clear()
        self._due, self._queued, self._again = [], set(), {}  # in the table: read at start
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- delivery -----------------------------------------------------------------------

    async def deliver(self, message: Message, route: Route) -> Delivery:
        name = self._target_name(route.target)
        if name not in self.settings.targets:
            return Delivery.failed(self.check_target(route.target) or "no webhook target")
        delivery_id, created = await self.host.store.write(
            lambda db: self._enqueue(db, message, route, name))
        if created:
            self._push(delivery_id, time.time())
        return Delivery.delivered(f"queued for webhook {name}", delivery_id=delivery_id)

    def enter(self, db: Database, message: Message, route: Route) -> Delivery | None:
        """The delivery's row, in the write that stores the MO (routing at ingest): the
        same row :meth:`deliver` writes; an unknown target is the router's (its
        fallback to the default route)."""
        name = self._target_name(route.target)
        if name not in self.settings.targets:
            return None
        delivery_id, _ = self._enqueue(db, message, route, name)
        return Delivery.delivered(f"queued for webhook {name}", delivery_id=delivery_id)

    def entered(self, delivery: Delivery) -> None:
        """Committed: the worker sends it now (after a crash, the start does)."""
        delivery_id = (delivery.data or {}).get("delivery_id")
        if delivery_id is not None:
            self._push(int(delivery_id), time.time())

    def _enqueue(self, db: Database, message: Message, route: Route,
                 name: str) -> tuple[int, bool]:
        now = utcnow()
        payload = json.dumps(build_payload(message, route, name, now), ensure_ascii=False,
                             separators=(",", ":"))
        return enqueue(db, message.id, route.name, name, payload, now,
                       self.host.cluster.node_id)

    async def status_changed(self, message: Message, old: str | None, new: str,
                             event: StatusEvent) -> None:
        """Queue a status event for ``status_target`` (O8): one delivery per change."""
        name = self.settings.status_target
        now = utcnow()
        payload = json.dumps({
            "event": "message.status", "message_id": message.id,
            "direction": message.direction,
            "broker": message.broker, "account": message.account, "from": message.local,
            "to": message.remote, "broker_message_id": message.broker_message_id,
            "old": old, "new": new, "at": event.at, "source": event.source,
            "detail": event.detail}, ensure_ascii=False, separators=(",", ":"))
        delivery_id, created = await self.host.store.write(
            lambda db: enqueue(db, message.id, f"status:{event.id}", name, payload, now,
                               self.host.cluster.node_id))
        if created:
            self._push(delivery_id, time.time())

    def _push(self, delivery_id: int, when: float) -> None:
        if delivery_id in self._in_flight:
            self._again[delivery_id] = min(when, self._again.get(delivery_id, when))
            return
        if delivery_id in self._queued:
            return
        heapq.heappush(self._due, (when, delivery_id))
        self._queued.add(delivery_id)
        self._wake.set()

    async def _work(self) -> None:
        """Start every due delivery while slots are free; sleep until the next is due."""
        while self._running:
            self._wake.clear()
            now = time.time()
            batch: list[int] = []
            free = self.settings.max_in_flight - len(self._in_flight)
            while self._due and self._due[0][0] <= now and len(batch) < free:
                _, delivery_id = heapq.heappop(self._due)
                self._queued.discard(delivery_id)
                batch.append(delivery_id)
            if batch:
                await self._launch(batch)
                continue
            timeout = IDLE_WAKEUP
            if self._due and free > 0:
                timeout = min(timeout, max(0.0, self._due[0][0] - now))
            try:
                async with asyncio.timeout(timeout):  # not wait_for: 3.11's may lose a cancel
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _launch(self, batch: list[int]) -> None:
        marks = ",".join("?" * len(batch))
        try:
            # At most max_in_flight rows by primary key: read on the loop, as a hop to a
            # worker thread per batch would cost more than the lookup (one per delivery
            # when messages come one by one).
            rows = self.host.store.read_now(lambda db: list(db.query(
                f"select * from webhook_deliveries where id in ({marks}) "
                "and status = 'pending'", batch)))
        # The worker must live on: put the batch back and try again shortly, logged once
        # per failing spell (BLE001).
        except Exception as exc:  # noqa: BLE001
            self.outage.failed(exc)
            for delivery_id in batch:
                self._push(delivery_id, time.time() + 1.0)
            await asyncio.sleep(1.0)
            return
        for row in rows:
            task = asyncio.create_task(self._attempt(row), name=f"smshost-webhook-{row['id']}")
            self._in_flight[row["id"]] = task

    async def _attempt(self, row: dict[str, Any]) -> None:
        delivery_id = row["id"]
        retry_at: float | None = None
        try:
            result = await self._post(row)
            stored = await self.host.store.write(lambda db: record(db, row, result))
            if stored and result.outcome == "retry":
                retry_at = result.next_attempt
            if stored and result.outcome == "dead":
                log.warning("webhook delivery %d to %s is a dead letter after %d attempt(s): "
                            "%s", delivery_id, row["target"], row["attempts"] + 1,
                            result.error)
        except asyncio.CancelledError:
            raise
        # One delivery must not stop the worker, nor be left behind: it stays pending and
        # is tried again after a backoff, as after a failed attempt (BLE001).
        except Exception as exc:  # noqa: BLE001
            errors = self._errors[delivery_id] = self._errors.get(delivery_id, 0) + 1
            if expected(exc):  # the database refused the outcome: once per failing spell
                self.outage.failed(exc, f"delivery {delivery_id}")
            else:
                log.exception("webhook delivery %d failed unexpectedly; trying again later",
                              delivery_id)
            retry_at = time.time() + backoff(self.settings, row["attempts"] + errors)
        else:
            self._errors.pop(delivery_id, None)
            self.outage.succeeded()
        finally:
            self._in_flight.pop(delivery_id, None)
            again = self._again.pop(delivery_id, None)
            when = [t for t in (retry_at, again) if t is not None]
            if when and self._running:
                self._push(delivery_id, min(when))
            self._wake.set()

    async def _post(self, row: dict[str, Any]) -> Result:
        started = time.time()
        target = self.settings.targets.get(row["target"])
        if target is None:
            return Result("dead", None, f"webhook target {row['target']!r} is no longer "
                           "configured in sinks.toml", started, time.time())
        assert self._session is not None
        body = f'{{"delivery_id":{row["id"]:d},'.encode() + row["payload"].encode()[1:]
        stamp = int(started)
        headers = {"User-Agent": f"smshost/{__version__}", **target.headers,
                   "Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(target.secret.reveal(), stamp, body),
                   DELIVERY_HEADER: str(row["id"])}
        status: int | None = None
        retry_after: float | None = None
        try:
            response = await self._session.request(
                "POST", target.url, headers, body, target.timeout,
                limit=RESPONSE_READ_LIMIT)
            status = response.status
            if status in (429, 503):
                retry_after = retry_after_seconds(response.headers.get("retry-after"),
                                                  time.time())
        except HttpError as exc:
            error = f"no answer within {target.timeout:g} s" if exc.timed_out else \
                f"cannot connect: {exc.connect_failure}" if exc.connect_failure else str(exc)
        else:
            text = response.body.decode("utf-8", "replace").strip()[:ERROR_BODY_CHARS]
            error = f"HTTP {status}" + (f": {text}" if text else "")
        finished = time.time()
        if status is not None and 200 <= status < 300:
            return Result("delivered", status, None, started, finished)
        # Kept and shown by the API: a receiver that echoes the request (its headers, an
        # API key among them) must not have it stored.
        error = redact(error, target.secrets())
        retryable = status is None or status >= 500 or status == 429
        if status is not None and 300 <= status < 400:
            error += " (redirects are not followed: configure the final URL)"
        if not retryable or row["attempts"] + 1 >= self.settings.max_attempts:
            return Result("dead", status, error, started, finished)
        delay = backoff(self.settings, row["attempts"] + 1)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.max_retry_after))
        return Result("retry", status, error, started, finished, finished + delay)

    # -- dead letters -------------------------------------------------------------------

    async def replay(self, delivery_id: int) -> dict[str, Any]:
        """Queue a dead letter again (404 unknown, 409 not a dead letter or no target)."""
        row = await self.host.store.read(lambda db: delivery_row(db, delivery_id))
        if row is None:
            raise ApiError(404, "not_found", f"no webhook delivery with id {delivery_id}")
        if row["status"] != "dead":
            raise ApiError(409, "not_dead", f"webhook delivery {delivery_id} is "
                           f"{row['status']}, not a dead letter; only dead letters are replayed")
        if row["target"] not in self.settings.targets:
            raise ApiError(409, "no_target", f"webhook target {row['target']!r} is not "
                           "configured in sinks.toml; add it, restart, then replay")
        now = utcnow()
        replayed = await self.host.store.write(lambda db: replay(db, delivery_id, now,
                                                      self.host.cluster.node_id))
        if replayed is None:  # replayed by someone else in between
            raise ApiError(409, "not_dead", f"webhook delivery {delivery_id} is no longer "
                           "a dead letter")
        self._push(delivery_id, time.time())
        log.info("webhook delivery %d to %s replayed", delivery_id, row["target"])
        return replayed

