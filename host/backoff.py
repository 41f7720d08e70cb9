"""Exponential backoff, shared by every retry loop (the outbox, the webhook sink).

``first * factor ** n`` overflows a float long before ``n`` is large (10 ** 400 raises
OverflowError): the wait is capped first, so any number of retries gives the cap.
"""

from __future__ import annotations

import math
from collections.abc import Iterator


def grown(first: float, factor: float, retries: int, most: float) -> float:
    """``first * factor ** retries``, at most ``most``; never raises for large ``retries``."""
    if retries <= 0 or factor <= 1:
        return min(first, most)
    if first >= most or retries * math.log(factor) >= math.log(most / first):
        return most
    return min(most, first * factor ** retries)


def doubling(first: float, most: float) -> Iterator[float]:
    """``first``, doubling up to ``most``, for ever (the caller ends the waits)."""
    delay = first
    while True:
        yield delay
        delay = min(most, delay * 2)
