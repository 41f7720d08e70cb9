"""Scheduled purge of old data (SPEC P2).

The core's tables and every plugin's are purged through the ``purge`` hook; each
implementation deletes in bounded batches with a pause between them
(``Store.purge_table``), so live traffic keeps getting the writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from host.config.schema import DAY
from host.config.settings import MAX_PURGE_DAYS
from host.errors import ConfigError
from host.models import ago
from host.outage import Outage
from host.upkeep import give_back

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from host.config.settings import PurgeSettings, Settings
    from host.plugins import HookCall, HookFailure
    from host.store import Store

    PurgeHook = Callable[[str, int, bool], Awaitable[HookCall]]

log = logging.getLogger("smshost.purge")
Clock = Callable[[], datetime]


def local_now() -> datetime:
    return datetime.now().astimezone()


def next_run(now: datetime, at: str) -> datetime:
    """The first moment at local time ``at`` ("HH:MM") strictly after ``now``."""
    hour, minute = (int(p) for p in at.split(":"))
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= now:
        candidate += timedelta(days=1)
    return candidate


def retention_warnings(settings: Settings) -> list[str]:
    """``smshost check``'s warnings about retention: an outbox that retries a message
    as long as the purge keeps data. The message itself stays while it is in the outbox
    (work in progress), but its idempotency key and status history were made for a
    shorter life, and a send retried for weeks is rarely still wanted."""
    max_age, days = settings.outbox.max_age, settings.purge.days
    if max_age < days * DAY:
        return []
    file, line = settings.where("outbox", "max_age")
    where = f"{file}:{line}: " if file and line else ""
    return [f"{where}outbox.max_age ({max_age:.0f} s, {max_age / DAY:.4g} days) is not shorter "
            f"than purge.days ({days}): messages are retried as long as data is kept; "
            "set max_age well below purge.days"]


class Purger:
    """Runs the purge on demand and on the daily schedule, and keeps how the last run
    went (``/health``, ``/metrics``, ``smshost purge``'s exit status)."""

    def __init__(self, settings: PurgeSettings, store: Store, purge: PurgeHook,
                 clock: Clock = local_now) -> None:
        """``purge(cutoff, batch_size, dry_run)`` calls the purge hook."""
        self._settings = settings
        self._store = store
        self._purge_hook = purge
        self._clock = clock
        # Whether this node runs the scheduled purge (host.cluster: one node of several
        # holds the "purge" lease); a node alone always does.
        self.gate: Callable[[], Awaitable[bool]] | None = None
        self.last_run: datetime | None = None
        self.last_success: datetime | None = None
        self.last_counts: dict[str, int] = {}
        self.runs = {"ok": 0, "failed": 0}
        # The implementations of the purge hook that failed in the last run.
        self.failures: tuple[HookFailure, ...] = ()
        # Why the last run (dry or not) was incomplete, each a line naming the plugin,
        # failures included; empty when it did all it was asked. last_problems: those
        # of the last real run (/health).
        self.problems: list[str] = []
        self.last_problems: list[str] = []
        self._noted: list[str] = []
        self._rescheduled: asyncio.Event | None = None

    def configure(self, settings: PurgeSettings) -> None:
        """Take new settings (a live configuration change): the schedule is computed
        again at once, from ``at``; ``enabled`` false skips the runs until it is true."""
        self._settings = settings
        if self._rescheduled is not None:
            self._rescheduled.set()

    def incomplete(self, reason: str) -> None:
        """Called by a purge implementation that left something it should have purged
        (the messages, when a plugin could not say which ones it keeps): the run fails."""
        log.error("purge incomplete: %s", reason)
        self._noted.append(reason)

    async def run(self, days: int | None = None, *, dry_run: bool = False) -> dict[str, int]:
        """Purge data older than ``days`` (default: the configured ``purge.days``).
        Why a run was incomplete is in ``problems`` afterwards (logged too)."""
        settings = self._settings
        days = settings.days if days is None else days
        if not 1 < days <= MAX_PURGE_DAYS:
            raise ConfigError(f"purge age must be greater than 1 day and at most "
                              f"{MAX_PURGE_DAYS}; got {days}", key="purge.days")
        self._noted = []
        try:
            counts, failures = await self._purge(ago(days * DAY, self._clock()), dry_run)
        except Exception as exc:
            self._finished(dry_run, [f"the purge stopped: {type(exc).__name__}: {exc}"])
            raise
        self.failures = failures
        self._finished(dry_run, self._noted + [f"plugin {f.plugin} failed to purge: "
                                               f"{f.error}" for f in failures])
        return counts

    async def _purge(self, cutoff: str, dry_run: bool
                     ) -> tuple[dict[str, int], tuple[HookFailure, ...]]:
        settings = self._settings
        call = await self._purge_hook(cutoff, settings.batch_size, dry_run)
        counts: dict[str, int] = {}
        for result in call.results:
            for table, n in result.items():
                counts[table] = counts.get(table, 0) + int(n)
        log.info("purge %s older than %s: %s", "counted" if dry_run else "deleted",
                 cutoff, counts or "nothing", extra={"purge": counts, "dry_run": dry_run})
        for failure in call.failures:
            log.error("purge incomplete: plugin %s failed: %s", failure.plugin, failure.error)
        if not dry_run:
            self.last_counts = counts
            if settings.give_back:
                pages = await give_back(self._store, settings.pause_ms / 1000)
                if pages:
                    log.info("purge gave %d free pages back to the file system", pages)
        return counts, call.failures

    def _finished(self, dry_run: bool, problems: list[str]) -> None:
        self.problems = problems
        if dry_run:
            return
        self.last_run, self.last_problems = self._clock(), problems
        self.runs["failed" if problems else "ok"] += 1
        if not problems:
            self.last_success = self.last_run

    def next_run_at(self) -> datetime:
        """When the schedule runs next (local time ``purge.at``; it runs only while
        ``purge.enabled``)."""
        return next_run(self._clock(), self._settings.at)

    async def would_delete(self) -> tuple[dict[str, int], list[str]]:
        """What a run now would delete, per table, and why it would be incomplete: the
        configured run's own selection (every purge implementation) counted, nothing
        deleted (the admin's settings page)."""
        counts = await self.run(dry_run=True)
        return counts, list(self.problems)

    def describe(self) -> dict[str, Any]:
        """For /health: how the last run went; ``ok`` is False after a failed one."""
        return {"enabled": self._settings.enabled,
                "last_run": self.last_run.isoformat() if self.last_run else None,
                "last_success": self.last_success.isoformat() if self.last_success else None,
                "ok": not self.last_problems, "problems": list(self.last_problems)}

    async def scheduled(self) -> None:
        """Run forever: sleep until the next ``purge.at``, purge (when enabled), repeat.
        A change of the settings (:meth:`configure`) computes the next run again."""
        outage = Outage("the scheduled purge", log)
        while True:
            self._rescheduled = rescheduled = asyncio.Event()
            now = self._clock()
            delay = (next_run(now, self._settings.at) - now).total_seconds()
            # asyncio.wait, not wait_for: on Python 3.11 wait_for loses a cancellation
            # that comes with the event set (the host stopping right after a change).
            waiter = asyncio.ensure_future(rescheduled.wait())
            try:
                done, _ = await asyncio.wait([waiter], timeout=delay)
            finally:
                waiter.cancel()
            if done or not self._settings.enabled:
                continue
            try:
                if self.gate is not None and not await self.gate():
                    continue  # another node of the cluster purges
                await self.run()
            # The schedule must survive a failed night; the error is logged (BLE001).
            except Exception as exc:  # noqa: BLE001
                outage.failed(exc)
            else:
                outage.succeeded()
