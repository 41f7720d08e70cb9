"""One log line per failing spell of a background loop (SPEC P12).

A database that refuses writes (a full disk, a read-only file, a lock another process
holds) is a state the node lives through, not a bug: the loops working in the
background (routing, sending, the concatenation sweep, the purge, the webhook sink's
deliveries, the handlers' watch) try again until it takes their writes, and /health
reports it meanwhile. Each loop keeps an :class:`Outage`: the first failure of a spell
is logged in one line, the failures after it at most once a minute (with how many there
were), and the first success after them in one line saying that it recovered. A
refusal of the database carries no traceback; anything else is a bug, whose traceback is
logged the first time its kind of exception fails the loop in a spell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from host.errors import StoreClosed
from host.writepath import refusal

REPEAT_EVERY = 60.0
"""Seconds between two lines about the same failing spell."""


def expected(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing the work (or closed for the stop): a
    state, not a bug."""
    return refusal(exc) is not None or isinstance(exc, StoreClosed)


class Outage:
    """The failing spell of one background activity, ``what`` (``"sending: claiming due
    messages"``), logged on ``logger``. ``failed`` and ``then`` word the spell's first
    line ("<what> failed: <why>; trying again ..."); ``traces``: whether a failure that
    is not the database refusing (a bug) is logged with its traceback."""

    def __init__(self, what: str, logger: logging.Logger,
                 clock: Callable[[], float] = time.monotonic, *, failed: str = "failed",
                 then: str = "trying again", traces: bool = True) -> None:
        self.what = what
        self.log = logger
        self.clock = clock
        self.words = (failed, then)
        self.traces = traces
        self.since: float | None = None  # the spell's start
        self.failures = 0  # in the spell
        self.unlogged = 0  # failures since the last line
        self.logged_at = 0.0
        self.traced: set[type[BaseException]] = set()

    @property
    def failing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException, where: str = "") -> None:
        """One more failure (``where``: what it was about, e.g. a message); logged when
        it starts a spell or a minute passed since the last line."""
        now = self.clock()
        reason = str(exc) if expected(exc) else f"{type(exc).__name__}: {exc}"
        about = f" ({where})" if where else ""
        trace = self.traces and not expected(exc) and type(exc) not in self.traced
        if trace:
            self.traced.add(type(exc))
        if self.since is None:
            self.since, self.failures, self.unlogged, self.logged_at = now, 1, 0, now
            self.log.error("%s %s%s: %s; %s (while it fails, logged at most once a minute)",
                           self.what, self.words[0], about, reason, self.words[1],
                           exc_info=exc if trace else None)
            return
        self.failures += 1
        self.unlogged += 1
        if trace or now - self.logged_at >= REPEAT_EVERY:
            self.log.error("%s still failing: %d time(s) since the last line, now%s: %s",
                           self.what, self.unlogged, about, reason,
                           exc_info=exc if trace else None)
            self.unlogged, self.logged_at = 0, now

    def succeeded(self) -> None:
        """It worked: a spell, if one was under way, ends in one line."""
        if self.since is None:
            return
        self.log.warning("%s recovered after %.0f s and %d failure(s)", self.what,
                         self.clock() - self.since, self.failures)
        self.since = None
        self.traced.clear()


class Refusals:
    """Requests the database refused (SPEC P12), one :class:`Outage` per kind of
    request (``"API requests"``, ``"broker gen mo"``): a spell of refusals is one line
    when it starts, then at most one a minute with how many there were, and one when
    the database takes writes again (:meth:`recovered`, called by the store's write
    path). Each refusal is still counted by the request metrics (the 503 of
    ``smshost_http_requests``, the ``503`` outcome of ``smshost_broker_webhooks``).
    Unauthenticated traffic at a full disk wrote ~700 lines a second, one per request."""

    def __init__(self, logger: logging.Logger,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger
        self.clock = clock
        self.spells: dict[str, Outage] = {}

    def refused(self, kind: str, exc: BaseException, where: str = "",
                logger: logging.Logger | None = None) -> None:
        """One more request of ``kind`` refused (``where``: e.g. its method and path),
        logged on ``logger`` (the component's; the default one otherwise)."""
        spell = self.spells.get(kind)
        if spell is None:
            spell = self.spells[kind] = Outage(
                kind, logger or self.log, self.clock, failed="refused (503), not stored",
                then="answered 503 until the database takes writes again", traces=False)
        spell.failed(exc, where)

    def recovered(self) -> None:
        for spell in self.spells.values():
            spell.succeeded()
