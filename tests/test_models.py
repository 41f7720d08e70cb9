"""Stored timestamps: one fixed width for every year, cutoffs that never wrap, a parser
that is total, and a clock cache that two threads cannot tear."""

from __future__ import annotations

import threading
import types
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from host import models
from host.models import TS_MAX, TS_MIN, ago, from_epoch, parse_timestamp, to_epoch, to_timestamp


@pytest.mark.parametrize(("moment", "text"), [
    (datetime(931, 10, 8, 20, 1, 35), "0931-10-08T20:01:35.000000Z"),
    (datetime(1, 1, 1), TS_MIN),
    (datetime(9999, 12, 31, 23, 59, 59, 999999), TS_MAX),
    (datetime(2026, 12, 6, 21, 0, tzinfo=timezone(timedelta(hours=1))),
     "2026-12-06T20:00:00.000000Z"),
])
def test_every_year_has_four_digits(moment: datetime, text: str) -> None:
    """strftime("%Y") gives "931" for the year 931, which sorts after "2026": a purge of
    400000 days deleted every message (issue 11, second review)."""
    assert to_timestamp(moment) == text
    assert len(to_timestamp(moment)) == len(TS_MIN)


def test_old_cutoffs_sort_before_every_stored_time() -> None:
    now = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
    stored = to_timestamp(now - timedelta(minutes=5))
    for days in (400_000, 600_000, 740_000, 10**9):
        assert ago(days * 86400, now) < stored, days
    assert ago(10**30, now) == ago(float("inf"), now) == TS_MIN  # before year 1: nothing
    assert ago(86400, now) == "2026-12-05T20:00:00.000000Z"
    for bad in (-1.0, float("nan")):  # a cutoff in the future would take everything
        with pytest.raises(ValueError, match="an age must be"):
            ago(bad, now)


def test_epoch_seconds_are_held_to_the_stored_range() -> None:
    assert from_epoch(1e20) == TS_MAX and from_epoch(-1e20) == TS_MIN
    assert to_epoch(from_epoch(1_700_000_000.25)) == 1_700_000_000.25
    assert from_epoch(-62135596800.0) == TS_MIN  # 0001-01-01, the first stored second


@pytest.mark.parametrize(("text", "stored"), [
    ("2026-12-06T20:00:00Z", "2026-12-06T20:00:00.000000Z"),
    ("2026-12-06T20:00:00+14:00", "2026-12-06T06:00:00.000000Z"),
    ("0999-01-01", "0999-01-01T00:00:00.000000Z"),
    ("0001-01-01", TS_MIN),
    ("9999-12-31T23:59:59.999999Z", TS_MAX),
])
def test_parse_timestamp(text: str, stored: str) -> None:
    assert parse_timestamp(text) == stored


@pytest.mark.parametrize(("text", "message"), [
    ("0001-01-01T00:00:00+01:00", "is outside the times smshost stores (0001-01-01 to "
     "9999-12-31 UTC)"),
    ("9999-12-31T23:59:59-01:00", "is outside the times smshost stores"),
    ("yesterday", "not an ISO-8601 time: 'yesterday'"),
    ("-2026-01-01", "not an ISO-8601 time"),
    ("\x00", "not an ISO-8601 time"),
    ("9" * 5000, "not an ISO-8601 time: '" + "9" * 40 + "...'"),
])
def test_parse_timestamp_is_total(text: str, message: str) -> None:
    """Anything from outside gives ValueError with a message fit to show (the offset
    pushing 0001-01-01 out of range gave OverflowError: a 500)."""
    with pytest.raises(ValueError) as caught:
        parse_timestamp(text)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 200


def test_utcnow_never_pairs_a_new_second_with_the_text_of_the_one_before(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """utcnow runs on the event loop and on the writer's thread. Its cache of the
    formatted second was a list written in two steps: a thread reading between them got
    the new second's microseconds after the old second's text, a time a second back (and
    a false clock step). Here one thread stops inside the formatting of a new second
    (time.strftime before, datetime.fromtimestamp now) while another asks for the time."""
    clock = {"now": 1_000_000_000.5}
    go, inside, release = threading.Event(), threading.Event(), threading.Event()
    stopper: dict[str, int | None] = {"ident": None}
    real_time, real_datetime = models.time, models.datetime

    def stop_if_stopper() -> None:
        if threading.get_ident() == stopper["ident"]:
            inside.set()
            assert release.wait(10)

    def strftime(fmt: str, t: Any) -> str:
        stop_if_stopper()
        return real_time.strftime(fmt, t)

    class Datetime(real_datetime):
        @classmethod
        def fromtimestamp(cls, t: Any, tz: Any = None) -> Any:
            stop_if_stopper()
            return real_datetime.fromtimestamp(t, tz)

    monkeypatch.setattr(models, "time", types.SimpleNamespace(
        time=lambda: clock["now"], strftime=strftime, gmtime=real_time.gmtime))
    monkeypatch.setattr(models, "datetime", Datetime)
    assert models.utcnow() == "2001-09-09T01:46:40.500000Z"  # second 1e9 is cached
    clock["now"] = 1_000_000_001.25
    seen: list[str] = []

    def formats_the_new_second() -> None:
        assert go.wait(10)
        seen.append(models.utcnow())
    thread = threading.Thread(target=formats_the_new_second)
    thread.start()
    stopper["ident"] = thread.ident
    go.set()
    try:
        assert inside.wait(10)  # the thread is formatting second 1e9 + 1
        assert models.utcnow() == "2001-09-09T01:46:41.250000Z"
    finally:
        release.set()
        thread.join(10)
    assert seen == ["2001-09-09T01:46:41.250000Z"]
