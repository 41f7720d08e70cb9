"""Outbound (MT): messages accepted by ``POST /api/messages`` and delivered to a fake broker.

One command starts a real ``smshost serve`` with one broker instance whose gateway is a
fake broker on 127.0.0.1 (``bench/fake_broker.py``: answers ``200 OK`` / ``OK`` at
once, records every message's reference and arrival time), sends it unique messages
through the API, waits (bounded) until the outbox is empty, and reports, from SQLite and
from the fake broker's records:

- the API accept rate and latency (the load generator's view);
- the broker-acknowledged rate: messages ``sent`` / (last ``sent`` − first accepted);
- accept-to-ack latency: ``messages.created_at`` → the ``sent`` event's ``at``;
- the drain time after the load stopped, errors, and a check that every accepted
  message reached the fake broker exactly once (by reference) and is ``sent``.

Scenarios, each run: ``kannel`` (the shared harness's ``b-kannel-mt`` in the same
invocation: ``../shared/bench/run.sh --only b-kannel-mt``, which also runs
``b-kannel-mt-store``), ``closed`` (wrk, closed loop, as the harness drives Kannel), and
``open@R`` (an open-loop generator at R messages/s, by default Kannel's delivered rate of
this run and 0.8 × smshost's own closed-loop rate).

Run from the repository root::

    make bench-mt                              # = .venv/bin/python bench/mt_bench.py
    .venv/bin/python bench/mt_bench.py --runs 3 --json /tmp/mt-bench.json
    .venv/bin/python bench/mt_bench.py --no-kannel --open-rates 2000,4000

See bench/README.md for the flags and the columns, docs/benchmarks.md for results.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (HARNESS, HERE, HOST, PROCS, ROOT, bounded, busy_pct, busy_s, children_cpu_s,
                    cpu_times, git_state, log, pinned, port_open, proc_cpu_s, smshost_argv,
                    tail, wait_health, wait_port_free)

LUA = HERE / "mt_send.lua"
OPENLOOP = HERE / "mt_openloop.py"
FAKE_BROKER = HERE / "fake_broker.py"
BROKER = "mtbench"                # instance name = definition name (bench/brokers/mtbench.xml)
API_TOKEN = "mt-bench-token"
LOCAL_NUMBER = "+14155550100"     # the account's number (sender of every MT)
KANNEL_RUN = HARNESS               # ../shared/bench/run.sh, or $HARNESS
KANNEL_KEYS = ("b-kannel-mt", "b-kannel-mt-store")
KANNEL_FALLBACK_RATE = 6000.0     # open@kannel without a Kannel run (issue: 5.7-7.2k)
TARGET_P50_MS = 100.0             # the issue: p50 under 100 ms at Kannel's delivered rate
REST_CPU_WARN = 30


# -- configuration --------------------------------------------------------------------


def proc_sys_s(pid: int) -> float:
    """System (kernel) CPU seconds of ``pid``: part of ``proc_cpu_s``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[12]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def ctx_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid`` so far."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches:" in line:
                        total += int(line.split()[-1])
        except (OSError, ValueError):
            pass
    return total


STORE_URL: list[str] = []  # --store-url: the server's PostgreSQL database (else SQLite)
HTTP_CLIENT: list[str] = []  # --http-client: the sender's (else the shipped default)


def smshost_config(directory: Path, port: int, broker_port: int, sync: str,
                   max_in_flight: int, api_fast_path: bool = True) -> Path:
    cfg = directory / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "smshost.toml").write_text(textwrap.dedent(f"""\
        # written by bench/mt_bench.py
        [server]
        data_dir = "{directory / 'data'}"
        public_url = "http://{HOST}:{port}"
        shutdown_timeout = 10
        api_fast_path = {str(api_fast_path).lower()}

        [[listeners]]
        name = "bench"
        host = "{HOST}"
        port = {port}
        api = true

        [api]
        token = "{API_TOKEN}"

        [store]
        synchronous = "{sync}"
        {f'url = "{STORE_URL[0]}"' if STORE_URL else ""}

        [outbox]
        max_in_flight = {max_in_flight}
        {f'http_client = "{HTTP_CLIENT[0]}"' if HTTP_CLIENT else ""}

        [purge]
        enabled = false

        [logging]
        level = "WARNING"

        [plugins]
        dirs = ["{HERE}"]
        entry_points = false
        """), encoding="utf-8")
    (cfg / "brokers.toml").write_text(textwrap.dedent(f"""\
        # written by bench/mt_bench.py: MT to the fake broker, no rate limit
        [[brokers]]
        name = "{BROKER}"
        definition = "mtbench"
        encryption = "http"

        [brokers.mt]
        gateway = "http://{HOST}:{broker_port}"
        rate = 0
        timeout = 10

        [brokers.mo]
        enabled = false

        [[brokers.accounts]]
        id = "main"
        login = "bench"
        local_address = "{LOCAL_NUMBER}"
        """), encoding="utf-8")
    (cfg / "routes.toml").write_text(
        "# written by bench/mt_bench.py\n[routing]\nenabled = false\n", encoding="utf-8")
    return cfg


# -- load generators ------------------------------------------------------------------


def run_wrk(args: argparse.Namespace, url: str, outprefix: Path, duration: float,
            tag: str, max_requests: int = 0) -> dict[str, Any]:
    """wrk (pinned to the load core) with mt_send.lua; returns MTJSON plus ``acked``."""
    argv = pinned(["wrk", f"-t{args.threads}", f"-c{args.connections}",
                   f"-d{max(1, round(duration))}s", "--timeout", f"{args.timeout:g}s",
                   "-s", str(LUA), url, "--", f"out={outprefix}", f"token={API_TOKEN}",
                   f"tag={tag}", f"max={max_requests}", f"numbers={args.recipients}"],
                  args.load_cpu)
    for old in outprefix.parent.glob(outprefix.name + ".*"):
        old.unlink()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                         stdin=subprocess.DEVNULL)
    summary: dict[str, Any] | None = None
    for line in res.stdout.splitlines():
        if line.startswith("MTJSON "):
            summary = json.loads(line[len("MTJSON "):])
    if summary is None or res.returncode != 0:
        raise RuntimeError(f"wrk gave no result (exit {res.returncode}):\n{res.stdout}\n"
                           f"{res.stderr}")
    acked: list[int] = []
    for part in sorted(outprefix.parent.glob(outprefix.name + ".*")):
        acked.extend(int(x) for x in part.read_text().split())
    summary["acked"] = acked
    return summary


def run_openloop(args: argparse.Namespace, rate: float, out: Path, tag: str
                 ) -> dict[str, Any]:
    argv = pinned([sys.executable, str(OPENLOOP), "--port", str(args.port),
                   "--token", API_TOKEN, "--rate", f"{rate:.0f}",
                   "--duration", str(args.duration), "--max-conns", str(args.open_conns),
                   "--timeout", f"{args.timeout:g}", "--tag", tag, "--out", str(out),
                   "--numbers", str(args.recipients)],
                  args.load_cpu)
    res = subprocess.run(argv, capture_output=True, text=True,
                         timeout=args.duration + args.timeout + 60, stdin=subprocess.DEVNULL)
    summary: dict[str, Any] | None = None
    for line in res.stdout.splitlines():
        if line.startswith("OLJSON "):
            summary = json.loads(line[len("OLJSON "):])
    if summary is None or res.returncode != 0:
        raise RuntimeError(f"open-loop generator gave no result (exit {res.returncode}):\n"
                           f"{res.stdout}\n{res.stderr}")
    summary["acked"] = [int(x) for x in out.read_text().split()]
    return summary


# -- the fake broker ------------------------------------------------------------------


def http(method: str, url: str, timeout: float = 10.0) -> bytes:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return bytes(resp.read())


def start_fake_broker(args: argparse.Namespace, logfile: Path) -> Any:
    wait_port_free(args.broker_port)
    proc = PROCS.start(pinned([sys.executable, str(FAKE_BROKER), "--port",
                               str(args.broker_port), "--body", "OK"], args.load_cpu), logfile)
    deadline = time.monotonic() + 15
    while not port_open(args.broker_port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the fake broker did not start:\n{tail(logfile)}")
        time.sleep(0.05)
    return proc


def broker_count(port: int) -> int:
    return int(json.loads(http("GET", f"http://{HOST}:{port}/__stats"))["count"])


def read_broker_dump(path: Path) -> list[tuple[int | None, int, int | None]]:
    out = []
    for line in path.read_text().splitlines():
        ref, at, tok = line.split("\t")
        out.append((int(ref) if ref != "-" else None, int(at), int(tok) if tok != "-" else None))
    return out


# -- SQLite ---------------------------------------------------------------------------


_SECONDS: dict[str, int] = {}


def ts_us(text: str) -> int:
    """smshost's fixed-width UTC timestamp (2026-11-27T23:16:38.679640Z) → epoch µs."""
    head = text[:19]
    sec = _SECONDS.get(head)
    if sec is None:
        sec = _SECONDS[head] = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return sec * 1_000_000 + int(text[20:26])


def db_connect(db: Path) -> Any:
    """The server's database, read on the side: its SQLite file read-only, or (with
    --store-url) its PostgreSQL database through smshost's translating connection."""
    if STORE_URL:
        from host.pg.database import PgDatabase, connect

        return PgDatabase(connect(STORE_URL[0]))
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def outbox_state(db: Path) -> tuple[int, int, int]:
    """(outbox rows, out messages, max id) read while the server runs."""
    conn = db_connect(db)
    try:
        left = conn.execute("select count(*) from outbox").fetchone()[0]
        n, top = conn.execute("select count(*), coalesce(max(id), 0) from messages "
                              "where direction = 'out'").fetchone()
        return int(left), int(n), int(top)
    finally:
        conn.close()


def drain(db: Path, timeout: float, stall: float, quiet: float = 1.0,
          pid: int | None = None) -> dict[str, Any]:
    """Wait until the outbox is empty and the message count held still for ``quiet`` s;
    give up after ``stall`` s without progress or ``timeout`` s overall. With ``pid``,
    also the CPU seconds that process used until the last progress (``cpu_s``, over
    ``busy_s`` seconds): the server's CPU while it was still sending."""
    started = time.monotonic()
    cpu0 = proc_cpu_s(pid) if pid else 0.0
    last = (-1, -1)
    last_move = started
    cpu_at_move = cpu0
    while True:
        left, n, _ = outbox_state(db)
        now = time.monotonic()
        if (left, n) != last:
            last, last_move = (left, n), now
            if pid:
                cpu_at_move = proc_cpu_s(pid)
        if left == 0 and now - last_move >= quiet:
            end = "complete"
            break
        if now - last_move >= stall:
            end = "stalled"
            break
        if now - started >= timeout:
            end = "timeout"
            break
        time.sleep(0.1)
    return {"end": end, "left": left, "waited_s": round(time.monotonic() - started, 2),
            "busy_s": round(last_move - started, 3), "cpu_s": round(cpu_at_move - cpu0, 3)}


def pctl(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


# -- one measurement ------------------------------------------------------------------


@dataclass
class Result:
    scenario: str                 # closed | open@<rate>
    run: int
    commit: str = ""
    offered_rate: float | None = None   # open loop: requests/s scheduled
    # the load generator's view (measurement only)
    accepted: int = 0             # 201 answers
    accept_rate: float = 0.0      # 201 / (first request -> last answer)
    accept_p50_ms: float = 0.0    # API answer latency (open loop: from the due time)
    accept_p99_ms: float = 0.0
    errors: int = 0               # non-201 + socket errors + timeouts
    first_error: str = ""
    unsent: int = 0               # open loop: due requests never sent (generator queue)
    gen_max_queue: int = 0        # open loop: longest generator queue
    # delivery, from SQLite (messages created during the measurement)
    measured: int = 0             # out messages created during the measurement
    sent: int = 0                 # of those, status sent
    ack_rate: float = 0.0         # sent / (first created_at -> last sent at)
    ack_window_s: float = 0.0
    sent_during_load_rate: float = 0.0  # sent events inside the load window / window
    ack_p50_ms: float | None = None     # created_at -> sent event at
    ack_p90_ms: float | None = None
    ack_p99_ms: float | None = None
    ack_max_ms: float | None = None
    to_broker_p50_ms: float | None = None  # created_at -> fake broker arrival
    to_broker_p99_ms: float | None = None
    settle_p50_ms: float | None = None     # fake broker arrival -> sent event at
    settle_p99_ms: float | None = None
    e2e_p50_ms: float | None = None        # T token (request sent/due) -> broker arrival
    e2e_p99_ms: float | None = None
    drain_s: float = 0.0          # last API answer -> last sent
    drain: dict[str, Any] = field(default_factory=dict)
    # verification (warm-up and measurement together)
    acked_total: int = 0          # distinct ids answered 201
    stored: int = 0               # out messages in SQLite
    not_sent: int = 0             # acked, status is not sent
    not_at_broker: int = 0        # acked, never reached the fake broker
    duplicated: int = 0           # references the fake broker got more than once
    unknown_refs: int = 0         # broker requests whose reference is no stored message
    sent_events_dup: int = 0      # messages with more than one sent event
    statuses: dict[str, int] = field(default_factory=dict)
    # CPU (100 = one core)
    sut_cpu_pct: float = 0.0      # server, load window
    sut_cpu_drain_pct: float | None = None  # server, from the end of the load to drained
    cpu_us_per_msg: float | None = None  # server CPU (load + drain) / messages measured
    sut_sys_pct: float = 0.0      # the kernel's part of sut_cpu_pct (syscalls: sockets, fsync)
    ctx_per_msg: float | None = None  # server context switches (load + drain) / messages
    gen_cpu_pct: float = 0.0      # wrk / open-loop generator, load window
    broker_cpu_pct: float = 0.0   # fake broker, load window
    rest_cpu_pct: float = 0.0
    core_busy_pct: dict[str, float] = field(default_factory=dict)
    log_lines: int = 0
    shutdown: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    warmup: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return (self.not_sent == 0 and self.not_at_broker == 0 and self.duplicated == 0
                and self.unknown_refs == 0 and self.sent_events_dup == 0
                and self.acked_total > 0)


def analyse(db: Path, records: list[tuple[int | None, int, int | None]], acked: set[int],
            base_id: int, load: dict[str, Any], r: Result) -> None:
    conn = db_connect(db)
    try:
        rows = conn.execute(
            "select m.id, m.created_at, m.status, "
            "(select min(at) from message_events e where e.message_id = m.id "
            " and e.status = 'sent'), "
            "(select count(*) from message_events e where e.message_id = m.id "
            " and e.status = 'sent') "
            "from messages m where m.direction = 'out' and m.broker = ?", (BROKER,)).fetchall()
    finally:
        conn.close()
    status = {row[0]: row[2] for row in rows}
    r.stored = len(rows)
    r.statuses = dict(Counter(status.values()))
    r.sent_events_dup = sum(1 for row in rows if row[4] > 1)
    refs = Counter(ref for ref, _, _ in records)
    arrival = {}
    for ref, at_ns, _ in records:
        if ref is not None and ref not in arrival:
            arrival[ref] = at_ns // 1000
    r.acked_total = len(acked)
    r.not_sent = sum(1 for i in acked if status.get(i) != "sent")
    r.not_at_broker = sum(1 for i in acked if refs.get(i, 0) == 0)
    r.duplicated = sum(c - 1 for c in refs.values() if c > 1)
    r.unknown_refs = sum(c for ref, c in refs.items() if ref is None or ref not in status)

    measured = [row for row in rows if row[0] > base_id]
    r.measured = len(measured)
    created = {row[0]: ts_us(row[1]) for row in measured}
    sent_at = {row[0]: ts_us(row[3]) for row in measured if row[2] == "sent" and row[3]}
    r.sent = len(sent_at)
    if sent_at:
        first, last = min(created.values()), max(sent_at.values())
        r.ack_window_s = round((last - first) / 1e6, 3)
        r.ack_rate = len(sent_at) / max(1e-6, (last - first) / 1e6)
        t0, t1 = load["t_first_us"], load["t_last_us"]
        inside = sum(1 for at in sent_at.values() if t0 <= at <= t1)
        r.sent_during_load_rate = inside / max(1e-6, (t1 - t0) / 1e6)
        r.drain_s = round(max(0.0, (last - t1) / 1e6), 3)
        lat = sorted((sent_at[i] - created[i]) / 1000 for i in sent_at)
        r.ack_p50_ms, r.ack_p90_ms = pctl(lat, 50), pctl(lat, 90)
        r.ack_p99_ms, r.ack_max_ms = pctl(lat, 99), lat[-1]
        to_broker = sorted((arrival[i] - created[i]) / 1000 for i in sent_at if i in arrival)
        settle = sorted((sent_at[i] - arrival[i]) / 1000 for i in sent_at if i in arrival)
        r.to_broker_p50_ms, r.to_broker_p99_ms = pctl(to_broker, 50), pctl(to_broker, 99)
        r.settle_p50_ms, r.settle_p99_ms = pctl(settle, 50), pctl(settle, 99)
    e2e = sorted((at_ns / 1000 - tok) / 1000 for ref, at_ns, tok in records
                 if ref is not None and ref > base_id and tok is not None)
    r.e2e_p50_ms, r.e2e_p99_ms = pctl(e2e, 50), pctl(e2e, 99)


def py_spy() -> str | None:
    """py-spy on PATH, or beside this Python (the venv's bin/)."""
    found = shutil.which("py-spy")
    beside = Path(sys.executable).parent / "py-spy"
    return found or (str(beside) if beside.exists() else None)


def start_profile(args: argparse.Namespace, pid: int, seconds: float, out: Path) -> Any:
    argv = pinned([py_spy() or "py-spy", "record", "--pid", str(pid),
                   "--duration", str(max(1, round(seconds))),
                   "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(out)],
                  args.load_cpu)
    return PROCS.start(argv, out.with_suffix(".log"))


# Where a sample's time goes: the first rule with a frame on the stack (anywhere) names
# it. The product's own steps first, then libraries as a fallback for the stacks py-spy
# could only read partly (--nonblocking: it does not stop the server while it reads).
PROFILE_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("API: store message + outbox row (write)", ("Outbound._store",)),
    ("sender: settle, sent + event (write)", ("Sender._settle.<locals>.write", "Sender._finish")),
    ("sender: claim (write)", ("Sender._claim.<locals>.claim",)),
    ("sender: adopt_orphans (write per sent)", ("adopt_orphans",)),
    ("sender: read message + outbox row", ("Messages.get", "attempt.<locals>")),
    ("sender: build MT request", ("build_mt_request",)),
    ("sender: read MT answer", ("read_mt_response",)),
    # the client's own loop callbacks (aiohttp's protocol, libcurl's socket_action) too
    ("sender: HTTP client request/answer", ("exchange (host/brokers/attempts.py)", "aiohttp/",
                                            "host/httpclient/")),
    ("sender: hooks, metrics, other", ("Sender.",)),
    ("API: plan (route, number, encoding)", ("Planner.plan",)),
    ("API: opt-out check", ("OptOuts.check",)),
    ("API: hooks, metrics after the commit", ("Outbound.send",)),
    ("API: HTTP, middleware, JSON", ("run_asgi", "httptools_impl", "starlette/", "host/web/",
                                     "h11", "json/")),
    ("store: BEGIN/COMMIT thread", ("concurrent/futures/thread.py",)),
    ("store: writer loop", ("Store.", "Writer.")),
    ("encoding (partial stack)", ("host/encoding.py",)),
    ("phonenumbers (partial stack)", ("phonenumbers/",)),
    ("SQLite via sqlite_utils (partial stack)", ("sqlite_utils/",)),
    ("event loop itself (uvloop, sockets, idle)", ("Runner.run",)),
]


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks → share of samples per step of the product
    (``PROFILE_RULES``) and per leaf function (self time)."""
    self_count: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = []
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            where = where.rstrip(")").rsplit(":", 1)[0]
            short = where.split("/site-packages/")[-1].split("/lib/python3")[-1]
            short = short.replace(str(ROOT) + "/", "").lstrip("0123456789./")
            frames.append(f"{name} ({short})")
        if not frames:
            continue
        self_count[frames[-1]] += count
        joined = ";".join(frames)
        step = next((label for label, needles in PROFILE_RULES
                     if any(needle in joined for needle in needles)), "other")
        steps[step] += count

    def share(c: Counter[str], n: int | None) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / max(1, total), 1)) for k, v in c.most_common(n)]

    return {"samples": total, "steps": share(steps, None), "self": share(self_count, top)}


def measure(scenario: str, rate: float | None, run: int, args: argparse.Namespace,
            workdir: Path) -> Result:
    r = Result(scenario, run, offered_rate=rate)
    rundir = workdir / f"run{run}-{scenario.replace('@', '-')}"
    rundir.mkdir()
    logfile = rundir / "server.log"
    wait_port_free(args.port)
    cfg = smshost_config(rundir, args.port, args.broker_port, args.sync, args.max_in_flight,
                         not args.no_api_fast_path)
    data = rundir / "data"
    db = data / "smshost.db"
    url = f"http://{HOST}:{args.port}/api/messages"
    broker = start_fake_broker(args, rundir / "fake-broker.log")
    r.commit = git_state()
    proc = PROCS.start(pinned(smshost_argv(cfg, data), args.sut_cpu), logfile)
    acked: set[int] = set()
    try:
        wait_health(args.port, proc, logfile, args.start_timeout)
        tag = f"r{run}{scenario.replace('@', '-')}"
        base_id = 0
        if args.warmup_requests:
            w = run_wrk(args, url, rundir / "acked-warmup", args.warmup_seconds,
                        tag + "-warmup", args.warmup_requests)
            acked.update(w["acked"])
            if w["non201"] or not w["acked"]:
                raise RuntimeError(f"warm-up failed: {len(w['acked'])} accepted, "
                                   f"{w['non201']} refused, first: {w['first_error']!r}\n"
                                   f"{tail(logfile)}")
            d = drain(db, args.drain_timeout, args.drain_stall)
            if d["end"] != "complete":
                raise RuntimeError(f"the warm-up did not drain ({d}):\n{tail(logfile)}")
            base_id = outbox_state(db)[2]
            r.warmup = {"accepted": len(w["acked"]), "drain": d,
                        "broker_count": broker_count(args.broker_port)}
        profiler = None
        if args.profile:
            profiler = start_profile(args, proc.pid, args.duration, rundir / "profile.txt")
        sys0, ctx0 = proc_sys_s(proc.pid), ctx_switches(proc.pid)
        cpu0, sut0, brk0, kids0, t0 = (cpu_times(), proc_cpu_s(proc.pid),
                                       proc_cpu_s(broker.pid), children_cpu_s(),
                                       time.monotonic())
        if rate is None:
            load = run_wrk(args, url, rundir / "acked", args.duration, tag)
            errors = (load["non201"] + load["ok_noid"] + load["err_connect"]
                      + load["err_read"] + load["err_write"] + load["err_timeout"])
        else:
            load = run_openloop(args, rate, rundir / "acked-open.txt", tag)
            errors = load["non201"] + load["ok_noid"] + load["errors"] + load["timed_out"]
            r.unsent = load["unsent"]
            r.gen_max_queue = load["max_queue"]
        cpu1, sut1, brk1, kids1, t1 = (cpu_times(), proc_cpu_s(proc.pid),
                                       proc_cpu_s(broker.pid), children_cpu_s(),
                                       time.monotonic())
        sys1 = proc_sys_s(proc.pid)
        acked.update(load["acked"])
        window = max(1e-6, (load["t_last_us"] - load["t_first_us"]) / 1e6)
        r.accepted = len(load["acked"])
        r.accept_rate = r.accepted / window
        r.accept_p50_ms = load["lat_p50_us"] / 1000
        r.accept_p99_ms = load["lat_p99_us"] / 1000
        r.errors = errors
        r.first_error = load["first_error"]
        wall = max(1e-6, t1 - t0)
        r.sut_cpu_pct = round(100.0 * (sut1 - sut0) / wall, 1)
        r.sut_sys_pct = round(100.0 * (sys1 - sys0) / wall, 1)
        r.broker_cpu_pct = round(100.0 * (brk1 - brk0) / wall, 1)
        r.gen_cpu_pct = round(100.0 * (kids1 - kids0) / wall, 1)
        r.rest_cpu_pct = round(100.0 * (busy_s(cpu0, cpu1) - (sut1 - sut0) - (brk1 - brk0)
                                        - (kids1 - kids0)) / wall, 1)
        r.core_busy_pct = busy_pct(cpu0, cpu1)
        r.load = {k: v for k, v in load.items() if k != "acked"}
        r.drain = drain(db, args.drain_timeout, args.drain_stall, pid=proc.pid)
        sut_load_s = sut1 - sut0
        ctx_n = ctx_switches(proc.pid) - ctx0
        if r.drain["busy_s"] >= 0.5:  # long enough to say something
            r.sut_cpu_drain_pct = round(100.0 * r.drain["cpu_s"] / r.drain["busy_s"], 1)
        if profiler is not None:
            try:
                profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            PROCS.stop(profiler, 5)
            prof = rundir / "profile.txt"
            if prof.exists():
                r.profile = summarize_profile(prof)
                if args.keep or args.profile_dir:
                    r.profile["file"] = str(prof)
    finally:
        r.shutdown = PROCS.stop(proc, args.stop_timeout)
        dump = rundir / "broker-records.tsv"
        try:
            http("POST", f"http://{HOST}:{args.broker_port}/__dump?file={dump}", timeout=30)
        except (urllib.error.URLError, OSError) as exc:
            log(f"  could not read the fake broker's records: {exc}")
        PROCS.stop(broker, 10)
        try:
            with logfile.open("rb") as f:
                r.log_lines = sum(1 for _ in f)
        except OSError:
            pass
    records = read_broker_dump(dump) if dump.exists() else []
    analyse(db, records, acked, base_id, r.load, r)
    if r.measured:
        r.cpu_us_per_msg = round(1e6 * (sut_load_s + r.drain.get("cpu_s", 0.0)) / r.measured, 1)
        r.ctx_per_msg = round(ctx_n / r.measured, 1)
    if args.profile_dir and (rundir / "profile.txt").exists():
        args.profile_dir.mkdir(parents=True, exist_ok=True)
        target = args.profile_dir / f"run{run}-{scenario}.txt"
        shutil.copy(rundir / "profile.txt", target)
        r.profile["file"] = str(target)
    if not args.keep:
        shutil.rmtree(rundir, ignore_errors=True)
    return r


# -- Kannel (the shared harness) ------------------------------------------------------


def run_kannel(args: argparse.Namespace, run: int, workdir: Path) -> dict[str, Any]:
    """The shared harness's b-kannel-mt (and b-kannel-mt-store: --only matches by
    prefix) with our duration and connections. Its own results dir and scratch dir."""
    out = workdir / f"kannel-run{run}"
    out.mkdir()
    env = {"DURATION": str(args.duration), "CONC": str(args.connections),
           "BENCH_OUT": str(out / "results"), "BENCH_WORK": str(out / "work"),
           "SUT_CPU": args.sut_cpu or "0", "LOAD_CPU": args.load_cpu or "1",
           "PIN": "0" if args.sut_cpu is None else "1"}
    logfile = out / "run.log"
    started = time.monotonic()
    proc = PROCS.start(["bash", str(args.kannel_run), "--only", "b-kannel-mt"], logfile,
                       env=env, cwd=args.kannel_run.parent)
    try:
        proc.wait(timeout=args.kannel_timeout)
    except subprocess.TimeoutExpired:
        log(f"  the Kannel run took more than {args.kannel_timeout:g} s: stopping it")
    finally:
        PROCS.stop(proc, 30)
    seconds = round(time.monotonic() - started, 1)
    files = sorted((out / "results").glob("bench-*.json"))
    if proc.returncode != 0 or not files:
        raise RuntimeError(f"the Kannel run failed (exit {proc.returncode}):\n{tail(logfile)}")
    data = json.loads(files[-1].read_text())
    results = {r["key"]: r for r in data["runs"][0] if r.get("key") in KANNEL_KEYS}
    for key, res in results.items():
        if "error" in res:
            raise RuntimeError(f"Kannel scenario {key} failed: {res['error']}")
    if "b-kannel-mt" not in results:
        raise RuntimeError(f"no b-kannel-mt result in {files[-1]}")
    keep = ("accepted", "accepted_rps", "lat_p50_ms", "lat_p99_ms", "delivered", "e2e_rps",
            "e2e_p50_ms", "e2e_p99_ms", "drain_s", "errors", "lost", "drain_end", "cpu",
            "sut_cpu_pct", "sink_cpu_pct", "wrk_cpu_pct", "window_s", "kannel_status")
    return {"seconds": seconds, "environment": data.get("environment", {}),
            "results": {k: {f: v.get(f) for f in keep} for k, v in results.items()}}


# -- report ---------------------------------------------------------------------------


def f0(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def f1(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def f2(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def check_cell(r: Result) -> str:
    problems = []
    for label, n in (("not sent", r.not_sent), ("not at broker", r.not_at_broker),
                     ("duplicated", r.duplicated), ("unknown refs", r.unknown_refs),
                     ("sent twice", r.sent_events_dup)):
        if n:
            problems.append(f"{n} {label}")
    if not problems:
        return f"ok ({r.acked_total:,})"
    return "**" + ", ".join(problems) + "**"


def table(results: list[Result], kannel: dict[str, Any] | None) -> str:
    lines = [
        "| scenario | offered/s | accepted/s | acked/s | accept p50 / p99 ms "
        "| accept→ack p50 / p90 / p99 ms | e2e p50 / p99 ms | drain s | errors "
        "| every accepted sent once | server cpu % load / drain | server cpu µs/msg "
        "| ctx sw/msg | load / broker cpu % | rest cpu % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for key, k in (kannel or {}).get("results", {}).items():
        cpu = k.get("cpu") or {}
        lost = k.get("lost")
        lines.append(
            f"| {key} | - | {f0(k.get('accepted_rps'))} | {f0(k.get('e2e_rps'))} "
            f"| {f2(k.get('lat_p50_ms'))} / {f2(k.get('lat_p99_ms'))} | - "
            f"| {f1(k.get('e2e_p50_ms'))} / {f1(k.get('e2e_p99_ms'))} "
            f"| {f1(k.get('drain_s'))} | {k.get('errors', '-')} "
            f"| lost {lost if lost is not None else '-'} (count only) "
            f"| {f0(cpu.get('0'))} (core 0) / - | - | - | {f0(k.get('wrk_cpu_pct'))} / "
            f"{f0(k.get('sink_cpu_pct'))} | - |")
    for r in results:
        offered = "closed" if r.offered_rate is None else f0(r.offered_rate)
        unsent = f" ({r.unsent:,} unsent)" if r.unsent else ""
        lines.append(
            f"| smshost {r.scenario} | {offered}{unsent} | {f0(r.accept_rate)} "
            f"| {f0(r.ack_rate)} | {f2(r.accept_p50_ms)} / {f2(r.accept_p99_ms)} "
            f"| {f1(r.ack_p50_ms)} / {f1(r.ack_p90_ms)} / {f1(r.ack_p99_ms)} "
            f"| {f1(r.e2e_p50_ms)} / {f1(r.e2e_p99_ms)} | {f1(r.drain_s)} | {r.errors:,} "
            f"| {check_cell(r)} | {f0(r.sut_cpu_pct)} / {f0(r.sut_cpu_drain_pct)} "
            f"| {f0(r.cpu_us_per_msg)} | {f0(r.ctx_per_msg)} "
            f"| {f0(r.gen_cpu_pct)} / {f0(r.broker_cpu_pct)} "
            f"| {f0(max(0.0, r.rest_cpu_pct))} |")
    return "\n".join(lines)


def kannel_rate(kannel: dict[str, Any] | None) -> float | None:
    if not kannel:
        return None
    return (kannel.get("results", {}).get("b-kannel-mt") or {}).get("e2e_rps")


def summary_table(runs: list[dict[str, Any]]) -> str:
    head = ("| run | commit | Kannel MT delivered/s | Kannel e2e p50 ms | smshost closed acked/s "
            "| smshost / Kannel | closed accept→ack p50 / p99 ms "
            "| open: rate → acked/s, accept→ack p50 ms, e2e p50 ms |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---|"]
    ratios = []
    for index, rs in enumerate(runs, 1):
        k = kannel_rate(rs["kannel"])
        kp50 = ((rs["kannel"] or {}).get("results", {}).get("b-kannel-mt") or {}).get(
            "e2e_p50_ms")
        closed = next((r for r in rs["results"] if r.scenario == "closed"), None)
        ratio = closed.ack_rate / k if closed and k else None
        if ratio is not None:
            ratios.append(ratio)
        cells = []
        for r in rs["results"]:
            if r.scenario == "closed":
                continue
            cells.append(f"{f0(r.offered_rate)} → {f0(r.ack_rate)}, {f1(r.ack_p50_ms)}, "
                         f"{f1(r.e2e_p50_ms)}" + (f" ({r.unsent:,} unsent)" if r.unsent else ""))
        commits = sorted({r.commit for r in rs["results"]})
        lines.append(
            f"| {index} | {', '.join(commits) or '-'} | {f0(k)} | {f1(kp50)} "
            f"| {f0(closed.ack_rate if closed else None)} | {f2(ratio)} "
            f"| {f1(closed.ack_p50_ms if closed else None)} / "
            f"{f1(closed.ack_p99_ms if closed else None)} | {'; '.join(cells) or '-'} |")
    if len(runs) > 1:
        ks = [x for x in (kannel_rate(rs["kannel"]) for rs in runs) if x]
        cl = [r.ack_rate for rs in runs for r in rs["results"] if r.scenario == "closed"]
        p50 = [r.ack_p50_ms for rs in runs for r in rs["results"]
               if r.scenario == "closed" and r.ack_p50_ms is not None]
        lines.append(f"| median | | {f0(statistics.median(ks)) if ks else '-'} | "
                     f"| {f0(statistics.median(cl)) if cl else '-'} "
                     f"| {f2(statistics.median(ratios)) if ratios else '-'} "
                     f"| {f1(statistics.median(p50)) if p50 else '-'} | |")
    return "\n".join(lines)


def verdict(runs: list[dict[str, Any]]) -> str:
    parts = []
    for index, rs in enumerate(runs, 1):
        k = kannel_rate(rs["kannel"])
        closed = next((r for r in rs["results"] if r.scenario == "closed"), None)
        at_k = next((r for r in rs["results"] if r.scenario == "open@kannel"), None)
        rate_ok = bool(closed and k and closed.ack_rate >= k)
        text = (f"run {index}: closed-loop {f0(closed.ack_rate if closed else None)}/s vs "
                f"Kannel {f0(k)}/s: {'rate met' if rate_ok else 'rate NOT met'}")
        if at_k is not None:
            kept_up = (at_k.offered_rate is not None and at_k.unsent == 0
                       and at_k.ack_rate >= 0.95 * at_k.offered_rate)
            worst = max(x for x in (at_k.ack_p50_ms, at_k.e2e_p50_ms) if x is not None) \
                if (at_k.ack_p50_ms is not None or at_k.e2e_p50_ms is not None) else None
            lat_ok = kept_up and worst is not None and worst < TARGET_P50_MS
            text += (f"; open loop at {f0(at_k.offered_rate)}/s: acked {f0(at_k.ack_rate)}/s, "
                     f"p50 accept→ack {f1(at_k.ack_p50_ms)} ms, e2e {f1(at_k.e2e_p50_ms)} ms: "
                     f"{'p50 < 100 ms met' if lat_ok else 'p50 target NOT met'}"
                     + ("" if kept_up else " (did not keep up with the offered rate)"))
        parts.append(text)
    return "\n".join(parts)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(module: str) -> str | None:
        try:
            from importlib.metadata import version as v
            return v(module)
        except Exception:  # noqa: BLE001 - only informative
            return None

    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[0].split(" [")[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        wrk = "?"
    return {
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "uvloop": version("uvloop"), "uvicorn": version("uvicorn"),
        "aiohttp": version("aiohttp"), "starlette": version("starlette"), "wrk": wrk,
        "cpu_count": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
        "pinning": (f"server on cpu {args.sut_cpu}, load generator and fake broker on cpu "
                    f"{args.load_cpu}" if args.sut_cpu is not None else "none"),
    }


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Outbound (MT): POST /api/messages into smshost serve, delivered to a "
        "fake broker; accept and broker-acknowledged rates, accept-to-ack latency, every "
        "message checked; Kannel's b-kannel-mt in the same invocation.")
    parser.add_argument("--duration", type=bounded(1, 300, int), default=10,
                        help="measured seconds of load per scenario (default 10)")
    parser.add_argument("--connections", type=bounded(1, 1024, int), default=32,
                        help="wrk connections (closed loop), also the Kannel run's CONC "
                        "(default 32)")
    parser.add_argument("--threads", type=bounded(1, 16, int), default=1,
                        help="wrk threads (default 1)")
    parser.add_argument("--runs", type=bounded(1, 20, int), default=1,
                        help="repeat everything (default 1); one table per run")
    parser.add_argument("--open-rates", default="kannel,0.8x",
                        help="open-loop scenarios, comma-separated: a rate in messages/s, "
                        "'kannel' (Kannel's delivered rate in this run, or --kannel-rate "
                        "without a Kannel run), or '<f>x' (f x smshost's closed-loop acked "
                        "rate in this run); '' for none (default kannel,0.8x)")
    parser.add_argument("--kannel-rate", type=bounded(1, 200_000), default=KANNEL_FALLBACK_RATE,
                        help="rate of open@kannel when Kannel is not run (default 6000)")
    parser.add_argument("--open-conns", type=bounded(1, 4096, int), default=256,
                        help="open loop: keep-alive connections at most (default 256)")
    parser.add_argument("--no-kannel", action="store_true",
                        help="skip the shared harness's b-kannel-mt run")
    parser.add_argument("--kannel-run", type=Path, default=KANNEL_RUN,
                        help=f"the shared harness's run.sh (default {KANNEL_RUN})")
    parser.add_argument("--kannel-timeout", type=bounded(30, 3600), default=600.0,
                        help="seconds the Kannel run may take (default 600)")
    parser.add_argument("--recipients", type=bounded(1, 10_000, int), default=1000,
                        help="distinct recipients the messages cycle through, "
                        "+14155550000 upwards (default 1000)")
    parser.add_argument("--warmup-requests", type=bounded(0, 100_000, int), default=1000,
                        help="un-measured messages before each measurement, drained before "
                        "it starts (default 1000)")
    parser.add_argument("--warmup-seconds", type=bounded(1, 60, int), default=5,
                        help="time bound of the warm-up load (default 5)")
    parser.add_argument("--store-url", default=None, metavar="URL",
                        help="run the server on this PostgreSQL database ([store] url), "
                        "which must be empty: use it with --open-rates '' --runs 1")
    parser.add_argument("--sync", type=str.upper, choices=["FULL", "NORMAL"], default="FULL",
                        help="smshost store.synchronous (default FULL, the shipped default)")
    parser.add_argument("--no-api-fast-path", action="store_true",
                        help="server.api_fast_path = false: the send API through the ASGI "
                        "stack rather than answered by the protocol (host/web/api/fastsend.py)")
    parser.add_argument("--max-in-flight", type=bounded(1, 4096, int), default=64,
                        help="smshost outbox.max_in_flight (default 64, the shipped default)")
    parser.add_argument("--http-client", choices=["curl", "aiohttp"], default=None,
                        help="smshost outbox.http_client (default: the shipped default)")
    parser.add_argument("--port", type=bounded(1024, 65535, int), default=23100,
                        help="smshost's listener (default 23100)")
    parser.add_argument("--broker-port", type=bounded(1024, 65535, int), default=23110,
                        help="the fake broker's port (default 23110)")
    parser.add_argument("--sut-cpu", default="0",
                        help="CPU list of the server under test, via taskset (default 0)")
    parser.add_argument("--load-cpu", default="1",
                        help="CPU list of the load generator and the fake broker (default 1)")
    parser.add_argument("--no-pin", action="store_true", help="no taskset")
    parser.add_argument("--timeout", type=bounded(1, 60), default=10.0,
                        help="request timeout of the load generators (default 10)")
    parser.add_argument("--drain-timeout", type=bounded(1, 3600), default=180.0,
                        help="longest wait for the outbox to empty (default 180)")
    parser.add_argument("--drain-stall", type=bounded(1, 600), default=15.0,
                        help="give the drain up after this many seconds without progress "
                        "(default 15)")
    parser.add_argument("--start-timeout", type=bounded(1, 300), default=30.0,
                        help="seconds to wait for /health after a start (default 30)")
    parser.add_argument("--stop-timeout", type=bounded(1, 300), default=30.0,
                        help="seconds to wait after SIGTERM before SIGKILL (default 30)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the server with py-spy during the closed-loop load and "
                        "print where its CPU goes (needs py-spy)")
    parser.add_argument("--profile-dir", type=Path, default=None,
                        help="keep the py-spy raw stacks here (with --profile)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the scratch directory (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch directory (configs, logs, databases, records)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write every figure and the environment as JSON")
    args = parser.parse_args(argv)
    rates = []
    for item in (s.strip() for s in args.open_rates.split(",")):
        if not item:
            continue
        if item == "kannel" or (item.endswith("x") and _is_number(item[:-1])) or \
                _is_number(item):
            rates.append(item)
        else:
            parser.error(f"--open-rates: {item!r} is not a rate, 'kannel' or '<f>x'")
    args.open_rates = rates
    if args.port == args.broker_port:
        parser.error("--port and --broker-port must differ")
    if args.store_url is not None:
        if rates or args.runs != 1:
            parser.error("--store-url measures once: add --open-rates '' --runs 1")
        STORE_URL.append(args.store_url)
    if args.http_client is not None:
        HTTP_CLIENT.append(args.http_client)
    if args.no_pin:
        args.sut_cpu = args.load_cpu = None
    if args.profile_dir is not None:
        args.profile = True
    return args


def _is_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def preflight(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed (Debian: apt-get install wrk; "
                         "`make bench-mt` installs it when run as root)")
    if args.sut_cpu is not None:
        if shutil.which("taskset") is None:
            raise SystemExit("error: taskset not found (util-linux); or pass --no-pin")
        if len(os.sched_getaffinity(0)) < 2:
            log("only one CPU available: running unpinned (--no-pin)")
            args.sut_cpu = args.load_cpu = None
    if args.profile and py_spy() is None:
        raise SystemExit("error: --profile needs py-spy (pip install py-spy)")
    if not args.no_kannel and not args.kannel_run.exists():
        raise SystemExit(f"error: {args.kannel_run} not found: pass --kannel-run or "
                         "--no-kannel")


def resolve_rate(item: str, kannel: dict[str, Any] | None, closed: Result | None,
                 args: argparse.Namespace) -> tuple[str, float | None]:
    if item == "kannel":
        return "open@kannel", kannel_rate(kannel) or args.kannel_rate
    if item.endswith("x"):
        if closed is None or not closed.ack_rate:
            return f"open@{item}", None
        return f"open@{item}", float(item[:-1]) * closed.ack_rate
    return f"open@{float(item):.0f}", float(item)


def run_all(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    runs = []
    for run in range(1, args.runs + 1):
        kannel = None
        if not args.no_kannel:
            log(f"run {run}: Kannel b-kannel-mt (shared harness, ~1 min)")
            kannel = run_kannel(args, run, workdir)
            for key, k in kannel["results"].items():
                log(f"run {run}: {key}: accepted {f0(k.get('accepted_rps'))}/s, delivered "
                    f"{f0(k.get('e2e_rps'))}/s, e2e p50 {f1(k.get('e2e_p50_ms'))} ms, "
                    f"drain {f1(k.get('drain_s'))} s, lost {k.get('lost')}")
        results: list[Result] = []
        log(f"run {run}: smshost closed loop (wrk -c{args.connections})")
        closed = measure("closed", None, run, args, workdir)
        results.append(closed)
        report(closed)
        for item in args.open_rates:
            scenario, rate = resolve_rate(item, kannel, closed, args)
            if rate is None:
                log(f"run {run}: {scenario}: no closed-loop rate to scale, skipped")
                continue
            log(f"run {run}: smshost {scenario}: open loop at {rate:,.0f}/s")
            r = measure(scenario, rate, run, args, workdir)
            results.append(r)
            report(r)
        runs.append({"kannel": kannel, "results": results})
    return runs


def report(r: Result) -> None:
    log(f"  accepted {f0(r.accept_rate)}/s, acked {f0(r.ack_rate)}/s, accept→ack p50 "
        f"{f1(r.ack_p50_ms)} ms p99 {f1(r.ack_p99_ms)} ms, e2e p50 {f1(r.e2e_p50_ms)} ms, "
        f"drain {f1(r.drain_s)} s ({r.drain.get('end')}), errors {r.errors}, server cpu "
        f"{f0(r.sut_cpu_pct)} % (sys {f0(r.sut_sys_pct)} %) / {f0(r.sut_cpu_drain_pct)} %, "
        f"{f0(r.cpu_us_per_msg)} µs/msg, {f0(r.ctx_per_msg)} context switches/msg, "
        f"check {check_cell(r)}, "
        f"statuses {r.statuses} [{r.commit}]")
    if r.log_lines:
        log(f"  the server logged {r.log_lines} lines (WARNING and above); --keep keeps it")
    if r.first_error:
        log(f"  first error: {r.first_error}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight(args)
    env = environment(args)
    log(f"mt_bench: duration={args.duration}s connections={args.connections} runs={args.runs} "
        f"open={args.open_rates} kannel={'no' if args.no_kannel else 'yes'} sync={args.sync} "
        f"api_fast_path={'off' if args.no_api_fast_path else 'on'} pinning={env['pinning']} "
        f"python={env['python']} sqlite={env['sqlite']} {env['wrk']}")

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="mt-bench-", dir=args.dir))
    try:
        runs = run_all(args, workdir)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        PROCS.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    for index, rs in enumerate(runs, 1):
        commits = sorted({r.commit for r in rs["results"]})
        print(f"\n### Outbound (MT): {args.duration} s per scenario, wrk -c{args.connections}, "
              f"pinning: {env['pinning']}, commit {', '.join(commits)}"
              + (f" (run {index} of {len(runs)})" if len(runs) > 1 else "") + "\n")
        print(table(rs["results"], rs["kannel"]))
    for rs in runs:
        for r in rs["results"]:
            if r.profile.get("samples"):
                print(f"\n### Where the server's CPU went (run {r.run} {r.scenario}, py-spy, "
                      f"{r.profile['samples']:,} samples, server at {r.sut_cpu_pct:.0f} % of "
                      "a core)\n")
                print("| step (first matching frame on the stack) | share of samples % |")
                print("|---|---:|")
                for label, pct in r.profile["steps"]:
                    print(f"| {label} | {pct} |")
                print("\n| leaf function (self time) | share of samples % |")
                print("|---|---:|")
                for label, pct in r.profile["self"]:
                    print(f"| `{label}` | {pct} |")
    disturbed = [f"run {r.run} {r.scenario} ({r.rest_cpu_pct:.0f} %)" for rs in runs
                 for r in rs["results"] if r.rest_cpu_pct > REST_CPU_WARN]
    if disturbed:
        print(f"\nrest cpu above {REST_CPU_WARN} % in: {', '.join(disturbed)}. Something "
              "besides the server, the load and the fake broker was busy then: compare "
              "those with care.")
    noisy = [f"run {r.run} {r.scenario} ({r.log_lines})" for rs in runs for r in rs["results"]
             if r.log_lines]
    if noisy:
        print(f"\nserver log lines (WARNING and above) in: {', '.join(noisy)}")
    print("\n### Summary\n")
    print(summary_table(runs))
    print("\nTarget (acked rate >= Kannel's delivered rate; p50 < 100 ms at that rate):")
    print(verdict(runs))

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "mt_bench",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv,
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()},
            "environment": env,
            "runs": [{"kannel": rs["kannel"],
                      "results": [asdict(r) | {"verified": r.verified} for r in rs["results"]]}
                     for rs in runs],
        }, indent=2) + "\n", encoding="utf-8")
    ok = all(r.verified for rs in runs for r in rs["results"])
    if not ok:
        print("\nerror: an accepted message was not sent, not delivered, or delivered twice",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
