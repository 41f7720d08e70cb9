"""Signing in with a login and password (SPEC U2; issue 13 point 2), and the limit on
failed attempts.

:class:`Logins` checks a password (host.people: argon2id; an unknown login or a user
without a password costs the same as a wrong password, so the time of an answer does
not tell them apart) and counts failures per login and per client address in
:class:`FailureCounter`: after ``api.login_failures`` failures within
``api.login_window`` seconds, either one is refused (429 with the seconds to wait)
without checking any password, for known and unknown logins alike. A success forgets
the login's failures. Every failure and refusal is one line in the log, never with the
password; outcomes are counted in ``smshost_logins``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from host.rights import Refused

if TYPE_CHECKING:
    from host.config.settings import ApiSettings
    from host.metrics import Metrics
    from host.people import People
    from host.sessions import Sessions

log = logging.getLogger("smshost.logins")
MAX_KEYS = 10000
"""Logins and addresses whose failures are remembered at most (each keeps at most
``login_failures`` times): a spray of logins cannot grow the memory without bound.
When full, expired entries go first, then the least recently failed."""
MAX_SHOWN = 64


class FailureCounter:
    """Recent failures by key. ``clock``: monotonic seconds (a test sets a fake one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def count(self, key: str, window: float) -> list[float]:
        """The times of ``key``'s failures within ``window`` seconds, oldest first."""
        now = self.clock()
        times = [t for t in self._failures.get(key, ()) if now - t < window]
        if not times:
            self._failures.pop(key, None)
        return times

    def add(self, key: str, limit: int, window: float) -> int:
        """Count a failure of ``key``; how many it has within ``window`` now."""
        times = self.count(key, window)
        times = [*times, self.clock()][-limit:]
        self._failures[key] = times
        self._failures.move_to_end(key)
        self._bound()
        return len(times)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def _bound(self) -> None:
        # Ordered by last failure: the expired ones, then the least recent, go first.
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)


def shown(login: str) -> str:
    """A login as the log shows it: quoted, cut to :data:`MAX_SHOWN` characters."""
    return repr(login[:MAX_SHOWN] + ("..." if len(login) > MAX_SHOWN else ""))


class Logins:
    """Password sign-in with the failure limit, and the browser sessions it opens
    (``sessions``). ``settings()``: the live ApiSettings."""

    def __init__(self, people: People, settings: Callable[[], ApiSettings], metrics: Metrics,
                 sessions: Sessions, counter: FailureCounter | None = None) -> None:
        self._people = people
        self._settings = settings
        self._metrics = metrics
        self.sessions = sessions
        self.counter = counter if counter is not None else FailureCounter()

    async def sign_in(self, login: str, password: str, address: str) -> dict[str, Any]:
        """The user record (people_rows.signed_in) of ``login`` when ``password`` is its;
        :class:`~host.rights.Refused` 429 while the login or address is limited, 401
        otherwise (the same answer for an unknown login and a wrong password)."""
        settings = self._settings()
        limit, window = settings.login_failures, float(settings.login_window)
        keys = (f"login:{login.lower()[:MAX_SHOWN * 2]}", f"address:{address}")
        wait = self._wait(keys, limit, window)
        if wait is not None:
            self._metrics.login("limited")
            log.warning("login refused for %s from %s: too many failed logins (%d in %s); "
                        "retry in %d s", shown(login), address, limit, _minutes(window), wait)
            raise Refused("too_many_logins", f"too many failed logins; retry in {wait} s",
                          status=429, retry_after=wait)
        user, why = await self._people.signed_in(login, password)
        if user is not None:
            self.counter.forget(keys[0])
            self._metrics.login("ok")
            log.info("user %s signed in from %s", user["login"], address)
            return user
        count = max(self.counter.add(key, limit, window) for key in keys)
        self._metrics.login("failed")
        log.warning("login failed for %s from %s: %s (%d in %s)", shown(login), address, why,
                    count, _minutes(window))
        raise Refused("login_failed", "wrong login or password", status=401)

    def _wait(self, keys: tuple[str, ...], limit: int, window: float) -> int | None:
        """Seconds until a try is allowed again, or None when it is now."""
        waits = []
        for key in keys:
            times = self.counter.count(key, window)
            if len(times) >= limit:
                waits.append(times[-limit] + window - self.counter.clock())
        return max(1, math.ceil(max(waits))) if waits else None


def _minutes(window: float) -> str:
    return f"{window / 60:g} min" if window >= 60 else f"{window:g} s"
