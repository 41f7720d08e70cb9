"""The webhook sink: POST each routed message as signed JSON to a named target (SPEC S4).

Nothing is lost: :meth:`WebhookSink.deliver` only commits a row to ``webhook_deliveries``
and answers "delivered" to the router (the message is then in our hands). A background
worker POSTs due rows, at most ``max_in_flight`` at a time, through one shared aiohttp
session; it records every attempt in ``webhook_attempts``, retries network errors,
timeouts, 5xx and 429 (honouring ``Retry-After``) with exponential backoff and jitter,
and turns a permanent failure (another 4xx, a redirect) or the last failed attempt into
a dead letter, which the API and ``smshost webhooks`` list and replay. Pending rows are
picked up again after a restart, so delivery is at least once: receivers de-duplicate
by the ``X-Smshost-Delivery`` header (or the body's ``delivery_id``).

Settings (``[webhook]`` of ``config/sinks.toml``), payload, signature and API are
described in ``docs/sinks-webhook.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from sqlite_utils import Database, Migrations
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.routing import Route as WebRoute

from host.api import (DAY, HOUR, MAX_ID, ApiError, Delivery, Outage, Secret, Sink,
                      __version__, at_least, expected, from_epoch, greater_than, grown,
                      hookimpl, int_param, is_decimal, known_params, path_id, redact,
                      setting, to_epoch, utcnow)

if TYPE_CHECKING:
    from host.api import HostAPI, Message, StatusEvent
    from host.api import InboundRoute as Route

log = logging.getLogger("smshost.webhook")

SIGNATURE_HEADER = "X-Smshost-Signature"
DELIVERY_HEADER = "X-Smshost-Delivery"
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host",
                              SIGNATURE_HEADER.lower(), DELIVERY_HEADER.lower()})
ERROR_BODY_CHARS = 300  # of a refusing receiver's answer, kept as the error text
RESPONSE_READ_LIMIT = 65536  # bytes of a response read (the rest is dropped)
IDLE_WAKEUP = 60.0  # seconds the worker sleeps at most without news
STATUSES = ("pending", "delivered", "dead")


# -- settings ---------------------------------------------------------------------------

def _http_url(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) URL a webhook can be posted to, or None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc}): {value!r}"
    if parts.scheme not in ("http", "https"):
        return f"must be an http:// or https:// URL; got {value!r}"
    if not parts.hostname:
        return f"must name a host; got {value!r}"
    if parts.fragment:
        return f"must not have a #fragment; got {value!r}"
    return None


def _fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be from 0 to 1; got {value!r}"


@dataclass(frozen=True, slots=True)
class TargetSettings:
    """One webhook target (``[webhook.targets.NAME]``); a route names it in ``target``."""

    url: str = setting(help="The http:// or https:// URL the JSON is POSTed to.",
                       check=_http_url)
    secret: Secret = setting(
        help='Key of the HMAC-SHA256 signature (X-Smshost-Signature); a string, '
        '{ env = "NAME" } or { file = "PATH" }.')
    headers: dict[str, str] = setting(
        factory=dict, help="Extra request headers (e.g. an API key of the receiver).")
    timeout: float = setting(10.0, help="Seconds one POST may take (connect, send, answer); "
                             "then it is retried (at most an hour).",
                             check=greater_than(0, HOUR))

    def secrets(self) -> list[str]:
        """What is masked in a delivery's error: the signing secret, the extra headers'
        values (an API key of the receiver) and a password in the URL."""
        password = urlsplit(self.url).password
        return [self.secret.reveal(), *self.headers.values(), *([password] if password else [])]

    def problems(self) -> Iterator[tuple[tuple[str, ...], str]]:
        if not self.secret:
            yield ("secret",), "the signing secret must not be empty"
        for name in self.headers:
            if name.lower() in RESERVED_HEADERS:
                yield ("headers", name), f"header {name!r} is set by smshost itself"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The ``[webhook]`` table of ``config/sinks.toml``."""

    targets: dict[str, TargetSettings] = setting(
        factory=dict, help="Named targets ([webhook.targets.NAME] tables).")
    default_target: str = setting(
        "", help="The target of routes that name none (empty: such routes are an error).")
    status_target: str = setting(
        "", help="Target that receives every status change of outbound messages (queued, "
        "sent, delivered, failed...) as a JSON event (empty: none).")
    max_attempts: int = setting(10, help="Attempts before a delivery becomes a dead letter "
                                "(at most 1000).", check=at_least(1, 1000))
    first_delay: float = setting(2.0, help="Seconds before the first retry (at most a day).",
                                 check=greater_than(0, DAY))
    factor: float = setting(2.0, help="Each further retry waits this many times longer (at "
                            "most 100).", check=at_least(1, 100))
    max_delay: float = setting(900.0, help="Longest wait between two attempts (seconds, at "
                               "most a day).", check=greater_than(0, DAY))
    jitter: float = setting(0.2, help="Random spread of each wait, as a fraction of it (0.2: "
                            "+/-20%), so receivers coming back are not hit all at once.",
                            check=_fraction)
    max_retry_after: float = setting(
        3600.0, help="Longest Retry-After (seconds) of a 429 or 503 answer that is honoured "
        "(at most a day).", check=at_least(0, DAY))
    max_in_flight: int = setting(32, help="POSTs under way at the same time (all targets; "
                                 "at most 10000).", check=at_least(1, 10_000))
    stop_grace: float = setting(
        5.0, help="At shutdown, seconds POSTs under way may take to finish; the others are "
        "sent again after the restart (at most an hour).", check=at_least(0, HOUR))

    def problems(self) -> Iterator[tuple[tuple[str, ...], str]]:
        if self.status_target and self.status_target not in self.targets:
            yield ("status_target",), (f"no target named {self.status_target!r}; targets: "
                                       f"{', '.join(sorted(self.targets)) or 'none'}")
        if self.default_target and self.default_target not in self.targets:
            yield ("default_target",), (f"no target named {self.default_target!r}; targets: "
                                        f"{', '.join(sorted(self.targets)) or 'none'}")
        if self.max_delay < self.first_delay:
            yield ("max_delay",), (f"must be at least first_delay ({self.first_delay:g}); "
                                   f"got {self.max_delay:g}")


def backoff(settings: WebhookSettings, failed_attempts: int,
            rand: random.Random | None = None) -> float:
    """Seconds to wait after the ``failed_attempts``-th failed attempt (1 = the first)."""
    base = grown(settings.first_delay, settings.factor, failed_attempts - 1,
                 settings.max_delay)
    if settings.jitter:
        base *= 1 + (rand or random).uniform(-settings.jitter, settings.jitter)
    return max(0.0, min(settings.max_delay, base))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    if is_decimal(value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Smshost-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def build_payload(message: Message, route: Route, target: str, queued_at: str) -> dict[str, Any]:
    """The JSON body, without ``delivery_id`` (added when it is sent)."""
    inbound = message.direction == "in"
    return {
        "event": "message.inbound" if inbound else "message.outbound",
        "message": {
            "id": message.id,
            "direction": message.direction,
            "from": message.remote if inbound else message.local,
            "to": message.local if inbound else message.remote,
            "body": message.body,
            "broker": message.broker,
            "account": message.account,
            "broker_message_id": message.broker_message_id,
            "encoding": message.encoding,
            "segments": message.segments,
            "created_at": message.created_at,
            "attrs": message.attrs,
        },
        "route": {"name": route.name, "target": target, "type": route.type,
                  "pattern": route.pattern, "default": route.default},
        "queued_at": queued_at,
    }


# -- storage ----------------------------------------------------------------------------

migrations = Migrations("smshost-webhook")


@migrations()
def m001_deliveries(db: Database) -> None:
    db.execute("""
        create table webhook_deliveries (
            id integer primary key autoincrement,
            message_id integer,
            route text not null,
            target text not null,
            payload text not null,
            status text not null,
            attempts integer not null default 0,
            replays integer not null default 0,
            next_attempt_at text,
            last_attempt_at text,
            last_status integer,
            last_error text,
            created_at text not null,
            updated_at text not null,
            delivered_at text,
            dead_at text
        )""")
    db.execute("create unique index webhook_deliveries_once "
               "on webhook_deliveries (message_id, route, target)")
    db.execute("create index webhook_deliveries_status on webhook_deliveries (status, id)")
    db.execute("create index webhook_deliveries_updated on webhook_deliveries (updated_at)")
    db.execute("""
        create table webhook_attempts (
            id integer primary key,
            delivery_id integer not null references webhook_deliveries (id),
            attempt integer not null,
            replay integer not null,
            started_at text not null,
            finished_at text not null,
            http_status integer,
            outcome text not null,
            error text,
            next_attempt_at text
        )""")
    db.execute("create index webhook_attempts_delivery on webhook_attempts (delivery_id)")


@migrations()
def m002_target_index(db: Database) -> None:
    # The deliveries API filters by target (and status): read through this index in
    # id order, a target matching few or none of the rows costs a seek, not a scan.
    db.execute("create index webhook_deliveries_target on webhook_deliveries "
               "(target, status, id)")


_COLUMNS = ("id, message_id, route, target, status, attempts, replays, next_attempt_at, "
            "last_attempt_at, last_status, last_error, created_at, updated_at, delivered_at, "
            "dead_at")


def _enqueue(db: Database, message_id: int, route: str, target: str, payload: str,
             now: str) -> tuple[int, bool]:
    cur = db.conn.execute(
        "insert or ignore into webhook_deliveries (message_id, route, target, payload, "
        "status, next_attempt_at, created_at, updated_at) "
        "values (?, ?, ?, ?, 'pending', ?, ?, ?)",
        [message_id, route, target, payload, now, now, now])
    if cur.rowcount == 1:
        return int(cur.lastrowid or 0), True
    row = db.conn.execute("select id from webhook_deliveries where message_id = ? and "
                          "route = ? and target = ?", [message_id, route, target]).fetchone()
    return int(row[0]), False


@dataclass(frozen=True, slots=True)
class _Result:
    """How one attempt ended."""

    outcome: str  # "delivered", "retry" or "dead"
    http_status: int | None
    error: str | None
    started: float
    finished: float
    next_attempt: float | None = None


def _record(db: Database, row: dict[str, Any], result: _Result) -> bool:
    """Store the attempt; False when the row was no longer pending (replayed, purged)."""
    attempts = row["attempts"] + 1
    finished = from_epoch(result.finished)
    next_at = from_epoch(result.next_attempt) if result.next_attempt is not None else None
    cur = db.conn.execute(
        "update webhook_deliveries set status = ?, attempts = ?, next_attempt_at = ?, "
        "last_attempt_at = ?, last_status = ?, last_error = ?, updated_at = ?, "
        "delivered_at = ?, dead_at = ? where id = ? and status = 'pending' and replays = ?",
        ["pending" if result.outcome == "retry" else result.outcome, attempts, next_at,
         from_epoch(result.started), result.http_status, result.error, finished,
         finished if result.outcome == "delivered" else None,
         finished if result.outcome == "dead" else None, row["id"], row["replays"]])
    if cur.rowcount != 1:
        return False
    db.conn.execute(
        "insert into webhook_attempts (delivery_id, attempt, replay, started_at, finished_at, "
        "http_status, outcome, error, next_attempt_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [row["id"], attempts, row["replays"], from_epoch(result.started), finished,
         result.http_status, result.outcome, result.error, next_at])
    return True


def _replay(db: Database, delivery_id: int, now: str) -> dict[str, Any] | None:
    cur = db.conn.execute(
        "update webhook_deliveries set status = 'pending', attempts = 0, "
        "replays = replays + 1, next_attempt_at = ?, dead_at = null, updated_at = ? "
        "where id = ? and status = 'dead'", [now, now, delivery_id])
    if cur.rowcount != 1:
        return None
    return _one(db, delivery_id)


WAITING_AND_DEAD = ("select status, count(*) from webhook_deliveries where status in "
                    "('pending', 'dead') group by status")


def _waiting_and_dead(db: Database) -> Iterator[tuple[tuple[str], int]]:
    """Pending and dead deliveries, counted on the index webhook_deliveries_status
    (no table row read; delivered ones, the bulk, are not walked)."""
    counts = dict(db.execute(WAITING_AND_DEAD).fetchall())
    for status in ("pending", "dead"):
        yield (status,), counts.get(status, 0)


def _one(db: Database, delivery_id: int) -> dict[str, Any] | None:
    rows = list(db.query(f"select {_COLUMNS} from webhook_deliveries where id = ?",
                         [delivery_id]))
    return rows[0] if rows else None


# -- the sink ---------------------------------------------------------------------------

class WebhookSink(Sink):
    """POSTs routed messages to webhook targets, durably, with retries and dead letters."""

    kind = "webhook"
    settings_class = WebhookSettings

    def __init__(self, host: HostAPI, settings: WebhookSettings) -> None:
        super().__init__(host, settings)
        self.settings: WebhookSettings = settings
        self._session: aiohttp.ClientSession | None = None
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
            "letters (dead), at scrape time.", ("status",), _waiting_and_dead)

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
        problem = _http_url(found.url)
        return f"webhook target {name!r}: url {problem}" if problem else None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.max_in_flight),
            headers={"User-Agent": f"smshost/{__version__}"}, trust_env=False)
        # A CLI command (purge, ...) opens the host with background=False and must not send
        # deliveries the server process owns.
        if not self.host.background:
            return
        rows = await self.host.store.read(lambda db: list(db.execute(
            "select id, next_attempt_at from webhook_deliveries where status = 'pending'")))
        self._due, self._queued, self._again = [], set(), {}
        now = time.time()
        for delivery_id, next_at in rows:
            self._push(delivery_id, to_epoch(next_at) if next_at else now)
        if rows:
            log.info("webhook: %d pending deliveries resumed", len(rows))
        self._running = True
        self._worker = asyncio.create_task(self._work(), name="smshost-webhook-worker")

    async def stop(self) -> None:
        self._running = False
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
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- delivery -----------------------------------------------------------------------

    async def deliver(self, message: Message, route: Route) -> Delivery:
        name = self._target_name(route.target)
        if name not in self.settings.targets:
            return Delivery.failed(self.check_target(route.target) or "no webhook target")
        now = utcnow()
        payload = json.dumps(build_payload(message, route, name, now), ensure_ascii=False,
                             separators=(",", ":"))
        delivery_id, created = await self.host.store.write(
            lambda db: _enqueue(db, message.id, route.name, name, payload, now))
        if created:
            self._push(delivery_id, time.time())
        return Delivery.delivered(f"queued for webhook {name}", delivery_id=delivery_id)

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
            lambda db: _enqueue(db, message.id, f"status:{event.id}", name, payload, now))
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
                await asyncio.wait_for(self._wake.wait(), timeout)
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
            stored = await self.host.store.write(lambda db: _record(db, row, result))
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

    async def _post(self, row: dict[str, Any]) -> _Result:
        started = time.time()
        target = self.settings.targets.get(row["target"])
        if target is None:
            return _Result("dead", None, f"webhook target {row['target']!r} is no longer "
                           "configured in sinks.toml", started, time.time())
        assert self._session is not None
        body = ('{"delivery_id":%d,' % row["id"]).encode() + row["payload"].encode()[1:]
        stamp = int(started)
        headers = {**target.headers, "Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(target.secret.reveal(), stamp, body),
                   DELIVERY_HEADER: str(row["id"])}
        status: int | None = None
        retry_after: float | None = None
        try:
            async with self._session.post(
                    target.url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=target.timeout)) as response:
                status = response.status
                answer = await _read_some(response)
                if status in (429, 503):
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"),
                                                      time.time())
        except TimeoutError:
            error = f"no answer within {target.timeout:g} s"
        except aiohttp.ClientConnectorError as exc:
            error = f"cannot connect: {exc.os_error or exc}"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            text = answer.decode("utf-8", "replace").strip()[:ERROR_BODY_CHARS]
            error = f"HTTP {status}" + (f": {text}" if text else "")
        finished = time.time()
        if status is not None and 200 <= status < 300:
            return _Result("delivered", status, None, started, finished)
        # Kept and shown by the API: a receiver that echoes the request (its headers, an
        # API key among them) must not have it stored.
        error = redact(error, target.secrets())
        retryable = status is None or status >= 500 or status == 429
        if status is not None and 300 <= status < 400:
            error += " (redirects are not followed: configure the final URL)"
        if not retryable or row["attempts"] + 1 >= self.settings.max_attempts:
            return _Result("dead", status, error, started, finished)
        delay = backoff(self.settings, row["attempts"] + 1)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.max_retry_after))
        return _Result("retry", status, error, started, finished, finished + delay)

    # -- dead letters -------------------------------------------------------------------

    async def replay(self, delivery_id: int) -> dict[str, Any]:
        """Queue a dead letter again (404 unknown, 409 not a dead letter or no target)."""
        row = await self.host.store.read(lambda db: _one(db, delivery_id))
        if row is None:
            raise ApiError(404, "not_found", f"no webhook delivery with id {delivery_id}")
        if row["status"] != "dead":
            raise ApiError(409, "not_dead", f"webhook delivery {delivery_id} is "
                           f"{row['status']}, not a dead letter; only dead letters are replayed")
        if row["target"] not in self.settings.targets:
            raise ApiError(409, "no_target", f"webhook target {row['target']!r} is not "
                           "configured in sinks.toml; add it, restart, then replay")
        now = utcnow()
        replayed = await self.host.store.write(lambda db: _replay(db, delivery_id, now))
        if replayed is None:  # replayed by someone else in between
            raise ApiError(409, "not_dead", f"webhook delivery {delivery_id} is no longer "
                           "a dead letter")
        self._push(delivery_id, time.time())
        log.info("webhook delivery %d to %s replayed", delivery_id, row["target"])
        return replayed


async def _read_some(response: aiohttp.ClientResponse) -> bytes:
    """Up to RESPONSE_READ_LIMIT bytes of the answer (all of it keeps the connection)."""
    data = b""
    while len(data) < RESPONSE_READ_LIMIT:
        chunk = await response.content.read(RESPONSE_READ_LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return data


# -- API --------------------------------------------------------------------------------

def _sink(request: Request) -> WebhookSink:
    host: HostAPI = request.app.state.host
    sink = host.sink(WebhookSink.kind)
    if not isinstance(sink, WebhookSink):
        raise ApiError(503, "unavailable", "the webhook sink is not running; see "
                       "`smshost check` or /health")
    return sink


async def _list(request: Request, status: str | None) -> Response:
    sink = _sink(request)
    allowed = ("before", "limit", *(("status",) if status is None else ()), "target")
    known_params(request.query_params, allowed)
    status = status or request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "bad_parameter", f"status must be one of {', '.join(STATUSES)}")
    limit = int_param(request.query_params, "limit", 50, 1, 500) or 50
    before = int_param(request.query_params, "before", None, 1, MAX_ID)
    sql, args = _list_query(status, request.query_params.get("target") or None, before)
    rows = await sink.host.store.read(lambda db: list(db.query(sql, [*args, limit])))
    return JSONResponse({"deliveries": rows,
                         "next_before": rows[-1]["id"] if len(rows) == limit else None})


def _list_query(status: str | None, target: str | None,
                before: int | None) -> tuple[str, list[Any]]:
    """Deliveries newest first, each filter read through an index in id order: with a
    target, one arm per status in webhook_deliveries_target (merged by id), so a page
    reads the rows it lists however few match; with a status only, its range of
    webhook_deliveries_status."""
    tail, tail_args = ([" and id < ?"], [before]) if before is not None else ([], [])
    arms: list[tuple[str, list[Any]]] = []
    if target is not None:
        arms = [("target = ? and status = ?", [target, s])
                for s in ((status,) if status is not None else STATUSES)]
    elif status is not None:
        arms = [("status = ?", [status])]
    if not arms:
        where = " where id < ?" if before is not None else ""
        return (f"select {_COLUMNS} from webhook_deliveries{where} order by id desc "
                "limit ?", tail_args)
    selects = [f"select {_COLUMNS} from webhook_deliveries where {a}{''.join(tail)}"
               for a, _ in arms]
    return (" union all ".join(selects) + " order by id desc limit ?",
            [v for _, values in arms for v in (*values, *tail_args)])


async def _dead_letters(request: Request) -> Response:
    return await _list(request, "dead")


async def _deliveries(request: Request) -> Response:
    return await _list(request, None)


def _path_id(request: Request) -> int:
    return path_id(request, "id", "webhook delivery")


async def _delivery(request: Request) -> Response:
    sink = _sink(request)
    delivery_id = _path_id(request)

    def read(db: Database) -> dict[str, Any] | None:
        row = _one(db, delivery_id)
        if row is not None:
            row["payload"] = json.loads(db.execute(
                "select payload from webhook_deliveries where id = ?",
                [delivery_id]).fetchone()[0])
            row["attempt_log"] = list(db.query(
                "select attempt, replay, started_at, finished_at, http_status, outcome, "
                "error, next_attempt_at from webhook_attempts where delivery_id = ? "
                "order by id", [delivery_id]))
        return row

    row = await sink.host.store.read(read)
    if row is None:
        raise ApiError(404, "not_found", f"no webhook delivery with id {delivery_id}")
    return JSONResponse(row)


async def _replay_route(request: Request) -> Response:
    sink = _sink(request)
    return JSONResponse(await sink.replay(_path_id(request)))


# -- hooks ------------------------------------------------------------------------------

@hookimpl
def message_status_changed(host: HostAPI, message: Message, old: str | None, new: str,
                           event: StatusEvent) -> Awaitable[None] | None:
    # Synchronous when there is nothing to deliver (every MO): no coroutine per message.
    if message.direction != "out":
        return None
    sink = host.sink("webhook")
    if isinstance(sink, WebhookSink) and sink.settings.status_target and \
            host.background:
        return sink.status_changed(message, old, new, event)
    return None


@hookimpl
def register_sinks(register: Any) -> None:
    register(WebhookSink)


@hookimpl
def register_migrations(register: Any) -> None:
    register(migrations)


@hookimpl
def register_routes(host: HostAPI) -> list[BaseRoute] | None:
    return [
        WebRoute("/api/webhooks/deliveries", _deliveries, methods=["GET"]),
        WebRoute("/api/webhooks/deliveries/{id}", _delivery, methods=["GET"]),
        WebRoute("/api/webhooks/dead-letters", _dead_letters, methods=["GET"]),
        WebRoute("/api/webhooks/dead-letters/{id}/replay", _replay_route, methods=["POST"]),
    ]


@hookimpl
def messages_kept(host: HostAPI) -> str:
    """The messages of deliveries still pending: the work is not done (a receiver down
    for longer than the purge age gets them once it is back, and the API shows them)."""
    return "select message_id from webhook_deliveries where status = 'pending'"


@hookimpl
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    """Delivered and dead deliveries older than the cutoff, with their attempts; pending
    ones stay however old (their worker still has them)."""
    return await host.store.purge_table(
        "webhook_deliveries", "updated_at", cutoff, batch_size=batch_size,
        pause=host.settings.purge.pause_ms / 1000, dry_run=dry_run,
        children=[("webhook_attempts", "delivery_id")],
        keep="select id from webhook_deliveries where status = 'pending'")
