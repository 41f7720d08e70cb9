"""Watch the handler folders; on any change, reconcile (SPEC H2).

Change events are only a hint: ``HandlerRegistry.reconcile`` compares file digests, so
editors that save through a temporary file and a rename, or missed and duplicated
events, need no special cases.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from watchfiles import Change, awatch

from host.outage import Outage

if TYPE_CHECKING:
    from host.config.settings import HandlerSettings
    from host.handlers.registry import HandlerRegistry

log = logging.getLogger("smshost.watch")


def _python_file(change: Change, path: str) -> bool:
    return path.endswith(".py")


async def watch_handlers(handlers: HandlerRegistry, settings: HandlerSettings,
                         stop: asyncio.Event) -> None:
    """Reconcile the handlers after each batch of file changes, until ``stop`` is set."""
    folders = handlers.folders()
    if not folders:
        return
    outage = Outage("reloading handlers", log)
    async for _ in awatch(*folders, watch_filter=_python_file, stop_event=stop,
                          debounce=max(settings.debounce_ms, 1), step=20, recursive=False,
                          yield_on_timeout=False):
        try:
            await handlers.reconcile_async()
        # The watcher must outlive one bad round; the error is logged (BLE001).
        except Exception as exc:  # noqa: BLE001
            outage.failed(exc)
        else:
            outage.succeeded()
