"""Prometheus metrics of one host, in its own registry (no global state)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from host import __version__
from host.errors import StoreClosed

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.models import Message
    from host.plugins import HookFailure, Plugins
    from host.purge import Purger
    from host.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STORED_REFRESH = 1.0  # seconds a read of the stored gauges serves scrapes
log = logging.getLogger("smshost.metrics")
Samples = Iterable[tuple[tuple[str, ...], float]]  # (label values, value)


@dataclass(slots=True)
class StoredGauge:
    """A gauge read from the database at scrape time (on a reader thread, before the
    scrape is rendered). ``read`` must be an indexed query: it runs on every scrape."""

    name: str
    help: str
    labels: tuple[str, ...]
    read: Callable[[Database], Samples]
    samples: list[tuple[tuple[str, ...], float]] | None = field(default=None)
    counter: bool = False  # a counter: ``read`` never lowers a value while running

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise to every scrape


class Metrics:
    """The counters the core updates, plus collectors read at scrape time."""

    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "smshost_http_requests", "HTTP requests answered.",
            ["listener", "method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "smshost_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["listener", "route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.stored = Counter(
            "smshost_messages_stored", "Messages durably stored, by direction and first status.",
            ["direction", "status"], registry=self.registry)
        self.status_changes = Counter(
            "smshost_message_status_changes", "Status changes applied to stored messages.",
            ["direction", "status"], registry=self.registry)
        self.webhooks = Counter(
            "smshost_broker_webhooks", "Broker webhook requests by outcome (stored, duplicate, "
            "applied, orphan, or the HTTP status of a refusal).",
            ["broker", "kind", "outcome"], registry=self.registry)
        self.refusals = Counter(
            "smshost_sends_refused", "Sends refused at acceptance (never queued), by source "
            "(api, handler, optout...) and reason (no_route, opted_out...).",
            ["source", "reason"], registry=self.registry)
        self.connections_closed = Counter(
            "smshost_connections_closed", "Connections closed by a listener's limits (reason: "
            "header_timeout, body_timeout, idle_timeout, write_timeout, limit or "
            "head_too_large).",
            ["listener", "reason"], registry=self.registry)
        self.connections = Gauge(
            "smshost_connections_open", "Connections open on a listener (a few times per "
            "timeout).", ["listener"], registry=self.registry)
        self.hook_errors = Counter(
            "smshost_plugin_hook_errors", "Hook implementations that raised.",
            ["plugin", "hook"], registry=self.registry)
        self.logins = Counter(
            "smshost_logins", "Login attempts (POST /api/session, /login) by outcome: ok, "
            "failed (wrong login or password) or limited (refused 429 after too many "
            "failures).", ["outcome"], registry=self.registry)
        self.stored_gauges: list[StoredGauge] = []
        self.clock = time.monotonic  # tests set a fake one
        self._read_at: float | None = None
        self._reading: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def attach(self, role: str, uptime: Callable[[], float], plugins: Plugins,
               store: Store, purger: Purger) -> None:
        """Add the collectors that read the node's state at scrape time."""
        self.registry.register(_NodeCollector(self, role, uptime, plugins, store, purger))
        self.stored_gauge("smshost_outbox_messages",
                          "Messages in the outbox by broker instance and account: queued "
                          "(waiting for their turn or a retry) or in_flight (being sent).",
                          ("broker", "account", "state"), _outbox_depth)

    def stored_gauge(self, name: str, help: str, labels: tuple[str, ...],
                     read: Callable[[Database], Samples]) -> None:
        """Add a gauge whose samples ``read(db)`` gives at each scrape (plugins too); a
        gauge of the same name is replaced (a sink built again by a live change)."""
        self.stored_gauges[:] = [g for g in self.stored_gauges if g.name != name]
        self.stored_gauges.append(StoredGauge(name, help, labels, read))

    def stored_counter(self, name: str, help: str, labels: tuple[str, ...],
                       read: Callable[[Database], Samples]) -> None:
        """:meth:`stored_gauge` for a counter (exposed as ``name_total``): ``read``
        keeps its own totals and must never lower one while the process runs."""
        self.stored_gauges[:] = [g for g in self.stored_gauges if g.name != name]
        self.stored_gauges.append(StoredGauge(name, help, labels, read, counter=True))

    async def refresh(self, store: Store) -> None:
        """Read the stored gauges, all in one read on a reader thread, unless they were
        read less than STORED_REFRESH seconds ago; scrapes at the same time share one
        read. A gauge whose read fails (the store closed, a plugin's table missing) is
        left out of the scrape."""
        loop = asyncio.get_running_loop()
        if self._reading is None or self._reading[0] is not loop:  # a lock per event loop
            self._reading = (loop, asyncio.Lock())
        async with self._reading[1]:
            if self._read_at is not None and self.clock() - self._read_at < STORED_REFRESH:
                return
            await self._read_stored(store)
            self._read_at = self.clock()

    async def _read_stored(self, store: Store) -> None:
        gauges = list(self.stored_gauges)

        def read_all(db: Database) -> None:
            for gauge in gauges:
                try:
                    gauge.samples = list(gauge.read(db))
                # A plugin's read must not break the scrape: that gauge is left out (BLE001).
                except Exception as exc:  # noqa: BLE001
                    gauge.samples = None
                    log.warning("metric %s not read: %s", gauge.name, exc)

        try:
            await store.read(read_all)
        # No database, no stored gauges; the other metrics are still served (BLE001).
        except Exception as exc:  # noqa: BLE001
            for gauge in gauges:
                gauge.samples = None
            if not isinstance(exc, StoreClosed):
                log.warning("stored metrics not read: %s", exc)

    def _child(self, metric: Any, *labels: str) -> Any:
        """The labelled child of ``metric``, cached (``labels()`` costs a lock and a
        lookup on every call of the hot path)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, listener: str, method: str, route: str, status: int,
                        seconds: float) -> None:
        self._child(self.requests, listener, method, route, str(status)).inc()
        self._child(self.latency, listener, route).observe(seconds)

    def connection_closed(self, listener: str, reason: str) -> None:
        self._child(self.connections_closed, listener, reason).inc()

    def connections_open(self, listener: str, count: int) -> None:
        self._child(self.connections, listener).set(count)

    def webhook(self, broker: str, kind: str, outcome: str) -> None:
        self._child(self.webhooks, broker, kind, outcome).inc()

    def message_stored(self, message: Message) -> None:
        self._child(self.stored, message.direction, message.status).inc()

    def status_changed(self, message: Message) -> None:
        self._child(self.status_changes, message.direction, message.status).inc()

    def send_refused(self, source: str, reason: str) -> None:
        self._child(self.refusals, source, reason).inc()

    def login(self, outcome: str) -> None:
        self.logins.labels(outcome).inc()

    def hook_failed(self, failure: HookFailure) -> None:
        self.hook_errors.labels(failure.plugin, failure.hook).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _NodeCollector(Collector):
    def __init__(self, metrics: Metrics, role: str, uptime: Callable[[], float],
                 plugins: Plugins, store: Store, purger: Purger) -> None:
        self._metrics = metrics
        self._role = role
        self._uptime = uptime
        self._plugins = plugins
        self._store = store
        self._purger = purger

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("smshost_info", "Version and role of this node.",
                                 labels=["version", "role"])
        info.add_metric([__version__, self._role], 1)
        yield info
        uptime = GaugeMetricFamily("smshost_uptime_seconds", "Seconds since startup.")
        uptime.add_metric([], self._uptime())
        yield uptime
        failures = GaugeMetricFamily("smshost_plugin_load_failures",
                                     "Plugin items that failed to load.", labels=["kind"])
        by_kind: dict[str, int] = {}
        for record in self._plugins.failures:
            by_kind[record.kind] = by_kind.get(record.kind, 0) + 1
        for kind, count in sorted(by_kind.items()):
            failures.add_metric([kind], count)
        yield failures
        stats = self._store.stats
        commits = CounterMetricFamily("smshost_store_commits", "Write transactions committed.")
        commits.add_metric([], stats.commits)
        yield commits
        writes = CounterMetricFamily("smshost_store_writes", "Writes committed (grouped).")
        writes.add_metric([], stats.writes)
        yield writes
        yield from _purge_metrics(self._purger)
        for gauge in self._metrics.stored_gauges:
            if gauge.samples is not None:
                family: CounterMetricFamily | GaugeMetricFamily = (
                    CounterMetricFamily if gauge.counter else GaugeMetricFamily)(
                    gauge.name, gauge.help, labels=list(gauge.labels))
                for labels, value in gauge.samples:
                    family.add_metric(list(labels), value)
                yield family


def _purge_metrics(purger: Purger) -> Iterator[Metric]:
    """How the purges of this process went: alert on a failed one, or on a last success
    older than a day or two."""
    runs = CounterMetricFamily("smshost_purge_runs", "Purges run by this process, by "
                               "outcome: ok, or failed (incomplete: see the log or "
                               "/health).", labels=["outcome"])
    for outcome, count in sorted(purger.runs.items()):
        runs.add_metric([outcome], count)
    yield runs
    last = GaugeMetricFamily("smshost_purge_last_success_timestamp_seconds",
                             "End of the last complete purge of this process (Unix "
                             "time); 0: none since the start.")
    last.add_metric([], purger.last_success.timestamp() if purger.last_success else 0)
    yield last


OUTBOX_DEPTH = ("select broker, account, in_flight, count(*) from outbox "
                "group by broker, account, in_flight")


def _outbox_depth(db: Database) -> Samples:
    """Every (broker, account) with messages waiting, from the index outbox_account_due
    (its leading columns: no table row is read; ~120 ms for 1 M waiting messages, well
    under 1 ms for the usual few thousand)."""
    rows = db.execute(OUTBOX_DEPTH).fetchall()
    for broker, account, in_flight, count in rows:
        yield (broker, account, "in_flight" if in_flight else "queued"), count
