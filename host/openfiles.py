"""The process's open-files limit, and the listeners' connection limits within it.

Every client connection is a file descriptor. Past the process's limit no listener
can accept anything, so a flood on one listener would take the others (the API) down
although each has its own connection limit. At start, :func:`fit` raises the soft
limit to the hard one and, when the listeners' limits still do not fit beside the
files smshost needs for everything else, lowers them (the largest first) and says so.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from host.web.connections import GuardedProtocol

log = logging.getLogger("smshost.server")

RESERVED = 256
"""Descriptors kept for everything but client connections (the database, connections
to brokers and sinks, logs, the listening sockets); a quarter of a smaller limit."""


def fit(protocols: list[type[GuardedProtocol]]) -> None:
    """Raise the soft limit; lower the listeners' ``limits.limit`` to fit in it."""
    soft = raise_soft_limit()
    if soft == resource.RLIM_INFINITY:
        return
    reserve = min(RESERVED, soft // 4)
    wanted = {p.listener: p.limits.limit for p in protocols}
    if sum(wanted.values()) + reserve <= soft:
        return
    fitted = share(wanted, soft - reserve)
    for protocol in protocols:
        protocol.limits = dataclasses.replace(protocol.limits, limit=fitted[protocol.listener])
    log.warning(
        "the open-files limit is %d: too few for the listeners' connection limits (%s) "
        "and ~%d other files, so they are lowered to %s, and a flood on one listener "
        "leaves the others answering. Raise the limit (ulimit -n, systemd LimitNOFILE=) "
        "to keep them", soft, _listed(wanted), reserve, _listed(fitted))


def raise_soft_limit() -> int:
    """Raise the soft open-files limit to the hard one where allowed; the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit on macOS
        log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def share(wanted: dict[str, int], budget: int) -> dict[str, int]:
    """Each name's ``wanted`` count, lowered so that they sum to ``budget`` at most:
    a small one is kept whole, the rest share what is left evenly (at least 1 each)."""
    fitted: dict[str, int] = {}
    left = len(wanted)
    for name, count in sorted(wanted.items(), key=lambda item: item[1]):
        fitted[name] = max(1, min(count, budget // left))
        budget -= fitted[name]
        left -= 1
    return fitted


def _listed(limits: dict[str, int]) -> str:
    return ", ".join(f"{name} {limit}" for name, limit in limits.items())
