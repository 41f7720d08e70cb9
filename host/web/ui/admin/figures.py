"""The dashboard's figures (issue 15 point 1), read once for the page and for each
update of its live stream: the node's health, listeners, brokers and their recent
errors, the last hour's traffic, the outbox, dead letters, queues and load failures.

The database is read once per call: the traffic (host.traffic, bounded and indexed)
and the stored gauges the core and the plugins declare (host.metrics: the outbox by
account, the webhook sink's pending and dead deliveries, the queues' waiting
interactions). The plugins' numbers come through those gauges, by name: the host
never imports a plugin.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlite_utils import Database

from host.traffic import BrokerErrors, Minute, broker_errors, in_snapshot, per_minute
from host.web.health import health_of
from host.web.ui.admin.chart import chart
from host.web.ui.admin.frame import Admin

OUTBOX = "smshost_outbox_messages"
DELIVERIES = "smshost_webhook_deliveries"
QUEUE_WAITING = "smshost_queue_waiting"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


clock: Clock = utc_now
"""Now, for the window of the traffic figures (tests set a fixed one)."""


@dataclass(frozen=True, slots=True)
class Traffic:
    minutes: list[Minute]
    errors: dict[str, BrokerErrors]


async def figures(admin: Admin) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data (the page renders it, the
    live stream sends it)."""
    host = admin.host
    health = await health_of(host)
    names = [b.name for b in host.settings.brokers]
    now = clock()

    def read(db: Database) -> Traffic:
        return in_snapshot(db, lambda: Traffic(per_minute(db, now),
                                               broker_errors(db, names, now)))

    traffic = await host.store.read(read)
    gauges = await _gauges(admin)
    found: dict[str, Any] = {
        "status": health["status"], "role": health["role"], "version": health["version"],
        "database": {"ok": health["database"]["ok"]},
        "config": health["config"], "purge": {"ok": health["purge"]["ok"]},
        "listeners": _listeners(admin),
        "brokers": _brokers(admin, traffic.errors, _refused(admin)),
        "traffic": _traffic(traffic.minutes),
        **gauges,
        "failures": {"plugins": health["plugins"]["failures"],
                     "handlers": health["handlers"]["failures"],
                     "routes_without_handler": health["handlers"]["routes_without_handler"]},
    }
    found["shape"] = shape(found)
    return found


def shape(found: dict[str, Any]) -> str:
    """What the page's layout depends on (the listeners, brokers, failures, queues and
    configuration version): when it changes, the live script offers a reload instead
    of updating numbers in rows that no longer match."""
    parts = {"listeners": found["listeners"], "config": found["config"].get("version"),
             "brokers": [(b["name"], b["enabled"], b["mo"], b["mt"], b["running"])
                         for b in found["brokers"]],
             "failures": found["failures"],
             "queues": [q["queue"] for q in found["queues"] or ()],
             "gauges": [found[k] is None for k in ("outbox", "webhooks", "queues")]}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _listeners(admin: Admin) -> list[dict[str, Any]]:
    return [{"name": s.name, "host": s.host, "port": s.port,
             "https": s.certfile is not None, "api": s.api}
            for s in admin.host.settings.listeners]


def _brokers(admin: Admin, errors: dict[str, BrokerErrors],
             refused: dict[str, int]) -> list[dict[str, Any]]:
    running = admin.host.brokers
    out = []
    for b in admin.host.settings.brokers:
        recent = errors.get(b.name, BrokerErrors(0, 0))
        rate = recent.rate
        out.append({"name": b.name, "definition": b.definition, "enabled": b.enabled,
                    "mo": b.mo_active, "mt": b.mt_active, "running": b.name in running,
                    "problems": list(b.config_problems), "sent": recent.sent,
                    "failed": recent.failed,
                    "rate": None if rate is None else f"{rate:.0%}",
                    "refused": refused.get(b.name, 0)})
    return out


def _refused(admin: Admin) -> dict[str, int]:
    """Webhooks refused per broker instance since the node started (the counter
    smshost_broker_webhooks: its outcomes that are an HTTP status)."""
    counts: dict[str, int] = {}
    for metric in admin.host.metrics.webhooks.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["outcome"].isdigit():
                broker = sample.labels["broker"]
                counts[broker] = counts.get(broker, 0) + int(sample.value)
    return counts


def _traffic(minutes: list[Minute]) -> dict[str, Any]:
    return {"minutes": [asdict(m) for m in minutes],
            "in": sum(m.inbound for m in minutes), "out": sum(m.outbound for m in minutes),
            "chart": chart(minutes)}


async def _gauges(admin: Admin) -> dict[str, Any]:
    """The outbox, the webhook sink's deliveries and (for a supervisor) the queues, from
    the stored gauges; a figure whose gauge is absent (its plugin is off) is None."""
    metrics = admin.host.metrics
    await metrics.refresh(admin.host.store)
    samples = {g.name: g.samples for g in metrics.stored_gauges}
    outbox = samples.get(OUTBOX)
    deliveries = samples.get(DELIVERIES)
    waiting = samples.get(QUEUE_WAITING)
    by_state = {"queued": 0, "in_flight": 0}
    for labels, value in outbox or ():
        by_state[labels[2]] = by_state.get(labels[2], 0) + int(value)
    status = {labels[0]: int(value) for labels, value in deliveries or ()}
    return {
        "outbox": by_state if outbox is not None else None,
        "webhooks": None if deliveries is None else {"dead": status.get("dead", 0),
                                                     "pending": status.get("pending", 0)},
        "queues": None if waiting is None or not admin.may("supervise") else
        [{"queue": labels[0], "waiting": int(value)} for labels, value in waiting],
    }
