"""What ``bench/scaleout.py`` reads outside the servers: the store of a cell (SQLite
file or PostgreSQL database, one query face), the CPU of a process tree from /proc, the
PostgreSQL cluster's affinity, and pg_stat_statements.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

CLK = os.sysconf("SC_CLK_TCK")


# -- the store ------------------------------------------------------------------------


class StoreReader:
    """Read-only queries in SQLite's dialect (``?``) on either store."""

    def __init__(self, sqlite_path: Path | None = None, pg_url: str | None = None) -> None:
        self.sqlite_path = sqlite_path
        self.pg_url = pg_url
        self._pg: Any = None

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.pg_url is not None:
            if self._pg is None:
                import psycopg
                self._pg = psycopg.connect(self.pg_url, autocommit=True, connect_timeout=10)
            return list(self._pg.execute(sql.replace("?", "%s"), params).fetchall())
        conn = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None


def ts_us(value: Any) -> int:
    """A stored timestamp (smshost's ``2026-11-27T23:16:38.679640Z`` text, or a
    datetime) → epoch µs."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000)
    text = str(value)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


def pctl(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# -- CPU of process trees ---------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it (one pass over /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            rest = _stat(int(name))
            if rest is not None:
                children.setdefault(int(rest[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_s(root: int | None) -> float:
    """User + system CPU seconds of ``root`` and its live descendants, plus what its
    reaped children used (``cutime + cstime`` of ``root``: workers or backends that
    exited are not lost)."""
    if root is None:
        return 0.0
    total = 0
    for pid in descendants(root):
        rest = _stat(pid)
        if rest is None:
            continue
        total += int(rest[11]) + int(rest[12])
        if pid == root:
            total += int(rest[13]) + int(rest[14])
    return total / CLK


def pin_tree(root: int | None, cpus: set[int]) -> int:
    """Set the affinity of ``root`` and its descendants (new backends inherit the
    postmaster's). Returns how many processes were pinned."""
    if root is None:
        return 0
    n = 0
    for pid in descendants(root):
        try:
            os.sched_setaffinity(pid, cpus)
            n += 1
        except OSError:
            pass
    return n


def cpu_list(text: str | None) -> set[int]:
    """``taskset -c`` syntax (``0``, ``0,1``, ``0-3``) → a set; None → every CPU allowed."""
    if text is None:
        return set(os.sched_getaffinity(0))
    out: set[int] = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


# -- pg_stat_statements ---------------------------------------------------------------


def pgss_reset(url: str) -> None:
    import psycopg
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("create extension if not exists pg_stat_statements")
        conn.execute("select pg_stat_statements_reset()")


def pgss_rows(url: str) -> list[tuple[str, int, float, int]]:
    """This database's statements since the reset: (query, calls, exec ms, rows). Read
    before the harness's own checks, so that they are not counted."""
    import psycopg
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return [(str(r[0]), int(r[1]), float(r[2]), int(r[3])) for r in conn.execute(
            "select s.query, s.calls, s.total_exec_time, s.rows from pg_stat_statements s "
            "join pg_database d on d.oid = s.dbid where d.datname = current_database() "
            "and s.query not like '%pg_stat_statements%' "
            "order by s.total_exec_time desc").fetchall()]


def pgss_top(rows: list[tuple[str, int, float, int]], messages: int,
             top: int = 14) -> dict[str, Any]:
    """Calls and execution time per message, the top statements by execution time."""
    n = max(1, messages)
    calls = sum(r[1] for r in rows)
    return {
        "messages": messages,
        "calls_per_msg": round(calls / n, 2),
        "exec_us_per_msg": round(1000 * sum(r[2] for r in rows) / n, 1),
        "top": [{"query": " ".join(r[0].split())[:160], "calls_per_msg": round(r[1] / n, 3),
                 "exec_us_per_msg": round(1000 * r[2] / n, 2),
                 "us_per_call": round(1000 * r[2] / max(1, r[1]), 1)}
                for r in rows[:top]],
    }
