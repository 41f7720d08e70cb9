"""The hooks of the Kannel- and Jasmin-compatible send APIs (host.compat), registered with
the defaults (host.defaults.DEFAULT_PLUGINS): their status callbacks' worker runs while
the node serves, and each committed status change of a
message sent through them with a ``dlr-url`` is turned into the callbacks it asked for
(host.compat.callbacks). A message without ``attrs.dlr`` costs a dict lookup."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from host.api import hookimpl
from host.compat.callbacks import Call, Callbacks

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from host.api import HostAPI, Message, StatusEvent

_running: dict[int, tuple[Callbacks, asyncio.Event, asyncio.Task[None]]] = {}


def callbacks_of(host: HostAPI) -> Callbacks | None:
    found = _running.get(id(host))
    return found[0] if found is not None else None


def _enabled(host: HostAPI) -> bool:
    compat = host.settings.compat
    return compat.kannel.enabled or compat.jasmin.enabled


@hookimpl(trylast=True)
def startup(host: HostAPI) -> None:
    if not host.background or not _enabled(host) or id(host) in _running:
        return
    callbacks = Callbacks(host.store, lambda: host.settings.compat)
    stop = asyncio.Event()
    task = asyncio.create_task(callbacks.run(stop), name="smshost-compat-callbacks")
    _running[id(host)] = (callbacks, stop, task)


@hookimpl(trylast=True)
async def shutdown(host: HostAPI) -> None:
    found = _running.pop(id(host), None)
    if found is None:
        return
    callbacks, stop, task = found
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await callbacks.close()


@hookimpl(trylast=True)
def message_status_changed(host: HostAPI, message: Message, old: str | None, new: str,
                           event: StatusEvent) -> Awaitable[None] | None:
    if "dlr" not in message.attrs and "merged" not in message.attrs:
        return None
    callbacks = callbacks_of(host)
    if callbacks is None:
        return None
    calls = calls_for(message, old, new, event)
    return callbacks.add(message.id, calls) if calls else None


def calls_for(message: Message, old: str | None, new: str, event: StatusEvent) -> list[Call]:
    """The callbacks a change of ``message`` to ``new`` asks for: its own ``attrs.dlr``
    and those of the sends consolidated into it (``attrs.merged``)."""
    from host.compat import jasmin, kannel

    asked: list[Any] = [message.attrs.get("dlr")]
    asked += [m.get("dlr") for m in message.attrs.get("merged", ()) if isinstance(m, dict)]
    calls: list[Call] = []
    for dlr in asked:
        if not isinstance(dlr, dict):
            continue
        if dlr.get("kind") == "kannel":
            calls += kannel.dlr_calls(dlr, message, old, new, event)
        elif dlr.get("kind") == "jasmin":
            calls += jasmin.dlr_calls(dlr, message, old, new, event)
    return calls


@hookimpl(trylast=True)
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    """Callbacks given up (dead) older than the cutoff."""
    return await host.store.purge_table(
        "compat_callbacks", "updated_at", cutoff, batch_size=batch_size,
        pause=host.settings.purge.pause_ms / 1000, dry_run=dry_run,
        keep="select id from compat_callbacks where status = 'pending'")
