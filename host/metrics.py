"""Prometheus metrics of one host, in its own registry (no global state)."""

from __future__ import annotations

import time
from collections.abc import Iterator
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

if TYPE_CHECKING:
    from host.core import Host
    from host.models import Message
    from host.plugins import HookFailure

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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
        self.connections_closed = Counter(
            "smshost_connections_closed", "Connections closed by a listener's limits (reason: "
            "header_timeout, body_timeout, idle_timeout, write_timeout or limit).",
            ["listener", "reason"], registry=self.registry)
        self.connections = Gauge(
            "smshost_connections_open", "Connections open on a listener (a few times per "
            "timeout).", ["listener"], registry=self.registry)
        self.hook_errors = Counter(
            "smshost_plugin_hook_errors", "Hook implementations that raised.",
            ["plugin", "hook"], registry=self.registry)

    def attach(self, host: Host) -> None:
        """Add the collectors that read the host's state at scrape time."""
        self.registry.register(_HostCollector(host))

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

    def hook_failed(self, failure: HookFailure) -> None:
        self.hook_errors.labels(failure.plugin, failure.hook).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _HostCollector(Collector):
    def __init__(self, host: Host) -> None:
        self._host = host

    def collect(self) -> Iterator[Metric]:
        host = self._host
        info = GaugeMetricFamily("smshost_info", "Version and role of this node.",
                                 labels=["version", "role"])
        info.add_metric([__version__, host.settings.server.role], 1)
        yield info
        uptime = GaugeMetricFamily("smshost_uptime_seconds", "Seconds since startup.")
        uptime.add_metric([], time.monotonic() - host.started_monotonic
                          if host.started_monotonic else 0)
        yield uptime
        failures = GaugeMetricFamily("smshost_plugin_load_failures",
                                     "Plugin items that failed to load.", labels=["kind"])
        by_kind: dict[str, int] = {}
        for record in host.plugins.failures:
            by_kind[record.kind] = by_kind.get(record.kind, 0) + 1
        for kind, count in sorted(by_kind.items()):
            failures.add_metric([kind], count)
        yield failures
        stats = host.store.stats
        commits = CounterMetricFamily("smshost_store_commits", "Write transactions committed.")
        commits.add_metric([], stats.commits)
        yield commits
        writes = CounterMetricFamily("smshost_store_writes", "Writes committed (grouped).")
        writes.add_metric([], stats.writes)
        yield writes
