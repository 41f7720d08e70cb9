"""The loop that checks the deadlines of one listener's connections (SPEC P12)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from host.web.connections import GuardedProtocol

log = logging.getLogger("smshost.server")


class Sweeper:
    """Checks the deadlines of one listener's connections, a few times per timeout."""

    def __init__(self, connections: set[Any], protocol: type[GuardedProtocol]) -> None:
        self.connections = connections
        self.protocol = protocol
        limits = protocol.limits
        shortest = min(limits.header_timeout, limits.body_timeout, limits.idle_timeout,
                       limits.write_timeout)
        self.interval = min(max(shortest / 4, 0.01), 1.0)

    def sweep(self) -> None:
        now = self.protocol.clock()
        for connection in list(self.connections):
            if isinstance(connection, GuardedProtocol):
                connection.check(now)
        self.protocol.host.metrics.connections_open(self.protocol.listener,
                                                    len(self.connections))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sweep()
            # One bad round must not end the timeouts for good; logged (BLE001).
            except Exception:  # noqa: BLE001
                log.exception("listener %s: checking connection deadlines failed",
                              self.protocol.listener)
