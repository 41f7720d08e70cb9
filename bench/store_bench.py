"""Durable inserts per second through the real ``host.store.Store``.

Compares group commit (``group_commit=True``) with one commit per write
(``group_commit=False``) at several numbers of concurrent writers. Each writer is an
asyncio task that loops ``await store.write(fn)``, where ``fn`` stores one message row
plus its status event in the same transaction, as ``Messages.add`` does (by default it
calls ``host.ledger.insert`` itself).

Every measurement uses a fresh SQLite file, runs a time-bounded warm-up, then measures
for a fixed time (or until a maximum count of inserts), stops the writers, closes the
store and checks that the database holds exactly the acknowledged writes.

Run from the repository root::

    make bench
    .venv/bin/python bench/store_bench.py --seconds 5
    taskset -c 0 .venv/bin/python bench/store_bench.py      # everything on one core

See bench/README.md for the flags and the columns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

from sqlite_utils import Database  # noqa: E402

from host.config.settings import StoreSettings  # noqa: E402
from host.ledger import NewMessage, insert  # noqa: E402
from host.migrations import core as core_migrations  # noqa: E402
from host.models import utcnow  # noqa: E402
from host.store import Store  # noqa: E402

MODES = {"group": True, "per-row": False}
BODY = "Your verification code is 123456. It expires in 10 minutes. Do not share it. " * 2


# -- what one write does --------------------------------------------------------------


def _message_fn(writer: int, seq: int) -> Callable[[Database], Any]:
    """The real path: ``host.ledger.insert`` with a NewMessage (an MO from a broker)."""
    new = NewMessage(direction="in", body=BODY, status="received", broker="bench",
                     account="bench", local="+15550000000", remote=f"+1555{writer:07d}",
                     broker_message_id=f"w{writer}-{seq}", source="broker")
    return partial(insert, new=new)


_RAW_MESSAGE = ("insert into messages (direction, broker, account, local, remote, body, "
                "status, broker_message_id, created_at, updated_at, attrs) "
                "values ('in', 'bench', 'bench', '+15550000000', ?, ?, 'received', ?, ?, ?, '{}')")
_RAW_EVENT = ("insert into message_events (message_id, status, at, source, detail) "
              "values (?, 'received', ?, 'broker', '{}')")


def _raw_insert(remote: str, bmid: str, db: Database) -> int:
    conn = db.conn
    now = utcnow()
    message_id = conn.execute(_RAW_MESSAGE, (remote, BODY, bmid, now, now)).lastrowid
    conn.execute(_RAW_EVENT, (message_id, now))
    return int(message_id or 0)


def _raw_fn(writer: int, seq: int) -> Callable[[Database], Any]:
    """The same two rows with two plain INSERTs on the connection (no sqlite_utils)."""
    return partial(_raw_insert, f"+1555{writer:07d}", f"w{writer}-{seq}")


PAYLOADS: dict[str, Callable[[int, int], Callable[[Database], Any]]] = {
    "messages": _message_fn, "raw": _raw_fn,
}


# -- one measurement ------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    writers: int
    synchronous: str
    payload: str
    seconds: float = 0.0          # measured window, actual
    inserts: int = 0              # writes acknowledged inside the window
    rate: float = 0.0             # inserts / seconds
    commits: int = 0              # Store.stats.commits inside the window
    writes_committed: int = 0     # Store.stats.writes inside the window
    rows_per_commit: float = 0.0
    largest_batch: int = 0        # over the whole store life (warm-up included)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu_pct: float = 0.0          # process user+sys CPU / wall time in the window
    fsync_ms: float = 0.0         # median of the fsync probe run just before and after
    io_pressure_pct: float | None = None  # PSI "some" I/O stall share of the window
    stopped_by: str = "time"      # "time" or "count"
    acked_total: int = 0          # every acknowledged write (warm-up + window + drain)
    errors: int = 0               # writes that raised
    rows_messages: int = 0
    rows_events: int = 0
    verified: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def fsync_probe(directory: Path, count: int) -> list[float]:
    """Seconds per fsync of a 4 KiB append in ``directory`` (the disk's commit floor)."""
    if count <= 0:
        return []
    probe = directory / "fsync.probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    timings = []
    try:
        for _ in range(count):
            os.write(fd, b"\0" * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            timings.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
    return sorted(timings)


def io_pressure_us() -> int | None:
    """Linux PSI: total microseconds some task was stalled on I/O (None if unavailable)."""
    try:
        for line in Path("/proc/pressure/io").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(mode: str, writers: int, args: argparse.Namespace, workdir: Path) -> Result:
    settings = StoreSettings(synchronous=args.sync, group_commit=MODES[mode],
                             max_batch=args.max_batch, linger_ms=args.linger_ms)
    path = workdir / "bench.db"
    probe_before = fsync_probe(workdir, args.fsync_probe)
    store = Store(path, settings)
    await store.open([core_migrations])
    make_fn = PAYLOADS[args.payload]
    result = Result(mode, writers, args.sync, args.payload)

    measuring = False
    stop = False
    window_acks = 0
    total_acks = 0
    errors = 0
    latencies: list[float] = []
    enough = asyncio.Event()
    max_inserts = args.max_inserts
    clock = time.perf_counter

    async def writer(index: int) -> None:
        nonlocal window_acks, total_acks, errors
        seq = 0
        while not stop:
            seq += 1
            fn = make_fn(index, seq)
            start = clock()
            try:
                await store.write(fn)
            except Exception as exc:  # noqa: BLE001 - reported; the run then fails
                errors += 1
                result.extra.setdefault("first_error", repr(exc))
                return  # this writer stops: a failing store must not spin the loop
            elapsed = clock() - start
            total_acks += 1
            if measuring:
                window_acks += 1
                latencies.append(elapsed)
                if window_acks >= max_inserts:
                    enough.set()

    tasks = [asyncio.create_task(writer(i)) for i in range(writers)]
    try:
        await asyncio.sleep(args.warmup)
        commits0, writes0 = store.stats.commits, store.stats.writes
        cpu0 = os.times()
        psi0 = io_pressure_us()
        t0 = clock()
        measuring = True
        try:
            await asyncio.wait_for(enough.wait(), timeout=args.seconds)
            result.stopped_by = "count"
        except TimeoutError:
            pass
        measuring = False
        t1 = clock()
        cpu1 = os.times()
        psi1 = io_pressure_us()
        commits1, writes1 = store.stats.commits, store.stats.writes
        inserts = window_acks
        stop = True
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    finally:
        stop = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()

    result.seconds = t1 - t0
    result.inserts = inserts
    result.rate = inserts / result.seconds
    result.commits = commits1 - commits0
    result.writes_committed = writes1 - writes0
    result.rows_per_commit = result.writes_committed / result.commits if result.commits else 0
    result.largest_batch = store.stats.largest_batch
    latencies.sort()
    result.p50_ms = _quantile(latencies, 0.50) * 1000
    result.p99_ms = _quantile(latencies, 0.99) * 1000
    result.max_ms = (latencies[-1] if latencies else 0.0) * 1000
    user, system = cpu1.user - cpu0.user, cpu1.system - cpu0.system
    result.cpu_pct = (user + system) / result.seconds * 100
    result.extra["cpu_user_pct"] = round(user / result.seconds * 100, 1)
    result.extra["cpu_sys_pct"] = round(system / result.seconds * 100, 1)
    if psi0 is not None and psi1 is not None:
        result.io_pressure_pct = (psi1 - psi0) / 1e6 / result.seconds * 100
    probe_after = fsync_probe(workdir, args.fsync_probe)
    probes = sorted(probe_before + probe_after)
    result.fsync_ms = _quantile(probes, 0.5) * 1000
    result.extra["fsync_probe_ms"] = {
        "before_p50": round(_quantile(probe_before, 0.5) * 1000, 3),
        "before_p99": round(_quantile(probe_before, 0.99) * 1000, 3),
        "after_p50": round(_quantile(probe_after, 0.5) * 1000, 3),
        "after_p99": round(_quantile(probe_after, 0.99) * 1000, 3),
    }
    result.extra["commits_per_s"] = round(result.commits / result.seconds, 1)
    result.acked_total = total_acks
    result.errors = errors

    with sqlite3.connect(path) as check:
        result.rows_messages = check.execute("select count(*) from messages").fetchone()[0]
        result.rows_events = check.execute("select count(*) from message_events").fetchone()[0]
        result.extra["journal_mode"] = check.execute("pragma journal_mode").fetchone()[0]
    check.close()
    result.verified = result.rows_messages == result.rows_events == total_acks
    return result


# -- output ---------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop
        uvloop_version: str | None = uvloop.__version__
    except ImportError:
        uvloop_version = None
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = []
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "uvloop": uvloop_version,
        "cpu_count": os.cpu_count(),
        "affinity": affinity,
        "cpu_model": model,
        "platform": platform.platform(),
    }


def table(results: list[Result]) -> str:
    per_row = {r.writers: r.rate for r in results if r.mode == "per-row"}
    lines = [
        "| writers | mode | inserts/s | commits | rows/commit | p50 ms | p99 ms | cpu % "
        "| fsync ms | io stall % | rows = acks | group/per-row |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        ratio = "-"
        if r.mode == "group" and per_row.get(r.writers):
            ratio = f"{r.rate / per_row[r.writers]:.2f}x"
        check = f"yes ({r.acked_total})" if r.verified else (
            f"**NO** ({r.rows_messages}/{r.rows_events} rows, {r.acked_total} acks)")
        if r.errors:
            check += f", **{r.errors} failed writes**"
        count = " (count cap)" if r.stopped_by == "count" else ""
        stall = "-" if r.io_pressure_pct is None else f"{r.io_pressure_pct:.0f}"
        lines.append(
            f"| {r.writers} | {r.mode} | {r.rate:,.0f}{count} | {r.commits:,} "
            f"| {r.rows_per_commit:.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.cpu_pct:.0f} "
            f"| {r.fsync_ms:.2f} | {stall} | {check} | {ratio} |")
    return "\n".join(lines)


def _positive_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 or v > 4096 for v in values):
        raise argparse.ArgumentTypeError("comma-separated integers between 1 and 4096")
    return values


def _bounded(low: float, high: float, kind: type = float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Durable inserts/s through host.store.Store: group commit vs per-row.")
    parser.add_argument("--seconds", type=_bounded(0.1, 300), default=5.0,
                        help="measured seconds per measurement (default 5)")
    parser.add_argument("--warmup", type=_bounded(0, 60), default=1.0,
                        help="un-measured seconds before each measurement (default 1)")
    parser.add_argument("--max-inserts", type=_bounded(1, 10_000_000, int), default=1_000_000,
                        help="end a measurement early after this many acknowledged inserts "
                        "(default 1000000)")
    parser.add_argument("--writers", type=_positive_list, default=[16, 64, 256],
                        help="comma-separated writer counts (default 16,64,256)")
    parser.add_argument("--modes", default="group,per-row",
                        help="comma-separated: group, per-row (default both)")
    parser.add_argument("--sync", type=str.upper, choices=["FULL", "NORMAL"], default="FULL",
                        help="PRAGMA synchronous (default FULL)")
    parser.add_argument("--payload", choices=sorted(PAYLOADS), default="messages",
                        help="messages: host.ledger.insert (default); raw: the same two "
                        "rows with two plain INSERTs")
    parser.add_argument("--max-batch", type=_bounded(1, 100_000, int), default=1000,
                        help="StoreSettings.max_batch (default 1000)")
    parser.add_argument("--linger-ms", type=_bounded(0, 1000), default=0.0,
                        help="StoreSettings.linger_ms (default 0)")
    parser.add_argument("--fsync-probe", type=_bounded(0, 10_000, int), default=100,
                        help="fsyncs of a 4 KiB append timed in the same directory before and "
                        "after each measurement, to show the disk's state (default 100; 0 off)")
    parser.add_argument("--runs", type=_bounded(1, 20, int), default=1,
                        help="repeat the whole matrix (default 1)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent directory for the temporary database files "
                        "(default: the system temp dir); each measurement gets a fresh "
                        "subdirectory, removed afterwards")
    parser.add_argument("--keep", action="store_true", help="do not delete the database files")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write every figure and the environment as JSON")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown or not args.modes:
        parser.error(f"--modes: unknown {unknown}; choose from {sorted(MODES)}")
    return args


async def run_all(args: argparse.Namespace, loop_name: str) -> list[list[Result]]:
    runs: list[list[Result]] = []
    for run in range(1, args.runs + 1):
        results: list[Result] = []
        for writers in args.writers:
            for mode in args.modes:
                if args.dir is not None:
                    args.dir.mkdir(parents=True, exist_ok=True)
                workdir = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
                try:
                    result = await measure(mode, writers, args, workdir)
                finally:
                    if not args.keep:
                        shutil.rmtree(workdir, ignore_errors=True)
                result.extra["loop"] = loop_name
                result.extra["run"] = run
                if args.keep:
                    result.extra["path"] = str(workdir / "bench.db")
                print(f"run {run}: {writers:>4} writers {mode:<7} {result.rate:>9,.0f}/s "
                      f"{result.rows_per_commit:7.1f} rows/commit  p99 {result.p99_ms:7.2f} ms"
                      f"  {'ok' if result.verified else 'ROW COUNT MISMATCH'}",
                      file=sys.stderr, flush=True)
                if result.errors:
                    print(f"  {result.errors} writes failed; first: "
                          f"{result.extra.get('first_error')}", file=sys.stderr, flush=True)
                results.append(result)
        runs.append(results)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    factory = None
    loop_name = "asyncio"
    if not args.no_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
            loop_name = "uvloop"
        except ImportError:
            pass
    env = environment()
    print(f"store_bench: synchronous={args.sync} payload={args.payload} "
          f"max_batch={args.max_batch} linger_ms={args.linger_ms:g} warmup={args.warmup:g}s "
          f"seconds={args.seconds:g} max_inserts={args.max_inserts} loop={loop_name} "
          f"python={env['python']} sqlite={env['sqlite']} cpus={env['cpu_count']} "
          f"affinity={env['affinity']}", file=sys.stderr, flush=True)
    with asyncio.Runner(loop_factory=factory) as runner:
        runs = runner.run(run_all(args, loop_name))

    for index, results in enumerate(runs, 1):
        print(f"\n### Store: synchronous={args.sync}, payload={args.payload}, "
              f"{args.seconds:g} s per cell, loop={loop_name}"
              + (f" (run {index} of {len(runs)})" if len(runs) > 1 else "") + "\n")
        print(table(results))

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "store",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv,
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()},
            "environment": env | {"loop": loop_name},
            "runs": [[asdict(r) for r in results] for results in runs],
        }, indent=2) + "\n", encoding="utf-8")
    ok = all(r.verified and r.errors == 0 for results in runs for r in results)
    if not ok:
        print("\nerror: a row count did not match the acknowledged writes (or writes failed)",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
