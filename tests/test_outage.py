"""One log line per failing spell of a background loop (host/outage.py), on a fake clock."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from host.errors import StoreUnavailable
from host.outage import REPEAT_EVERY, Outage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, bool]]:
    return [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records
            if r.name == "test.outage"]


FULL = StoreUnavailable("the database refused the write: database or disk is full", "full")


def test_a_refusing_database_is_one_line_a_minute_then_recovered(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.outage")
    clock = FakeClock()
    outage = Outage("sending", logging.getLogger("test.outage"), clock)
    outage.succeeded()  # nothing was failing: nothing to say
    for _ in range(30):  # a round every second for half a minute
        outage.failed(FULL)
        clock.now += 1
    assert lines(caplog) == [("ERROR", "sending failed: the database refused the write: "
                              "database or disk is full; trying again (while it fails, "
                              "logged at most once a minute)", False)]
    caplog.clear()
    clock.now += REPEAT_EVERY - 30
    outage.failed(sqlite3.OperationalError("database is locked"), "message 7")
    outage.failed(FULL)
    assert lines(caplog) == [("ERROR", "sending still failing: 30 time(s) since the last "
                              "line, now (message 7): database is locked", False)]
    caplog.clear()
    clock.now += 5
    outage.succeeded()
    outage.succeeded()
    assert lines(caplog) == [("WARNING", "sending recovered after 65 s and 32 failure(s)",
                              False)]
    assert not outage.failing


def test_a_bug_has_its_traceback_once_per_kind_and_spell(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    outage = Outage("routing", logging.getLogger("test.outage"), clock)

    def fail(exc: Exception) -> None:
        try:
            raise exc
        except Exception as raised:  # noqa: BLE001 - what a loop's except clause hands over
            outage.failed(raised)

    fail(KeyError("x"))
    fail(KeyError("y"))  # the same kind: counted, not logged
    fail(TypeError("z"))  # another kind: its traceback too
    assert lines(caplog) == [
        ("ERROR", "routing failed: KeyError: 'x'; trying again (while it fails, logged at "
                  "most once a minute)", True),
        ("ERROR", "routing still failing: 2 time(s) since the last line, now: TypeError: z",
         True)]
    outage.succeeded()
    caplog.clear()
    fail(KeyError("again"))  # a new spell: the traceback again
    assert [traced for _, _, traced in lines(caplog)] == [True]
