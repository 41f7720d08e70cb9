"""The records smshost keeps: messages and their status events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from host import jsontext

Direction = Literal["in", "out"]
DIRECTIONS: tuple[Direction, ...] = ("in", "out")

# Normalized delivery states (SPEC B1), in the order a message moves through them.
OUTBOUND_STATES = ("queued", "sending", "sent", "delivered", "undelivered", "failed",
                   "expired", "rejected", "unknown")
FINAL_STATES = frozenset({"delivered", "undelivered", "failed", "expired", "rejected"})
INBOUND_STATES = ("received", "routed", "failed")  # "failed": no destination took it

# How far along each state is: a receipt moves a message forward only (SPEC O8). A final
# state never changes; "unknown" is kept in the history but never applied.
STATE_RANK = {"queued": 0, "sending": 1, "sent": 2, **{s: 3 for s in FINAL_STATES}}


def moves_forward(current: str, new: str) -> bool:
    """True when ``new`` may replace ``current`` as a message's status."""
    if current in FINAL_STATES or new not in STATE_RANK:
        return False
    return STATE_RANK[new] > STATE_RANK.get(current, -1)

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


_second_cache: list[Any] = [-1, ""]


def utcnow() -> str:
    """Now as the fixed-width UTC text every timestamp column holds.

    On the hot path of every stored message: the formatted second is cached, only the
    microseconds are formatted per call.
    """
    now = time.time()
    second = int(now)
    if second != _second_cache[0]:
        _second_cache[0] = second
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    return f"{_second_cache[1]}{int((now - second) * 1_000_000):06d}Z"


def to_timestamp(moment: datetime) -> str:
    """A datetime (naive means UTC) as stored timestamp text."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_TS_FORMAT)


def parse_timestamp(text: str) -> str:
    """ISO-8601 (``Z`` or offset, date only allowed) → stored form; ``ValueError`` if bad."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    return to_timestamp(datetime.fromisoformat(value))



MAX_ID = 2**63 - 1
"""SQLite's largest integer: an id beyond it names no row (and cannot be bound)."""


def is_decimal(text: str) -> bool:
    """True for ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def bounded_int(text: str, high: int = MAX_ID) -> int | None:
    """``text`` (ASCII digits only) as an integer from 0 to ``high``; None otherwise.

    The one way smshost reads an integer someone else wrote (a query or path parameter,
    a header, a broker's field). Its length is checked before ``int()``: Python refuses
    to parse more than 4,300 digits (a ValueError where no caller expects one), and a
    number that long is beyond every bound anyway."""
    if not is_decimal(text):
        return None
    digits = text.lstrip("0")
    if len(digits) > len(str(high)):
        return None
    value = int(digits or "0")
    return value if value <= high else None

@dataclass(frozen=True, slots=True)
class Message:
    """One SMS, inbound (MO) or outbound (MT)."""

    id: int
    direction: Direction
    broker: str | None
    account: str | None
    local: str | None
    remote: str | None
    body: str
    encoding: str | None
    segments: int | None
    status: str
    broker_message_id: str | None
    created_at: str
    updated_at: str
    attrs: dict[str, Any] = field(default_factory=dict)
    route: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        values = dict(row)
        values["attrs"] = jsontext.loads(values.get("attrs") or "{}", max_depth=None,
                                      numbers=jsontext.STORED)
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One entry of a message's status history."""

    id: int
    message_id: int
    status: str
    at: str
    source: str
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StatusEvent:
        values = dict(row)
        values["detail"] = jsontext.loads(values.get("detail") or "{}", max_depth=None,
                                       numbers=jsontext.STORED)
        return cls(**{k: values[k] for k in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
