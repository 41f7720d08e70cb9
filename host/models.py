"""The records smshost keeps: messages and their status events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from host import jsontext

Direction = Literal["in", "out"]
DIRECTIONS: tuple[Direction, ...] = ("in", "out")

# Normalized delivery states (SPEC B1), in the order a message moves through them.
# ``scheduled``: waiting for its ``send_at``; ``cancelled``: taken out of the outbox by
# DELETE /api/messages/{id} before any broker had it (host.schedule).
OUTBOUND_STATES = ("scheduled", "queued", "sending", "sent", "delivered", "undelivered",
                   "failed", "expired", "rejected", "cancelled", "unknown")
FINAL_STATES = frozenset({"delivered", "undelivered", "failed", "expired", "rejected",
                          "cancelled"})
INBOUND_STATES = ("received", "routed", "failed")  # "failed": no destination took it

# How far along each state is: a receipt moves a message forward only (SPEC O8). A final
# state never changes; "unknown" is kept in the history but never applied.
STATE_RANK = {"scheduled": 0, "queued": 0, "sending": 1, "sent": 2,
              **{s: 3 for s in FINAL_STATES}}


def moves_forward(current: str, new: str) -> bool:
    """True when ``new`` may replace ``current`` as a message's status."""
    if current in FINAL_STATES or new not in STATE_RANK:
        return False
    return STATE_RANK[new] > STATE_RANK.get(current, -1)

# -- timestamps -----------------------------------------------------------------------
# Every timestamp column holds UTC text of one fixed width, so that text order is time
# order (purge cutoffs, ``since``, clock steps compare text): always four digits of year,
# from TS_MIN to TS_MAX, the years a datetime has. strftime("%Y") does not pad a year
# below 1000 ("931-10-08..." sorted after "2026-..." and a purge of 400000 days deleted
# everything): the text is built here, field by field.

TS_MIN = "0001-01-01T00:00:00.000000Z"
"""The earliest stored time: a cutoff before it (a huge age) keeps everything."""
TS_MAX = "9999-12-31T23:59:59.999999Z"
"""The latest stored time: a moment after it (a far retry) is "never"."""
_STORED_RANGE = "0001-01-01 to 9999-12-31 UTC"


def _text(moment: datetime) -> str:
    """An aware UTC datetime as stored text."""
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z")


# (second, its text up to the microseconds), replaced as one tuple: utcnow runs on the
# event loop and on the writer's thread, and a reader must never pair a new second
# with the text of the one before (a timestamp a second back: a false clock step).
_second_text: tuple[int, str] = (-1, "")


def utcnow() -> str:
    """Now as the fixed-width UTC text every timestamp column holds.

    On the hot path of every stored message: the formatted second is cached, only the
    microseconds are formatted per call. Thread-safe: the cache is one tuple, read once
    and replaced whole (two threads in a new second may both format it; both are right).
    """
    now = time.time()
    second = int(now)
    cached = _second_text
    if cached[0] != second:
        cached = _cache_second(second)
    return f"{cached[1]}{int((now - second) * 1_000_000):06d}Z"


def _cache_second(second: int) -> tuple[int, str]:
    global _second_text
    cached = (second, _text(datetime.fromtimestamp(second, UTC))[:-7])
    _second_text = cached
    return cached


def to_timestamp(moment: datetime) -> str:
    """A datetime (naive means UTC) as stored timestamp text; ``ValueError`` when it is
    outside the stored range (an offset can push 0001-01-01 or 9999-12-31 out of it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return _text(moment.astimezone(UTC))
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is outside the times smshost stores "
                         f"({_STORED_RANGE})") from None


def ago(seconds: float, now: datetime | None = None) -> str:
    """The stored time ``seconds`` before ``now`` (default: the current time): the
    cutoff of a purge or a timeout. Before the stored range it is TS_MIN, which nothing
    is older than (a huge age keeps everything, never the reverse); ``ValueError`` for
    a negative or NaN age (its cutoff would be in the future)."""
    if not seconds >= 0:
        raise ValueError(f"an age must be a number of seconds >= 0; got {seconds!r}")
    moment = now or datetime.now(UTC)
    try:
        return to_timestamp(moment - timedelta(seconds=seconds))
    except (OverflowError, ValueError):
        return TS_MIN


def from_epoch(seconds: float) -> str:
    """Unix seconds as stored text, held to the stored range (a retry due after the
    year 9999 is due at TS_MAX: never)."""
    try:
        return _text(datetime.fromtimestamp(seconds, UTC))
    except (OverflowError, OSError, ValueError):
        return TS_MIN if seconds < 0 else TS_MAX


def to_epoch(stored: str) -> float:
    """Stored text (TS_MIN to TS_MAX) as Unix seconds."""
    return datetime.strptime(stored, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def parse_timestamp(text: str) -> str:
    """ISO-8601 from outside (``Z`` or an offset; a date alone is its midnight UTC) as
    stored text. Total: ``ValueError`` with a message fit for the caller for anything
    else, a time outside the stored range included (never OverflowError)."""
    return to_timestamp(read_iso(text, "an ISO-8601")[0])


def read_iso(text: str, kind: str) -> tuple[datetime, str]:
    """``text`` (``Z`` or an offset) read by :meth:`datetime.fromisoformat`, and the
    text as read (``Z`` written ``+00:00``); ``ValueError`` saying it is not ``kind``
    time otherwise (the text shown cut at 40 characters)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(value), value
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(f"not {kind} time: {shown!r} (e.g. 2026-11-27T09:00:00Z)"
                         ) from None


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
