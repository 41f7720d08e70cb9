"""PostgreSQL drivers compared for the store: psycopg 3 (sync, async) and asyncpg.

Per operation: wall time, the CPU of this Python process (``time.process_time``) and the
CPU of the PostgreSQL backend serving the connection (``/proc/<pg_backend_pid()>/stat``,
utime + stime; clock ticks, so only meaningful over many operations). Operations:

  tx50      BEGIN; 50 x INSERT ... RETURNING id of a message-like row, one by one (as
            the store's write functions do, each using the id it gets back); COMMIT
  pipe50    the same 50 inserts in psycopg's pipeline mode (ids read at the end)
  many50    BEGIN; executemany of the 50 rows (no RETURNING); COMMIT
  select    a point SELECT * by primary key

over TCP (127.0.0.1) and over the unix socket. The server is a throwaway cluster
(tests/pgserver.py: fsync off, synchronous_commit on) unless SMSHOST_TEST_PG_URL names
one (TCP only then). Run from the repository root::

    .venv/bin/python bench/pg_drivers.py                  # 200 transactions, 2000 selects
    .venv/bin/python bench/pg_drivers.py --tx 50 --selects 500   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.pgserver import (ROLE, Cluster, ExternalServer, dbname_of,  # noqa: E402
                            open_server, with_dbname)

TICK = os.sysconf("SC_CLK_TCK")
BATCH = 50
SCHEMA = """
create table messages (
  id bigserial primary key, direction text not null, broker text, account text,
  local text, remote text, body text not null, encoding text, segments integer,
  status text not null, broker_message_id text, created_at text not null,
  updated_at text not null, attrs text not null default '{}', route text)
"""
COLUMNS = ("direction, broker, account, local, remote, body, encoding, segments, status, "
           "broker_message_id, created_at, updated_at, attrs, route")
INSERT_PG = f"insert into messages ({COLUMNS}) values " \
            f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
INSERT_APG = f"insert into messages ({COLUMNS}) values " \
             f"({', '.join(f'${i}' for i in range(1, 15))})"
SELECT_PG = "select * from messages where id = %s"
SELECT_APG = "select * from messages where id = $1"


def row(i: int) -> tuple[Any, ...]:
    now = "2026-12-07T05:30:00.000000Z"
    return ("in", "twilio", "AC0001", "+15550001000", f"+1555{i % 10_000_000:07d}",
            f"Hello number {i}, your code is {i % 1000000:06d}", "gsm7", 1, "received",
            f"SM{i:032x}", now, now, '{"k": "v"}', "default")


@dataclass
class Result:
    driver: str
    transport: str
    op: str
    count: int
    wall: float
    client_cpu: float
    server_cpu: float

    def cells(self) -> list[str]:
        per = 1e6 / self.count
        return [self.driver, self.transport, self.op, str(self.count),
                f"{self.wall * per:.0f}", f"{self.client_cpu * per:.0f}",
                f"{self.server_cpu * per:.0f}",
                f"{(self.client_cpu + self.server_cpu) * per:.0f}"]


def backend_cpu(pid: int) -> float:
    """The backend's CPU seconds so far (0 when its /proc entry is not ours to read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


@contextmanager
def measured(out: list[Result], driver: str, transport: str, op: str, count: int,
             backend: int) -> Iterator[None]:
    wall, cpu, server = time.perf_counter(), time.process_time(), backend_cpu(backend)
    yield
    out.append(Result(driver, transport, op, count, time.perf_counter() - wall,
                      time.process_time() - cpu, backend_cpu(backend) - server))


# --- psycopg, sync ------------------------------------------------------------------

def sync_ops(conn: psycopg.Connection[Any]) -> dict[str, Callable[[int], None]]:
    def tx50(n: int) -> None:
        with conn.transaction():
            for i in range(BATCH):
                conn.execute(INSERT_PG + " returning id", row(n * BATCH + i)).fetchone()

    def pipe50(n: int) -> None:
        with conn.transaction(), conn.pipeline():
            cursors = [conn.execute(INSERT_PG + " returning id", row(n * BATCH + i))
                       for i in range(BATCH)]
        for cur in cursors:
            cur.fetchone()

    def many50(n: int) -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(INSERT_PG, [row(n * BATCH + i) for i in range(BATCH)])

    def select(n: int) -> None:
        conn.execute(SELECT_PG, (n % 1000 + 1,)).fetchone()

    return {"tx50": tx50, "pipe50": pipe50, "many50": many50, "select": select}


def run_sync(url: str, transport: str, counts: dict[str, int], out: list[Result]) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        backend = conn.info.backend_pid
        for op, fn in sync_ops(conn).items():
            for n in range(max(5, counts[op] // 10)):  # warm-up (and prepare)
                fn(n)
            with measured(out, "psycopg sync", transport, op, counts[op], backend):
                for n in range(counts[op]):
                    fn(n)


# --- psycopg, async -----------------------------------------------------------------

def async_ops(conn: psycopg.AsyncConnection[Any]
              ) -> dict[str, Callable[[int], Awaitable[None]]]:
    async def tx50(n: int) -> None:
        async with conn.transaction():
            for i in range(BATCH):
                await (await conn.execute(INSERT_PG + " returning id",
                                          row(n * BATCH + i))).fetchone()

    async def pipe50(n: int) -> None:
        async with conn.transaction(), conn.pipeline():
            cursors = [await conn.execute(INSERT_PG + " returning id", row(n * BATCH + i))
                       for i in range(BATCH)]
        for cur in cursors:
            await cur.fetchone()

    async def many50(n: int) -> None:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(INSERT_PG, [row(n * BATCH + i) for i in range(BATCH)])

    async def select(n: int) -> None:
        await (await conn.execute(SELECT_PG, (n % 1000 + 1,))).fetchone()

    return {"tx50": tx50, "pipe50": pipe50, "many50": many50, "select": select}


async def run_async(url: str, transport: str, counts: dict[str, int],
                    out: list[Result]) -> None:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    async with conn:
        backend = conn.info.backend_pid
        for op, fn in async_ops(conn).items():
            for n in range(max(5, counts[op] // 10)):
                await fn(n)
            with measured(out, "psycopg async", transport, op, counts[op], backend):
                for n in range(counts[op]):
                    await fn(n)


# --- asyncpg ------------------------------------------------------------------------

def asyncpg_ops(conn: asyncpg.Connection) -> dict[str, Callable[[int], Awaitable[None]]]:
    async def tx50(n: int) -> None:
        async with conn.transaction():
            for i in range(BATCH):
                await conn.fetchval(INSERT_APG + " returning id", *row(n * BATCH + i))

    async def many50(n: int) -> None:
        async with conn.transaction():
            await conn.executemany(INSERT_APG, [row(n * BATCH + i) for i in range(BATCH)])

    async def select(n: int) -> None:
        await conn.fetchrow(SELECT_APG, n % 1000 + 1)

    return {"tx50": tx50, "many50": many50, "select": select}


async def run_asyncpg(target: dict[str, Any], transport: str, counts: dict[str, int],
                      out: list[Result]) -> None:
    conn = await asyncpg.connect(**target, timeout=10)
    try:
        backend = conn.get_server_pid()
        for op, fn in asyncpg_ops(conn).items():
            for n in range(max(5, counts[op] // 10)):
                await fn(n)
            with measured(out, "asyncpg", transport, op, counts[op], backend):
                for n in range(counts[op]):
                    await fn(n)
    finally:
        await asyncio.wait_for(conn.close(), 10)


# --- the run ------------------------------------------------------------------------

def targets(server: Cluster | ExternalServer) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(transport, psycopg URL, asyncpg connect arguments) for each way in, each on a
    fresh database."""
    url = server.new_database()
    yield "tcp", url, {"dsn": url}
    if isinstance(server, Cluster):
        dbname = dbname_of(server.new_database())
        sock = with_dbname(server.socket_url, dbname)
        yield "unix", sock, {"host": str(server.socket_dir), "port": server.port,
                             "user": ROLE, "database": dbname}


def prepare(url: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(SCHEMA)
        with conn.cursor() as cur:
            cur.executemany(INSERT_PG, [row(i) for i in range(1000)])


def table(results: list[Result]) -> str:
    head = ["driver", "transport", "op", "count", "wall µs/op", "client CPU µs/op",
            "backend CPU µs/op", "total CPU µs/op"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tx", type=int, default=200, help="transactions per tx50/pipe50/many50")
    parser.add_argument("--selects", type=int, default=2000, help="point selects")
    args = parser.parse_args()
    counts = {"tx50": args.tx, "pipe50": args.tx, "many50": args.tx, "select": args.selects}
    server = open_server()
    results: list[Result] = []
    try:
        print(f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}, "
              f"{psycopg.pq.__impl__}), asyncpg {asyncpg.__version__}", flush=True)
        for transport, url, apg in targets(server):
            prepare(url)
            run_sync(url, transport, counts, results)
            asyncio.run(run_async(url, transport, counts, results))
            asyncio.run(run_asyncpg(apg, transport, counts, results))
    finally:
        server.stop()
    print(table(results))


if __name__ == "__main__":
    main()
