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
from typing import TYPE_CHECKING

from host.errors import ConfigError
from host.models import to_timestamp
from host.outage import Outage
from host.upkeep import give_back

if TYPE_CHECKING:
    from host.core import Host
    from host.plugins import HookFailure

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


class Purger:
    """Runs the purge on demand and on the daily schedule."""

    def __init__(self, host: Host, clock: Clock = local_now) -> None:
        self._host = host
        self._clock = clock
        self.last_run: datetime | None = None
        self.last_counts: dict[str, int] = {}
        # The implementations of the purge hook that failed in the last run.
        self.failures: tuple[HookFailure, ...] = ()

    async def run(self, days: int | None = None, *, dry_run: bool = False) -> dict[str, int]:
        """Purge data older than ``days`` (default: the configured ``purge.days``)."""
        settings = self._host.settings.purge
        days = settings.days if days is None else days
        if days <= 1:
            raise ConfigError(f"purge age must be greater than 1 day; got {days}",
                              key="purge.days")
        cutoff = to_timestamp(self._clock() - timedelta(days=days))
        counts: dict[str, int] = {}
        call = await self._host.hooks.purge(self._host, cutoff, settings.batch_size, dry_run)
        for result in call.results:
            for table, n in result.items():
                counts[table] = counts.get(table, 0) + int(n)
        self.failures = call.failures
        if not dry_run:
            self.last_run, self.last_counts = self._clock(), counts
            if settings.give_back:
                pages = await give_back(self._host.store, settings.pause_ms / 1000)
                if pages:
                    log.info("purge gave %d free pages back to the file system", pages)
        log.info("purge %s older than %s: %s", "counted" if dry_run else "deleted",
                 cutoff, counts or "nothing", extra={"purge": counts, "dry_run": dry_run})
        for failure in call.failures:
            log.error("purge incomplete: plugin %s failed: %s", failure.plugin, failure.error)
        return counts

    async def scheduled(self) -> None:
        """Run forever: sleep until the next ``purge.at``, purge, repeat."""
        settings = self._host.settings.purge
        outage = Outage("the scheduled purge", log)
        while True:
            now = self._clock()
            await asyncio.sleep((next_run(now, settings.at) - now).total_seconds())
            try:
                await self.run()
            # The schedule must survive a failed night; the error is logged (BLE001).
            except Exception as exc:  # noqa: BLE001
                outage.failed(exc)
            else:
                outage.succeeded()
