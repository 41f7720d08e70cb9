"""Scale-out: SQLite with one process, PostgreSQL with one process, PostgreSQL with
``smshost serve --workers 2``, each under three loads, in one invocation.

Loads (each cell: a fresh server and a fresh database):

- ``mo-ingest``: signed Twilio webhooks → durable → 200 (``mo_ingest.py``'s requests and
  wrk script), routing off;
- ``mo-e2e``: the same webhooks, routed by one default route to the webhook sink, which
  POSTs each to a local receiver (``fake_broker.py``: answers 200 at once, records the
  message id and the arrival time);
- ``mt``: ``POST /api/messages`` with wrk (``mt_send.lua``) → the fake broker
  (``fake_broker.py``) acknowledges → ``sent``.

For each cell the CPU seconds of the smshost process tree (the supervisor and its
workers) and of the PostgreSQL cluster (the postmaster and every child) over the
measured window, per message done. The cluster is a throwaway one
(``tests/pgserver.py``) with ``fsync = on``, ``full_page_writes = on`` and
``synchronous_commit = on``: a commit is as durable as SQLite's ``synchronous = FULL``.
Every acknowledged MO is checked stored once (and, end to end, at the receiver), every
accepted MT at the fake broker once.

    .venv/bin/python bench/scaleout.py --runs 2 --json /tmp/scaleout.json
    make bench-scaleout SCALEOUT_ARGS="--runs 2"

See bench/README.md for the flags and columns, docs/benchmarks.md for results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mo_ingest as mo
import mt_bench as mt
from common import (HERE, HOST, PROCS, ROOT, children_cpu_s, cpu_times, git_state,
                    log, pinned, port_open, proc_cpu_s, smshost_argv, tail, wait_health,
                    wait_port_free)
from common import bounded as _bounded
from scaleout_report import (CONFIGS, LOADS, PG_SETTINGS, Cell, checks, f1, pgss_report,
                             summary, table)
from scaleout_db import (StoreReader, cpu_list, pctl, pgss_reset, pgss_rows, pgss_top,
                         pin_tree, tree_cpu_s, ts_us)

sys.path.insert(0, str(ROOT))
from tests.pgserver import Cluster, PgUnavailable, find_bindir  # noqa: E402

# -- configuration --------------------------------------------------------------------


def write_config(rundir: Path, args: argparse.Namespace, store_url: str | None,
                 load: str) -> Path:
    cfg = rundir / "config"
    cfg.mkdir(parents=True)
    store = f'url = "{store_url}"' if store_url else 'synchronous = "FULL"'
    (cfg / "smshost.toml").write_text(textwrap.dedent(f"""\
        # written by bench/scaleout.py
        [server]
        data_dir = "{rundir / 'data'}"
        public_url = "http://{HOST}:{args.port}"
        shutdown_timeout = 10

        [[listeners]]
        name = "bench"
        host = "{HOST}"
        port = {args.port}
        api = true

        [api]
        token = "{mt.API_TOKEN}"

        [store]
        {store}

        [purge]
        enabled = false

        [outbox]
        {f'http_client = "{args.http_client}"' if args.http_client else ""}

        [logging]
        level = "WARNING"

        [plugins]
        dirs = ["{HERE}"]
        entry_points = false
        # the queue sink's notice migration asks sqlite_master (not on PostgreSQL):
        # left out of every cell alike; no cell routes to it
        disabled = ["queue"]
        """), encoding="utf-8")
    (cfg / "brokers.toml").write_text(textwrap.dedent(f"""\
        # written by bench/scaleout.py
        [[brokers]]
        name = "{mo.BROKER}"
        definition = "twilio"
        encryption = "http"

        [brokers.mt]
        enabled = false

        [[brokers.accounts]]
        id = "main"
        login = "{mo.ACCOUNT_SID}"
        local_address = "{mo.LOCAL_NUMBER}"
        password = "{mo.AUTH_TOKEN}"

        [[brokers]]
        name = "{mt.BROKER}"
        definition = "mtbench"
        encryption = "http"

        [brokers.mt]
        gateway = "http://{HOST}:{args.broker_port}"
        rate = 0
        timeout = 10

        [brokers.mo]
        enabled = false

        [[brokers.accounts]]
        id = "main"
        login = "bench"
        local_address = "{mt.LOCAL_NUMBER}"
        """), encoding="utf-8")
    if load == "mo-e2e":
        (cfg / "routes.toml").write_text(textwrap.dedent("""\
            # written by bench/scaleout.py: every MO to the receiver app
            [[inbound]]
            name = "default"
            destination = "webhook"
            target = "app"
            default = true
            """), encoding="utf-8")
        (cfg / "sinks.toml").write_text(textwrap.dedent(f"""\
            # written by bench/scaleout.py
            [webhook.targets.app]
            url = "http://{HOST}:{args.receiver_port}/mo"
            secret = "scaleout-bench"
            """), encoding="utf-8")
    else:
        (cfg / "routes.toml").write_text(
            "# written by bench/scaleout.py\n[routing]\nenabled = false\n", encoding="utf-8")
    return cfg


# -- processes ------------------------------------------------------------------------


def start_sink(port: int, cpu: str | None, logfile: Path) -> Any:
    """fake_broker.py on ``port``: the MT broker or the MO receiver app."""
    wait_port_free(port)
    proc = PROCS.start(pinned([sys.executable, str(HERE / "fake_broker.py"), "--port",
                               str(port), "--body", "OK"], cpu), logfile)
    deadline = time.monotonic() + 15
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"fake_broker.py did not start on {port}:\n{tail(logfile)}")
        time.sleep(0.05)
    return proc


def sink_count(port: int) -> int:
    return int(json.loads(mt.http("GET", f"http://{HOST}:{port}/__stats"))["count"])


def health_pids(port: int, want: int, timeout: float) -> list[int]:
    """Distinct worker pids seen on /health (new connection each time), until ``want``."""
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < want and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as resp:
                pid = json.loads(resp.read()).get("process", {}).get("pid")
                if pid:
                    pids.add(int(pid))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return sorted(pids)


class Meter:
    """CPU of smshost's tree, PostgreSQL's tree, the load generator (reaped children of
    this script), the sink, and the whole machine."""

    def __init__(self, smshost: int, postmaster: int | None, sink: int | None) -> None:
        self.pids = (smshost, postmaster, sink)

    def snap(self) -> tuple[float, ...]:
        smshost, postmaster, sink = self.pids
        return (time.monotonic(), tree_cpu_s(smshost), tree_cpu_s(postmaster),
                children_cpu_s(), proc_cpu_s(sink) if sink else 0.0,
                sum(v[0] for v in cpu_times().values()) / os.sysconf("SC_CLK_TCK"))

    @staticmethod
    def apply(cell: Cell, a: tuple[float, ...], b: tuple[float, ...]) -> None:
        wall = max(1e-6, b[0] - a[0])
        cell.window_s = round(wall, 3)
        cell.smshost_cpu_s = round(b[1] - a[1], 3)
        cell.pg_cpu_s = round(b[2] - a[2], 3)
        rest = (b[5] - a[5]) - sum(b[i] - a[i] for i in (1, 2, 3, 4))
        cell.other_cpu_pct = round(100.0 * rest / wall, 1)


def wait_delivered(port: int, expected: int, meter: Meter, args: argparse.Namespace,
                   quiet: float = 1.0) -> tuple[dict[str, Any], tuple[float, ...]]:
    """Wait until the sink on ``port`` has at least ``expected`` records and held still
    for ``quiet`` s (bounded by --drain-stall without progress and --drain-timeout).
    Returns how it ended and the CPU snapshot at the last progress."""
    started = time.monotonic()
    last, last_move, snap = -1, started, meter.snap()
    while True:
        n = sink_count(port)
        now = time.monotonic()
        if n != last:
            last, last_move, snap = n, now, meter.snap()
        if n >= expected and now - last_move >= quiet:
            end = "complete"
            break
        if now - last_move >= args.drain_stall:
            end = "stalled"
            break
        if now - started >= args.drain_timeout:
            end = "timeout"
            break
        time.sleep(0.1)
    return {"end": end, "count": last, "expected": expected,
            "waited_s": round(time.monotonic() - started, 2)}, snap


# -- the loads ------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    workdir: Path
    files: dict[str, Path]
    prefix: str
    cluster: Cluster | None


def store_state(reader: StoreReader) -> str:
    """What the store holds, for an error message: message statuses, deliveries."""
    out = []
    for sql in ("select direction, status, count(*) from messages group by direction, status",
                "select status, count(*) from webhook_deliveries group by status",
                "select last_error, count(*) from webhook_deliveries group by last_error"):
        try:
            out.append(repr(reader.rows(sql)))
        except Exception as exc:  # noqa: BLE001 - only a diagnostic
            out.append(f"({exc})")
    return "; ".join(out)


def drive_mo(cell: Cell, ctx: Ctx, largs: argparse.Namespace, rundir: Path, meter: Meter,
             pg_url: str | None, reader: StoreReader) -> dict[str, Any]:
    args = ctx.args
    e2e = cell.load == "mo-e2e"
    url = f"http://{HOST}:{args.port}{mo.MO_PATH}"
    w = mo.run_wrk(largs, url, ctx.files["warmup"], rundir / "acked-warmup",
                   args.warmup_seconds, args.connections)
    if w["non2xx"] or not w["acked"]:
        raise RuntimeError(f"MO warm-up failed: {len(w['acked'])} acked, {w['non2xx']} "
                           f"refused, first: {w['first_error']!r}")
    acked = list(w["acked"])
    if e2e:
        d, _ = wait_delivered(args.receiver_port, len(acked), meter, args)
        if d["end"] != "complete":
            raise RuntimeError(f"the MO warm-up was not delivered: {d}; store: "
                               f"{store_state(reader)}")
    if args.profile and pg_url:
        pgss_reset(pg_url)
    a = meter.snap()
    w = mo.run_wrk(largs, url, ctx.files["load"], rundir / "acked", args.duration,
                   args.connections)
    b = meter.snap()
    ok = w["ok2xx"] + w["ok_noid"]
    cell.accept_rate = ok / max(1e-6, (w["t_last_us"] - w["t_first_us"]) / 1e6)
    cell.errors = (w["non2xx"] + w["ok_noid"] + w["err_connect"] + w["err_read"]
                   + w["err_write"] + w["err_timeout"])
    if e2e:
        cell.drain, b = wait_delivered(args.receiver_port, len(acked) + len(w["acked"]),
                                       meter, args)
    else:
        cell.rate, cell.messages = cell.accept_rate, ok
        cell.p50_ms, cell.p99_ms = w["lat_p50_us"] / 1000, w["lat_p99_us"] / 1000
    Meter.apply(cell, a, b)
    return {"acked": acked + w["acked"], "measured": w["acked"], "t_first_us": w["t_first_us"]}


def drive_mt(cell: Cell, ctx: Ctx, largs: argparse.Namespace, rundir: Path, meter: Meter,
             pg_url: str | None, reader: StoreReader) -> dict[str, Any]:
    args = ctx.args
    url = f"http://{HOST}:{args.port}/api/messages"
    tag = f"r{cell.run}{cell.config}"
    w = mt.run_wrk(largs, url, rundir / "acked-warmup", args.warmup_seconds, tag + "-warmup",
                   args.warmup_requests)
    if w["non201"] or not w["acked"]:
        raise RuntimeError(f"MT warm-up failed: {len(w['acked'])} accepted, {w['non201']} "
                           f"refused, first: {w['first_error']!r}")
    acked = set(w["acked"])
    d, _ = wait_delivered(args.broker_port, len(acked), meter, args)
    if d["end"] != "complete":
        raise RuntimeError(f"the MT warm-up did not drain: {d}")
    base_id = int(reader.rows("select coalesce(max(id), 0) from messages "
                              "where direction = 'out'")[0][0])
    if args.profile and pg_url:
        pgss_reset(pg_url)
    a = meter.snap()
    w = mt.run_wrk(largs, url, rundir / "acked", args.duration, tag)
    acked.update(w["acked"])
    cell.accept_rate = len(w["acked"]) / max(1e-6, (w["t_last_us"] - w["t_first_us"]) / 1e6)
    cell.errors = (w["non201"] + w["ok_noid"] + w["err_connect"] + w["err_read"]
                   + w["err_write"] + w["err_timeout"])
    cell.drain, b = wait_delivered(args.broker_port, len(acked), meter, args)
    Meter.apply(cell, a, b)
    return {"acked": acked, "base_id": base_id}


# -- checks ---------------------------------------------------------------------------


def read_records(path: Path) -> list[tuple[int | None, int]]:
    if not path.exists():
        return []
    return [(ref, at) for ref, at, _ in mt.read_broker_dump(path)]


def check_mo(cell: Cell, ctx: Ctx, reader: StoreReader, state: dict[str, Any],
             records: list[tuple[int | None, int]]) -> None:
    rows = reader.rows("select id, broker_message_id, body, remote, created_at from messages "
                       "where broker = ? and direction = 'in'", (mo.BROKER,))
    counts = Counter(r[1] for r in rows)
    by_sid = {r[1]: r for r in rows}
    acked = set(state["acked"])
    cell.acked = len(acked)
    cell.duplicated = (sum(c - 1 for c in counts.values() if c > 1)
                       + len(state["acked"]) - len(acked))
    cell.missing = sum(1 for sid in acked if sid not in by_sid)
    for sid in acked:
        row, n = by_sid.get(sid), mo.sid_number(ctx.prefix, sid)
        if row is not None and (n is None or (row[2], row[3]) != (mo.message_text(n),
                                                                  mo.remote_number(n))):
            cell.wrong += 1
    if cell.load != "mo-e2e":
        return
    refs = Counter(ref for ref, _ in records)
    arrival: dict[int, int] = {}
    for ref, at_ns in records:
        if ref is not None and ref not in arrival:
            arrival[ref] = at_ns // 1000
    cell.duplicated += sum(c - 1 for c in refs.values() if c > 1)
    cell.not_delivered = sum(1 for sid in acked if sid in by_sid and by_sid[sid][0] not in arrival)
    measured = [by_sid[sid] for sid in state["measured"] if sid in by_sid]
    done = [(arrival[r[0]], ts_us(r[4])) for r in measured if r[0] in arrival]
    cell.messages = len(done)
    if done:
        last = max(at for at, _ in done)
        cell.rate = len(done) / max(1e-6, (last - state["t_first_us"]) / 1e6)
        lat = [(at - created) / 1000 for at, created in done]
        cell.p50_ms, cell.p99_ms = pctl(lat, 50), pctl(lat, 99)


def check_mt(cell: Cell, reader: StoreReader, state: dict[str, Any],
             records: list[tuple[int | None, int]]) -> None:
    rows = reader.rows(
        "select m.id, m.created_at, m.status, "
        "(select min(at) from message_events e where e.message_id = m.id and e.status = 'sent'), "
        "(select count(*) from message_events e where e.message_id = m.id and e.status = 'sent') "
        "from messages m where m.direction = 'out' and m.broker = ?", (mt.BROKER,))
    status = {r[0]: r[2] for r in rows}
    refs = Counter(ref for ref, _ in records)
    acked = state["acked"]
    cell.acked = len(acked)
    cell.missing = sum(1 for i in acked if status.get(i) != "sent")
    cell.not_delivered = sum(1 for i in acked if refs.get(i, 0) == 0)
    cell.duplicated = (sum(c - 1 for c in refs.values() if c > 1)
                       + sum(1 for r in rows if int(r[4]) > 1)
                       + sum(c for ref, c in refs.items() if ref is None or ref not in status))
    measured = [r for r in rows if r[0] > state["base_id"]]
    cell.messages = len(measured)
    sent = [(ts_us(r[3]), ts_us(r[1])) for r in measured if r[2] == "sent" and r[3]]
    if sent:
        first, last = min(c for _, c in sent), max(s for s, _ in sent)
        cell.rate = len(sent) / max(1e-6, (last - first) / 1e6)
        lat = [(s - c) / 1000 for s, c in sent]
        cell.p50_ms, cell.p99_ms = pctl(lat, 50), pctl(lat, 99)


# -- one cell -------------------------------------------------------------------------


def measure(config: str, load: str, run: int, ctx: Ctx) -> Cell:
    args = ctx.args
    dialect, workers = CONFIGS[config]
    cell = Cell(config, load, run)
    rundir = ctx.workdir / f"run{run}-{config}-{load}"
    rundir.mkdir()
    pg_url = ctx.cluster.new_database() if dialect == "postgresql" and ctx.cluster else None
    reader = StoreReader(sqlite_path=rundir / "data" / "smshost.db", pg_url=pg_url)
    split = workers == 1 and args.sut_cpu is not None
    sut_cpu, load_cpu = (args.sut_cpu, args.load_cpu) if split else (None, None)
    postmaster = ctx.cluster.postmaster_pid() if ctx.cluster else None
    pin_tree(postmaster, cpu_list(sut_cpu))
    cell.pinning = (f"smshost{' + postgres' if pg_url else ''} on cpu {sut_cpu}, "
                    f"load + sink on cpu {load_cpu}" if split else
                    "nothing pinned: smshost, postgres, load and sink share every core")
    largs = argparse.Namespace(**vars(args))
    largs.load_cpu = load_cpu
    sink_port = {"mo-e2e": args.receiver_port, "mt": args.broker_port}.get(load)
    sink = start_sink(sink_port, load_cpu, rundir / "sink.log") if sink_port else None
    cfg = write_config(rundir, args, pg_url, load)
    argv = smshost_argv(cfg, rundir / "data") + (["--workers", str(workers)] if workers > 1 else [])
    logfile = rundir / "server.log"
    wait_port_free(args.port)
    cell.commit = git_state()
    proc = PROCS.start(pinned(argv, sut_cpu), logfile)
    dump = rundir / "sink-records.tsv"
    statements = None
    try:
        wait_health(args.port, proc, logfile, args.start_timeout)
        if workers > 1:
            cell.health_pids = health_pids(args.port, workers, args.start_timeout)
            if len(cell.health_pids) < workers:
                log(f"  only {len(cell.health_pids)} of {workers} workers answered /health")
        meter = Meter(proc.pid, postmaster if pg_url else None, sink.pid if sink else None)
        state = (drive_mt(cell, ctx, largs, rundir, meter, pg_url, reader) if load == "mt"
                 else drive_mo(cell, ctx, largs, rundir, meter, pg_url, reader))
        statements = pgss_rows(pg_url) if args.profile and pg_url else None
    finally:
        PROCS.stop(proc, args.stop_timeout)
        if sink is not None:
            try:
                mt.http("POST", f"http://{HOST}:{sink_port}/__dump?file={dump}", timeout=30)
            except OSError as exc:
                log(f"  could not read the sink's records: {exc}")
            PROCS.stop(sink, 10)
        try:
            cell.log_lines = sum(1 for _ in logfile.open("rb"))
        except OSError:
            pass
    records = read_records(dump)
    try:
        if load == "mt":
            check_mt(cell, reader, state, records)
        else:
            check_mo(cell, ctx, reader, state, records)
        if statements is not None:
            cell.pgss = pgss_top(statements, cell.messages)
    finally:
        reader.close()
        if pg_url and ctx.cluster:
            ctx.cluster.drop(pg_url)
    if not args.keep:
        shutil.rmtree(rundir, ignore_errors=True)
    return cell


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="SQLite, PostgreSQL and PostgreSQL with "
                                "--workers 2 under MO ingest, MO end to end and MT load, "
                                "with the CPU per message of smshost and of PostgreSQL.")
    p.add_argument("--duration", type=_bounded(1, 120, int), default=8,
                   help="measured seconds of load per cell (default 8)")
    p.add_argument("--runs", type=_bounded(1, 10, int), default=1,
                   help="repeat the whole matrix (default 1)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated, of {', '.join(CONFIGS)} (default all)")
    p.add_argument("--loads", default=",".join(LOADS),
                   help=f"comma-separated, of {', '.join(LOADS)} (default all)")
    p.add_argument("--connections", type=_bounded(1, 1024, int), default=32,
                   help="wrk connections (default 32)")
    p.add_argument("--threads", type=_bounded(1, 16, int), default=1, help="wrk threads")
    p.add_argument("--max-rate", type=_bounded(100, 200_000, int), default=12_000,
                   help="MO requests generated per second of --duration (default 12000)")
    p.add_argument("--warmup-requests", type=_bounded(1, 100_000, int), default=1000,
                   help="un-measured requests first, delivered before the window (default 1000)")
    p.add_argument("--warmup-seconds", type=_bounded(1, 60, int), default=5,
                   help="time bound of the warm-up (default 5)")
    p.add_argument("--recipients", type=_bounded(1, 10_000, int), default=1000,
                   help="MT recipients cycled through (default 1000)")
    p.add_argument("--http-client", choices=["curl", "aiohttp"], default=None,
                   help="smshost outbox.http_client: sends and webhook deliveries "
                   "(default: the shipped default)")
    p.add_argument("--port", type=_bounded(1024, 65535, int), default=23300)
    p.add_argument("--broker-port", type=_bounded(1024, 65535, int), default=23310)
    p.add_argument("--receiver-port", type=_bounded(1024, 65535, int), default=23320)
    p.add_argument("--sut-cpu", default="0",
                   help="one-process cells: smshost and PostgreSQL on these CPUs (default 0)")
    p.add_argument("--load-cpu", default="1",
                   help="one-process cells: wrk and the sink on these CPUs (default 1)")
    p.add_argument("--no-pin", action="store_true", help="pin nothing in any cell")
    p.add_argument("--timeout", type=_bounded(1, 60), default=10.0, help="wrk's timeout (s)")
    p.add_argument("--start-timeout", type=_bounded(1, 300), default=60.0)
    p.add_argument("--stop-timeout", type=_bounded(1, 300), default=30.0)
    p.add_argument("--drain-timeout", type=_bounded(1, 600), default=120.0,
                   help="bound of the wait for deliveries after the load (default 120 s)")
    p.add_argument("--drain-stall", type=_bounded(1, 120), default=15.0,
                   help="give up the wait after this long without progress (default 15 s)")
    p.add_argument("--pick", choices=["best", "median"], default="best",
                   help="figure per cell over the runs in the summary (default best)")
    p.add_argument("--profile", action="store_true",
                   help="pg_stat_statements in the cluster: statements per message "
                   "(costs the cluster some CPU: not for the recorded figures)")
    p.add_argument("--dir", type=Path, default=None, help="parent of the scratch directory")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch files (configs, logs, records); the cluster goes")
    p.add_argument("--json", type=Path, default=None, metavar="FILE")
    args = p.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    args.loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    if not args.configs or any(c not in CONFIGS for c in args.configs):
        p.error(f"--configs: choose from {', '.join(CONFIGS)}")
    if not args.loads or any(x not in LOADS for x in args.loads):
        p.error(f"--loads: choose from {', '.join(LOADS)}")
    if len({args.port, args.broker_port, args.receiver_port}) < 3:
        p.error("--port, --broker-port and --receiver-port must differ")
    if args.no_pin or len(os.sched_getaffinity(0)) < 2:
        args.sut_cpu = args.load_cpu = None
    return args


def start_cluster(args: argparse.Namespace) -> Cluster | None:
    if not any(CONFIGS[c][0] == "postgresql" for c in args.configs):
        return None
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl): apt-get install postgresql")
    settings = dict(PG_SETTINGS)
    if args.profile:
        settings["shared_preload_libraries"] = "'pg_stat_statements'"
    cluster = Cluster(bindir, settings=settings)
    PROCS_CLUSTERS.append(cluster)
    return cluster.start()


PROCS_CLUSTERS: list[Cluster] = []


def run_all(args: argparse.Namespace, workdir: Path) -> tuple[list[Cell], dict[str, Any]]:
    prefix = os.urandom(4).hex()
    url = f"http://{HOST}:{args.port}{mo.MO_PATH}"
    files = {"warmup": workdir / "requests-warmup.tsv", "load": workdir / "requests-load.tsv"}
    if any(x.startswith("mo") for x in args.loads):
        mo.write_requests(files["warmup"], url, prefix, 0, args.warmup_requests)
        mo.write_requests(files["load"], url, prefix, 1_000_000_000, args.max_rate * args.duration)
        log(f"generated {args.warmup_requests} + {args.max_rate * args.duration:,} signed MO; "
            + mo.cross_check(url, prefix))
    cluster = start_cluster(args)
    env: dict[str, Any] = {"pg_settings": cluster.settings if cluster else None}
    if cluster is not None:
        version = subprocess.run([str(cluster.bindir / "postgres"), "--version"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        env["postgres"] = version
        log(f"PostgreSQL cluster on port {cluster.port} ({version}), fsync on")
    ctx = Ctx(args, workdir, files, prefix, cluster)
    cells: list[Cell] = []
    for run in range(1, args.runs + 1):
        for load in args.loads:
            for config in args.configs:
                log(f"run {run}: {load} on {config}")
                c = measure(config, load, run, ctx)
                cells.append(c)
                log(f"  {c.rate:,.0f}/s, p50 {f1(c.p50_ms)} ms, smshost "
                    f"{c.us(c.smshost_cpu_s):,.0f} + postgres {c.us(c.pg_cpu_s):,.0f} µs/msg, "
                    f"other cpu {c.other_cpu_pct:.0f} %, checks {checks(c)}"
                    + (f", {c.log_lines} log lines" if c.log_lines else ""))
    return cells, env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", *(["taskset"] if args.sut_cpu is not None else [])):
        if shutil.which(tool) is None:
            raise SystemExit(f"error: {tool} is not installed (bench/ensure-wrk.sh; util-linux)")

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="scaleout-", dir=args.dir))
    env = mo.environment(args) | {"pinning": (
        f"one-process cells: smshost and postgres on cpu {args.sut_cpu}, wrk and the sink on "
        f"cpu {args.load_cpu}; --workers 2: nothing pinned (smshost, postgres, wrk and the "
        "sink share both cores)" if args.sut_cpu is not None else "none")}
    try:
        cells, more = run_all(args, workdir)
        env |= more
    except (RuntimeError, subprocess.SubprocessError, PgUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        PROCS.stop_all()
        for cluster in PROCS_CLUSTERS:
            cluster.stop()  # and its directory removed, --keep or not
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    commits = sorted({c.commit for c in cells})
    print(f"\n## Scale-out: {args.duration} s per cell, wrk -t{args.threads} "
          f"-c{args.connections}, commit {', '.join(commits)}\n\npinning: {env['pinning']}\n")
    for run in range(1, args.runs + 1):
        print(f"### Run {run} of {args.runs}\n")
        print(table([c for c in cells if c.run == run]) + "\n")
    text, verdict, figures = summary(cells, args.pick)
    print(f"### Summary ({args.pick} of {args.runs} run(s) per cell)\n\n{text}\n")
    print("\n".join(verdict))
    if args.profile:
        print(pgss_report(cells))
    ok = all(c.verified for c in cells)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "scaleout", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv, "environment": env,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "cells": [asdict(c) | {"verified": c.verified} for c in cells],
            "summary": {"pick": args.pick, "figures": figures, "verdict": verdict},
        }, indent=2) + "\n", encoding="utf-8")
    if not ok:
        print("\nerror: an acknowledged message is missing, duplicated or undelivered",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
