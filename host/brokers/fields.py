"""What the inbound and outbound steps of a broker read and build: an MO's and a
receipt's fields, an outbound message, and the counts read from webhooks with their
ranges (issue 11: a count out of range must not reach the store nor size anything)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


class ParseError(ValueError):
    """A webhook could not be read; the message is the short reason answered with 400."""


@dataclass(slots=True)
class MoFields:
    """An inbound SMS as the broker described it (numbers not yet normalised).

    Not frozen, as the results of the hot path are not: a frozen dataclass sets each
    field through ``object.__setattr__``, ~1.5 us per MO here. Adapters change one with
    ``dataclasses.replace``.
    """

    id: str | None
    from_: str
    to: str | None
    text: str
    account: str | None = None
    segments: int | None = None
    encoding: str | None = None
    timestamp: str | None = None
    udh: str | None = None
    concat_ref: str | None = None
    concat_total: int | None = None
    concat_part: int | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReceiptFields:
    """A delivery receipt: which message (broker id or our ref), and its new state."""

    id: str | None
    status: str  # normalised
    raw_status: str
    ref: str | None = None
    error: str | None = None
    error_text: str | None = None
    account: str | None = None
    to: str | None = None
    timestamp: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What an MT request is built from."""

    id: int
    to: str
    from_: str
    text: str
    ref: str = ""
    encoding: str = "gsm7"
    segments: int = 1
    udh: str = ""


MAX_PARTS = 255
"""Most parts (segments) an SMS can have: the count is one byte of the concatenation
header (3GPP TS 23.040)."""

_WHOLE = re.compile(r"\s*[+-]?[0-9]{1,9}\s*")


def read_int(values: Mapping[str, str], name: str, low: int = 0,
             high: int = MAX_PARTS) -> int | None:
    """Field ``name`` as a whole number from ``low`` to ``high``; ParseError (400, naming
    the field) otherwise: a value out of range must not reach the store (SQLite holds
    64 bits) nor size anything (a part count builds the reassembled text)."""
    raw = values.get(name)
    if raw is None:
        return None
    number = int(raw) if _WHOLE.fullmatch(raw) else None
    if number is None or not low <= number <= high:
        raise ParseError(f"{name} must be a whole number from {low} to {high}; "
                         f"got {raw[:40]!r}")
    return number


def read_count(values: Mapping[str, str], name: str) -> int | None:
    """An informational count (the segments a broker says it billed): unknown (None)
    when it is not a whole number from 1 to :data:`MAX_PARTS`, rather than a message
    refused for it (a broker retries a refused MO for a day, then drops it)."""
    try:
        return read_int(values, name, 1, MAX_PARTS)
    except ParseError:
        return None
