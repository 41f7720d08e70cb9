"""Running one handler call: async ones under a timeout, sync ones in a thread (SPEC H3).

A sync handler runs in a thread once it holds one of the ``handlers.threads`` slots
(:class:`ThreadSlots`), and its timeout starts then: a call waiting for a slot is not
timed as if it ran, but gives up after the same timeout (the message falls back to
the default route). A thread cannot be killed: on timeout the call is abandoned (its
result ignored, its recorded actions never applied), the thread finishes in the
background, and it keeps its slot until it does. So a handler that hangs uses at most
``handlers.threads`` threads, and later calls fall back instead of piling up threads.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
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


class ThreadSlots:
    """At most ``size`` sync handler threads alive, abandoned ones included: a slot is
    given back when its thread ends, not when its caller stops waiting for it."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._free: asyncio.Semaphore | None = None

    async def acquire(self) -> None:
        if self._free is None:
            self._free = asyncio.Semaphore(self.size)
        await self._free.acquire()

    def release(self) -> None:
        assert self._free is not None
        self._free.release()


class _Call:
    """Who gives a call's slot back: its thread when it started, else its caller."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.abandoned = False


async def run(entry: HandlerEntry, ctx: Context, timeout: float, slots: ThreadSlots) -> Any:
    """Call ``entry``'s ``handle(ctx)``; raise :class:`HandlerFailed` on error or timeout."""
    try:
        if entry.is_async:
            return await asyncio.wait_for(entry.handle(ctx), timeout)
        return await _in_thread(entry, ctx, timeout, slots)
    except TimeoutError:
        raise HandlerFailed(f"handler {entry.name} timed out after {timeout:g} s",
                            f"timed out after {timeout:g} s") from None
    # Handler scripts may raise anything, SystemExit included (BLE001).
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        details = "".join(traceback.format_exception(exc))
        raise HandlerFailed(f"handler {entry.name} raised {type(exc).__name__}: {exc}",
                            details) from None


async def _in_thread(entry: HandlerEntry, ctx: Context, timeout: float,
                     slots: ThreadSlots) -> Any:
    try:
        await asyncio.wait_for(slots.acquire(), timeout)
    except TimeoutError:
        reason = (f"no free handler thread within {timeout:g} s (all {slots.size} busy: "
                  "slow or hung sync handlers; see handlers.threads)")
        raise HandlerFailed(f"handler {entry.name}: {reason}", reason) from None
    loop = asyncio.get_running_loop()
    call = _Call()

    def work() -> Any:
        with call.lock:
            if call.abandoned:
                return None  # given up before it started: its caller freed the slot
            call.started = True
        try:
            return entry.handle(ctx)
        finally:
            try:
                loop.call_soon_threadsafe(slots.release)
            except RuntimeError:
                pass  # the loop is closed: the process is stopping

    try:
        return await asyncio.wait_for(
            anyio.to_thread.run_sync(work, limiter=CapacityLimiter(1), abandon_on_cancel=True),
            timeout)
    except BaseException:
        with call.lock:
            if not call.started:
                call.abandoned = True
                slots.release()
        raise


def accepts_context(fn: Any) -> bool:
    """True when ``fn`` can be called with one positional argument."""
    try:
        inspect.signature(fn).bind(object())
    except (TypeError, ValueError):
        return False
    return True
