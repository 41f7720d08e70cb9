"""Watch the handler folders and the configuration directory (SPEC H2, P11).

On a change of a handler, reconcile the handlers; on a change of a *.toml file of
the configuration directory, apply the directory (host.config.change).

Change events are only a hint: ``HandlerRegistry.reconcile`` compares file digests, so
editors that save through a temporary file and a rename, or missed and duplicated
events, need no special cases.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from watchfiles import Change, awatch

from host.config.change import ConfigChange
from host.errors import ConfigRefused
from host.outage import Outage

if TYPE_CHECKING:
    from pathlib import Path

    from host.config.change import LiveConfig
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


def _toml_file(change: Change, path: str) -> bool:
    return path.endswith(".toml")


CONFIG_DEBOUNCE_MS = 300
"""Wait this long for more changes of the configuration files (editors write in steps)."""


async def watch_config(live: LiveConfig, config_dir: Path, stop: asyncio.Event) -> None:
    """Apply the configuration directory after each batch of changes of its *.toml
    files, until ``stop`` is set. A refused change is logged by ``live`` (once) and
    shown in /health; content-identical saves apply nothing (host.config.change)."""
    async for _ in awatch(config_dir, watch_filter=_toml_file, stop_event=stop,
                          debounce=CONFIG_DEBOUNCE_MS, step=50, recursive=False,
                          yield_on_timeout=False):
        try:
            await live.apply(ConfigChange("file"))
        except ConfigRefused:
            pass  # logged, kept for /health: the running configuration stays
        # The watcher must outlive a failed apply (a bug, an unreadable file) (BLE001).
        except Exception:  # noqa: BLE001
            log.exception("applying the edited configuration failed")
