"""The handle time of each queue: an exponential average of the seconds from an
interaction's accept (or pick-up) to its disconnect, stored in ``queue_handle_time``
(it survives a restart). Queue notices estimate waits with it; reports may read it.

The average moves a quarter of the way to each new close, Asterisk's ``recalc_holdtime``:
``new_average = (3 * old + seconds) / 4`` (:data:`ALPHA` = 0.25). A queue with no close
yet has no row: :func:`current` answers the caller's initial value (the notices'
``initial_handle_minutes``).
"""

from __future__ import annotations

from sqlite_utils import Database

ALPHA = 0.25  # weight of the newest close
MAX_SECONDS = 7 * 24 * 3600.0  # a close longer than a week counts as a week


def averaged(old: float | None, seconds: float) -> float:
    """The average after a close of ``seconds``: the first close is the average."""
    seconds = min(max(0.0, seconds), MAX_SECONDS)
    return seconds if old is None else (1 - ALPHA) * old + ALPHA * seconds


def record(db: Database, queue: str, seconds: float, at: str) -> float:
    """Count one close of ``seconds`` in ``queue`` (inside the caller's write); the new
    average."""
    row = db.execute("select seconds from queue_handle_time where queue = ?",
                     [queue]).fetchone()
    value = averaged(None if row is None else float(row[0]), seconds)
    db.conn.execute(
        "insert into queue_handle_time (queue, seconds, closes, updated_at) values "
        "(?, ?, 1, ?) on conflict (queue) do update set seconds = excluded.seconds, "
        "closes = queue_handle_time.closes + 1, updated_at = excluded.updated_at",
        [queue, value, at])
    return value


def current(db: Database, queue: str, initial: float) -> float:
    """The average handle time of ``queue`` in seconds; ``initial`` before any close."""
    row = db.execute("select seconds from queue_handle_time where queue = ?",
                     [queue]).fetchone()
    return initial if row is None else float(row[0])


def closes(db: Database, queue: str) -> int:
    """How many closes the average of ``queue`` has seen."""
    row = db.execute("select closes from queue_handle_time where queue = ?",
                     [queue]).fetchone()
    return 0 if row is None else int(row[0])
