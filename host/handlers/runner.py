"""Running one handler call: async ones under a timeout, sync ones in a thread (SPEC H3).

A sync handler runs through ``anyio.to_thread.run_sync`` once it holds a slot of the
capacity limiter (``handlers.threads``), so a slow handler cannot take every thread;
its timeout starts when it runs, not while it waits for a slot. A thread cannot be
killed: on timeout the call is abandoned (its result ignored, its recorded actions
never applied) and the message falls back to the default route; the thread finishes
in the background.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from anyio import CapacityLimiter

from host.errors import SmshostError

if TYPE_CHECKING:
    from host.handlers.context import Context
    from host.handlers.registry import HandlerEntry


class HandlerFailed(SmshostError):
    """The handler raised or timed out; ``details`` is the traceback (or the reason)."""

    def __init__(self, summary: str, details: str) -> None:
        self.summary = summary
        self.details = details
        super().__init__(summary)


async def run(entry: HandlerEntry, ctx: Context, timeout: float,
              limiter: CapacityLimiter) -> Any:
    """Call ``entry``'s ``handle(ctx)``; raise :class:`HandlerFailed` on error or timeout."""
    try:
        if entry.is_async:
            return await asyncio.wait_for(entry.handle(ctx), timeout)
        # The timeout counts the handler's own run, not the wait for a free thread:
        # with more conversations routed at once than threads, calls queue here.
        async with limiter:
            return await asyncio.wait_for(
                anyio.to_thread.run_sync(entry.handle, ctx, limiter=CapacityLimiter(1),
                                         abandon_on_cancel=True), timeout)
    except TimeoutError:
        raise HandlerFailed(f"handler {entry.name} timed out after {timeout:g} s",
                            f"timed out after {timeout:g} s") from None
    # Handler scripts may raise anything, SystemExit included (BLE001).
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        details = "".join(traceback.format_exception(exc))
        raise HandlerFailed(f"handler {entry.name} raised {type(exc).__name__}: {exc}",
                            details) from None


def accepts_context(fn: Any) -> bool:
    """True when ``fn`` can be called with one positional argument."""
    try:
        inspect.signature(fn).bind(object())
    except (TypeError, ValueError):
        return False
    return True
