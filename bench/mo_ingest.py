"""MO ingest: signed Twilio webhooks into ``smshost serve``, beside a bare Starlette app.

One command starts a real ``smshost serve`` (one Twilio broker instance) and, in the
same run, a bare Starlette app that only answers 200, drives each with the same wrk
settings from a separate process on loopback, and reports requests/s and latency. After
each smshost measurement it stops the server (SIGTERM) and checks, in the SQLite file,
that every message wrk saw acknowledged (2xx) is stored, once, with its text.

The requests are generated before any server starts: N unique Twilio inbound-message
webhooks (form bodies as Twilio documents them, a unique MessageSid each, ``Body =
"T<n> ..."``) with a correct ``X-Twilio-Signature``. wrk sends each line once
(``bench/mo_ingest.lua``); smshost echoes the ``X-Request-Id`` (= the MessageSid) of
each request, so the script knows exactly which messages were acknowledged.

Run from the repository root::

    make bench-mo                              # = .venv/bin/python bench/mo_ingest.py
    .venv/bin/python bench/mo_ingest.py --runs 3 --json /tmp/mo-ingest.json

See bench/README.md for the flags and the columns, docs/benchmarks.md for results.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
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
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from common import (PROCS, busy_pct, busy_s, children_cpu_s, cpu_times, git_state, log,
                    pinned, proc_cpu_s, smshost_argv, tail, wait_health, wait_port_free)
from common import bounded as _bounded

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
LUA = HERE / "mo_ingest.lua"
HOST = "127.0.0.1"
MO_PATH = "/twilio/mo"          # the twilio definition's incoming-path
BROKER = "twilio-bench"         # the instance name (messages.broker)
ACCOUNT_SID = "AC" + "b3" * 16  # login of the one account
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"   # its password: the signing key
LOCAL_NUMBER = "+14155550100"   # the account's number (To of every MO)
TARGET_RATIO = 0.5              # the target: MO ingest >= 0.5 x bare
REST_CPU_WARN = 30              # rest cpu % above this: the machine was not quiet

SCENARIOS = {
    "bare": "bare Starlette app: read the body, answer 200",
    "smshost": "smshost serve, Twilio MO, X-Twilio-Signature checked, routing off",
    "smshost-nosig": "smshost serve, Twilio MO, account without auth token (no check), "
                     "routing off",
    "smshost-routed": "smshost serve, Twilio MO, X-Twilio-Signature checked, every message "
                      "routed to a queue",
    "smshost-asgi": "as smshost, with server.webhook_fast_path = false (webhooks through "
                    "the ASGI stack)",
}


# -- the requests ---------------------------------------------------------------------


def sid_tag(prefix: str) -> str:
    """8 hex digits standing for ``prefix`` (itself when it is 8 hex digits already):
    the twilio definition refuses a MessageSid that is not SM + 32 hex digits."""
    if len(prefix) == 8 and all(c in "0123456789abcdef" for c in prefix):
        return prefix
    return hashlib.sha1(prefix.encode()).hexdigest()[:8]


def message_sid(prefix: str, n: int) -> str:
    """A Twilio-shaped MessageSid: SM + 32 hex digits, unique per request."""
    return f"SM{sid_tag(prefix)}{n:024x}"


def message_text(n: int) -> str:
    return f"T{n} hello from the smshost MO ingest benchmark"


def remote_number(n: int) -> str:
    return f"+1415555{n % 10000:04d}"


def twilio_fields(prefix: str, n: int) -> list[tuple[str, str]]:
    """The fields of Twilio's incoming-message webhook, in the order Twilio sends them
    (https://www.twilio.com/docs/messaging/guides/webhook-request)."""
    sid = message_sid(prefix, n)
    return [
        ("ToCountry", "US"), ("ToState", "CA"), ("SmsMessageSid", sid), ("NumMedia", "0"),
        ("ToCity", "SAN FRANCISCO"), ("FromZip", "94105"), ("SmsSid", sid),
        ("FromState", "CA"), ("SmsStatus", "received"), ("FromCity", "SAN FRANCISCO"),
        ("Body", message_text(n)), ("FromCountry", "US"), ("To", LOCAL_NUMBER),
        ("ToZip", "94105"), ("NumSegments", "1"), ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID), ("From", remote_number(n)), ("ApiVersion", "2010-04-01"),
    ]


def twilio_signature(url: str, fields: list[tuple[str, str]], token: str) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each name+value, sorted))."""
    data = url + "".join(k + v for k, v in sorted(fields))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def cross_check(url: str, prefix: str, count: int = 20) -> str:
    """Validate a few generated requests with Twilio's own SDK, when it is installed."""
    try:
        from twilio.request_validator import RequestValidator
    except ImportError:
        return "twilio SDK not installed: signatures not cross-checked"
    validator = RequestValidator(AUTH_TOKEN)
    for n in range(count):
        fields = twilio_fields(prefix, n)
        if not validator.validate(url, dict(fields), twilio_signature(url, fields, AUTH_TOKEN)):
            raise SystemExit(f"error: generated signature {n} fails twilio.RequestValidator")
    return f"{count} signatures cross-checked with twilio.request_validator.RequestValidator"


def write_requests(path: Path, url: str, prefix: str, first: int, count: int) -> int:
    """``count`` signed requests, numbers first..first+count-1, one per line:
    MessageSid TAB X-Twilio-Signature TAB body. fsynced, so their writeback does not
    land in the middle of a measurement. Returns the file size."""
    with path.open("w", encoding="ascii", newline="\n") as out:
        chunk = []
        for n in range(first, first + count):
            fields = twilio_fields(prefix, n)
            chunk.append(f"{message_sid(prefix, n)}\t{twilio_signature(url, fields, AUTH_TOKEN)}"
                         f"\t{urlencode(fields)}\n")
            if len(chunk) >= 10_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))
        out.flush()
        os.fsync(out.fileno())
    return path.stat().st_size


def sid_number(prefix: str, sid: str) -> int | None:
    prefix = sid_tag(prefix)
    if not sid.startswith("SM" + prefix):
        return None
    try:
        return int(sid[2 + len(prefix):], 16)
    except ValueError:
        return None


# -- wrk ------------------------------------------------------------------------------


def run_wrk(args: argparse.Namespace, url: str, infile: Path, outprefix: Path,
            duration: float, conc: int) -> dict[str, Any]:
    """wrk (pinned to the load core) over ``infile``; the acked MessageSids come back
    in ``outprefix.<thread>``. Returns the MOJSON summary plus ``acked`` (a list)."""
    argv = pinned(["wrk", f"-t{args.threads}", f"-c{conc}", f"-d{max(1, round(duration))}s",
                   "--timeout", f"{args.timeout:g}s", "-s", str(LUA), url, "--",
                   f"in={infile}", f"out={outprefix}", f"threads={args.threads}"],
                  args.load_cpu)
    for old in outprefix.parent.glob(outprefix.name + ".*"):
        old.unlink()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                         stdin=subprocess.DEVNULL)
    summary: dict[str, Any] | None = None
    for line in res.stdout.splitlines():
        if line.startswith("MOJSON "):
            summary = json.loads(line[len("MOJSON "):])
    if summary is None or res.returncode != 0:
        raise RuntimeError(f"wrk gave no result (exit {res.returncode}):\n{res.stdout}\n"
                           f"{res.stderr}")
    acked: list[str] = []
    for part in sorted(outprefix.parent.glob(outprefix.name + ".*")):
        acked.extend(part.read_text().split())
    summary["acked"] = acked
    return summary


# -- one measurement ------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    run: int
    commit: str = ""
    rate: float = 0.0              # 2xx answers / load window (req/s)
    window_s: float = 0.0          # wrk's first request to its last answer
    ok2xx: int = 0                 # 2xx answers in the measured window
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    non2xx: int = 0
    socket_errors: int = 0         # connect + read + write + timeout
    first_error: str = ""
    exhausted: bool = False        # the request file ran out before the duration
    warmup_ok: int = 0
    # the SQLite check (smshost only; None for the bare app)
    acked: int | None = None       # warm-up + measured 2xx, by MessageSid
    acked_without_id: int = 0      # 2xx answers without X-Request-Id (cannot be checked)
    stored: int | None = None      # rows of this broker in messages
    missing: int | None = None     # acked, not stored
    duplicates: int | None = None  # MessageSids stored more than once
    wrong_text: int | None = None  # acked and stored, but body or sender differ
    unacked_stored: int | None = None  # stored, never acked (in flight when wrk stopped)
    statuses: dict[str, int] = field(default_factory=dict)  # messages.status at the end
    routed_rate: float | None = None  # routed at the end / (warm-up start -> SIGTERM)
    log_lines: int = 0             # lines the server wrote (WARNING and above)
    sut_cpu_pct: float = 0.0       # the server's user+sys CPU / window (100 = one core)
    wrk_cpu_pct: float = 0.0       # wrk's user+sys CPU / window
    rest_cpu_pct: float = 0.0      # busy CPU of all cores not charged to server or wrk
    core_busy_pct: dict[str, float] = field(default_factory=dict)
    shutdown: dict[str, Any] = field(default_factory=dict)
    wrk: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        if self.acked is None:
            return True
        return (self.missing == 0 and self.duplicates == 0 and self.wrong_text == 0
                and self.acked_without_id == 0)


def smshost_config(directory: Path, port: int, signed: bool, routed: bool, sync: str,
                   fast_path: bool = True) -> Path:
    cfg = directory / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "smshost.toml").write_text(textwrap.dedent(f"""\
        # written by bench/mo_ingest.py
        [server]
        data_dir = "{directory / 'data'}"
        public_url = "http://{HOST}:{port}"
        shutdown_timeout = 10
        webhook_fast_path = {str(fast_path).lower()}

        [[listeners]]
        name = "bench"
        host = "{HOST}"
        port = {port}
        api = true

        [api]
        token = "mo-ingest-bench"

        [store]
        synchronous = "{sync}"

        [purge]
        enabled = false

        [logging]
        level = "WARNING"

        [plugins]
        dirs = []
        entry_points = false
        """), encoding="utf-8")
    password = f'password = "{AUTH_TOKEN}"\n' if signed else ""
    (cfg / "brokers.toml").write_text(textwrap.dedent(f"""\
        # written by bench/mo_ingest.py; MT is never used (discard port)
        [[brokers]]
        name = "{BROKER}"
        definition = "twilio"
        encryption = "http"

        [brokers.mt]
        gateway = "http://{HOST}:9"

        [[brokers.accounts]]
        id = "main"
        login = "{ACCOUNT_SID}"
        local_address = "{LOCAL_NUMBER}"
        """) + password, encoding="utf-8")
    if routed:
        # one default route: every MO becomes an interaction in one workgroup queue
        (cfg / "routes.toml").write_text(textwrap.dedent("""\
            # written by bench/mo_ingest.py
            [[inbound]]
            name = "default"
            destination = "queue"
            target = "bench"
            default = true
            """), encoding="utf-8")
        (cfg / "sinks.toml").write_text(textwrap.dedent("""\
            # written by bench/mo_ingest.py
            [[queue.queues]]
            name = "bench"
            kind = "workgroup"
            members = ["agent"]
            """), encoding="utf-8")
    else:
        # stored only: webhook -> committed message, nothing after it
        (cfg / "routes.toml").write_text(
            "# written by bench/mo_ingest.py\n[routing]\nenabled = false\n", encoding="utf-8")
    return cfg


def check_store(db: Path, acked: list[str], prefix: str, result: Result) -> None:
    """Every acked MessageSid stored exactly once, with its text and sender."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "select broker_message_id, body, remote from messages "
            "where broker = ? and direction = 'in'", (BROKER,)).fetchall()
        result.statuses = dict(conn.execute(
            "select status, count(*) from messages where broker = ? and direction = 'in' "
            "group by status", (BROKER,)).fetchall())
    finally:
        conn.close()
    counts = Counter(r[0] for r in rows)
    stored = {r[0]: (r[1], r[2]) for r in rows}
    acked_set = set(acked)
    result.acked = len(acked_set)
    result.stored = len(rows)
    result.duplicates = sum(c - 1 for c in counts.values() if c > 1) + (len(acked) - len(acked_set))
    result.missing = sum(1 for sid in acked_set if sid not in stored)
    wrong = 0
    for sid in acked_set:
        row = stored.get(sid)
        n = sid_number(prefix, sid)
        if row is not None and (n is None or row != (message_text(n), remote_number(n))):
            wrong += 1
    result.wrong_text = wrong
    result.unacked_stored = sum(1 for sid in stored if sid not in acked_set)


def bare_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(HERE),
            "--host", HOST, "--port", str(port), "--workers", "1", "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning"]


def measure(scenario: str, run: int, args: argparse.Namespace, files: dict[str, Path],
            prefix: str, workdir: Path) -> Result:
    result = Result(scenario, run)
    is_smshost = scenario.startswith("smshost")
    port = args.port if is_smshost else args.bare_port
    rundir = workdir / f"run{run}-{scenario}"
    rundir.mkdir()
    logfile = rundir / "server.log"
    wait_port_free(port)
    if is_smshost:
        cfg = smshost_config(rundir, port, signed=scenario != "smshost-nosig",
                             routed=scenario == "smshost-routed", sync=args.sync,
                             fast_path=scenario != "smshost-asgi")
        data = rundir / "data"
        argv = smshost_argv(cfg, data)
    else:
        argv = bare_argv(port)
    result.commit = git_state()
    proc = PROCS.start(pinned(argv, args.sut_cpu), logfile)
    try:
        result.health = wait_health(port, proc, logfile, args.start_timeout)
        if result.health.get("status") not in (None, "ok"):
            log(f"  /health says {result.health.get('status')}: "
                f"{json.dumps(result.health.get('plugins', {}))[:300]}")
        url = f"http://{HOST}:{port}{MO_PATH}"
        acked: list[str] = []
        t_start = time.monotonic()
        if args.warmup_requests:
            w = run_wrk(args, url, files["warmup"], rundir / "acked-warmup",
                        args.warmup_seconds, args.connections)
            result.warmup_ok = w["ok2xx"] + w["ok_noid"]
            acked.extend(w["acked"])
            if w["non2xx"] or w["ok2xx"] + w["ok_noid"] == 0:
                raise RuntimeError(f"warm-up failed: {w['ok2xx']} acked, {w['non2xx']} "
                                   f"refused, first: {w['first_error']!r}\n{tail(logfile)}")
        cpu0, proc0, kids0, t0 = (cpu_times(), proc_cpu_s(proc.pid), children_cpu_s(),
                                  time.monotonic())
        w = run_wrk(args, url, files["load"], rundir / "acked", args.duration,
                    args.connections)
        cpu1, proc1, kids1, t1 = (cpu_times(), proc_cpu_s(proc.pid), children_cpu_s(),
                                  time.monotonic())
        acked.extend(w["acked"])
        window = max(1e-6, (w["t_last_us"] - w["t_first_us"]) / 1e6)
        ok = w["ok2xx"] + w["ok_noid"]
        result.ok2xx = ok
        result.window_s = round(window, 3)
        result.rate = ok / window
        result.p50_ms = w["lat_p50_us"] / 1000
        result.p90_ms = w["lat_p90_us"] / 1000
        result.p99_ms = w["lat_p99_us"] / 1000
        result.max_ms = w["lat_max_us"] / 1000
        result.non2xx = w["non2xx"]
        result.socket_errors = (w["err_connect"] + w["err_read"] + w["err_write"]
                                + w["err_timeout"])
        result.first_error = w["first_error"]
        result.exhausted = w["exhausted_threads"] > 0
        wall = max(1e-6, t1 - t0)
        result.sut_cpu_pct = round(100.0 * (proc1 - proc0) / wall, 1)
        result.wrk_cpu_pct = round(100.0 * (kids1 - kids0) / wall, 1)
        result.rest_cpu_pct = round(100.0 * (busy_s(cpu0, cpu1) - (proc1 - proc0)
                                             - (kids1 - kids0)) / wall, 1)
        result.core_busy_pct = busy_pct(cpu0, cpu1)
        result.wrk = {k: v for k, v in w.items() if k != "acked"}
        if is_smshost:
            result.acked_without_id = w["ok_noid"]
    finally:
        t_stop = time.monotonic()
        result.shutdown = PROCS.stop(proc, args.stop_timeout)
        try:
            with logfile.open("rb") as f:
                result.log_lines = sum(1 for _ in f)
        except OSError:
            pass
    if is_smshost:
        check_store(data / "smshost.db", acked, prefix, result)
        if scenario == "smshost-routed":
            result.routed_rate = result.statuses.get("routed", 0) / max(1e-6, t_stop - t_start)
    if not args.keep:
        shutil.rmtree(rundir, ignore_errors=True)
    return result


# -- report ---------------------------------------------------------------------------


def fmt_int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def table(results: list[Result]) -> str:
    bare = next((r.rate for r in results if r.scenario == "bare" and r.rate), None)
    lines = [
        "| scenario | req/s | p50 ms | p99 ms | errors | acked | stored | missing "
        "| vs bare | server cpu % | wrk cpu % | rest cpu % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = "-" if r.scenario == "bare" or not bare else f"{r.rate / bare:.2f}"
        missing = fmt_int(r.missing)
        if r.missing:
            missing = f"**{missing}**"
        problems = []
        if r.duplicates:
            problems.append(f"{r.duplicates} duplicated")
        if r.wrong_text:
            problems.append(f"{r.wrong_text} wrong text")
        if r.acked_without_id:
            problems.append(f"{r.acked_without_id} acks without id")
        if problems:
            missing += " (**" + ", ".join(problems) + "**)"
        errors = r.non2xx + r.socket_errors
        rate = f"{r.rate:,.0f}" + (" (list ran out)" if r.exhausted else "")
        lines.append(
            f"| {r.scenario} | {rate} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {errors:,} "
            f"| {fmt_int(r.acked)} | {fmt_int(r.stored)} | {missing} | {ratio} "
            f"| {r.sut_cpu_pct:.0f} | {r.wrk_cpu_pct:.0f} | {max(0.0, r.rest_cpu_pct):.0f} |")
    return "\n".join(lines)


def summary_table(runs: list[list[Result]]) -> str:
    order = [s for s in SCENARIOS if any(r.scenario == s for rs in runs for r in rs)]
    lines = ["| run | commit | " + " | ".join(f"{s} req/s" for s in order)
             + " | " + " | ".join(f"{s} p99 ms" for s in order) + " | "
             + " | ".join(f"{s} / bare" for s in order if s != "bare") + " |"]
    lines.append("|---|---|" + "---:|" * (2 * len(order) + len(order) - ("bare" in order)))
    for index, results in enumerate(runs, 1):
        by = {r.scenario: r for r in results}
        bare = by.get("bare")
        commits = sorted({r.commit for r in results if r.scenario != "bare"})
        cells = [f"{by[s].rate:,.0f}" if s in by else "-" for s in order]
        cells += [f"{by[s].p99_ms:.2f}" if s in by else "-" for s in order]
        cells += [f"{by[s].rate / bare.rate:.2f}" if s in by and bare and bare.rate else "-"
                  for s in order if s != "bare"]
        lines.append(f"| {index} | {', '.join(commits) or '-'} | " + " | ".join(cells) + " |")
    if len(runs) > 1:
        cells = []
        for s in order:
            rates = [r.rate for rs in runs for r in rs if r.scenario == s]
            cells.append(f"{statistics.median(rates):,.0f}" if rates else "-")
        for s in order:
            p99 = [r.p99_ms for rs in runs for r in rs if r.scenario == s]
            cells.append(f"{statistics.median(p99):.2f}" if p99 else "-")
        for s in order:
            if s == "bare":
                continue
            ratios = [by[s].rate / by["bare"].rate for by in
                      ({r.scenario: r for r in rs} for rs in runs)
                      if s in by and "bare" in by and by["bare"].rate]
            cells.append(f"{statistics.median(ratios):.2f}" if ratios else "-")
        lines.append("| median | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
            return str(__import__(module).__version__)
        except (ImportError, AttributeError):
            return None

    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[0].split(" [")[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        wrk = "?"
    return {
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "uvloop": version("uvloop"), "uvicorn": version("uvicorn"),
        "starlette": version("starlette"), "httptools": version("httptools"), "wrk": wrk,
        "cpu_count": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
        "pinning": (f"server on cpu {args.sut_cpu}, wrk on cpu {args.load_cpu}"
                    if args.sut_cpu is not None else "none"),
    }


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="MO ingest: signed Twilio webhooks into smshost serve, beside a bare "
        "Starlette app, measured with wrk; every acknowledged message checked in SQLite.")
    parser.add_argument("--duration", type=_bounded(1, 300, int), default=10,
                        help="measured seconds of load per scenario (default 10)")
    parser.add_argument("--connections", type=_bounded(1, 1024, int), default=32,
                        help="wrk connections, i.e. requests in flight (default 32)")
    parser.add_argument("--threads", type=_bounded(1, 16, int), default=1,
                        help="wrk threads (default 1)")
    parser.add_argument("--runs", type=_bounded(1, 20, int), default=1,
                        help="repeat every scenario (default 1); one table per run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, in this order: {', '.join(SCENARIOS)} "
                        "(default all)")
    parser.add_argument("--max-rate", type=_bounded(100, 1_000_000, int), default=25_000,
                        help="requests generated per second of --duration: the ceiling "
                        "before the list runs out (default 25000)")
    parser.add_argument("--warmup-requests", type=_bounded(0, 100_000, int), default=2000,
                        help="un-measured requests before each measurement (default 2000; "
                        "acknowledged ones are checked in SQLite too)")
    parser.add_argument("--warmup-seconds", type=_bounded(1, 60, int), default=5,
                        help="time bound of the warm-up (default 5)")
    parser.add_argument("--sync", type=str.upper, choices=["FULL", "NORMAL"], default="FULL",
                        help="smshost store.synchronous (default FULL, the shipped default)")
    parser.add_argument("--port", type=_bounded(1024, 65535, int), default=23100,
                        help="smshost's listener (default 23100)")
    parser.add_argument("--bare-port", type=_bounded(1024, 65535, int), default=23101,
                        help="the bare app's port (default 23101)")
    parser.add_argument("--sut-cpu", default="0",
                        help="CPU list for the server under test, via taskset (default 0)")
    parser.add_argument("--load-cpu", default="1",
                        help="CPU list for wrk, via taskset (default 1)")
    parser.add_argument("--no-pin", action="store_true",
                        help="no taskset: server and wrk share every core")
    parser.add_argument("--timeout", type=_bounded(1, 60), default=10.0,
                        help="wrk's per-request timeout in seconds (default 10)")
    parser.add_argument("--start-timeout", type=_bounded(1, 300), default=30.0,
                        help="seconds to wait for /health after a start (default 30)")
    parser.add_argument("--stop-timeout", type=_bounded(1, 300), default=30.0,
                        help="seconds to wait after SIGTERM before SIGKILL (default 30)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the scratch directory (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch directory (configs, logs, databases, requests)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write every figure and the environment as JSON")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or not args.scenarios:
        parser.error(f"--scenarios: unknown {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.port == args.bare_port:
        parser.error("--port and --bare-port must differ")
    if args.no_pin:
        args.sut_cpu = args.load_cpu = None
    return args


def preflight(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed (Debian: apt-get install wrk; "
                         "`make bench-mo` installs it when run as root)")
    if args.sut_cpu is not None:
        if shutil.which("taskset") is None:
            raise SystemExit("error: taskset not found (util-linux); or pass --no-pin")
        try:
            allowed = os.sched_getaffinity(0)
        except AttributeError:
            allowed = set(range(os.cpu_count() or 1))
        if len(allowed) < 2:
            log("only one CPU available: running unpinned (--no-pin)")
            args.sut_cpu = args.load_cpu = None


def run_all(args: argparse.Namespace, workdir: Path) -> tuple[list[list[Result]], dict[str, Any]]:
    prefix = os.urandom(4).hex()
    url = f"http://{HOST}:{args.port}{MO_PATH}"
    files = {"warmup": workdir / "requests-warmup.tsv", "load": workdir / "requests-load.tsv"}
    n_load = args.max_rate * args.duration
    started = time.monotonic()
    size = write_requests(files["warmup"], url, prefix, 0, max(1, args.warmup_requests))
    size += write_requests(files["load"], url, prefix, 1_000_000_000, n_load)
    gen = {"warmup_requests": args.warmup_requests, "load_requests": n_load,
           "bytes": size, "seconds": round(time.monotonic() - started, 2),
           "sid_prefix": "SM" + prefix, "signed_url": url,
           "cross_check": cross_check(url, prefix)}
    log(f"generated {args.warmup_requests} + {n_load:,} signed requests "
        f"({size / 1e6:.0f} MB) in {gen['seconds']} s; {gen['cross_check']}")
    runs: list[list[Result]] = []
    for run in range(1, args.runs + 1):
        results = []
        for scenario in args.scenarios:
            log(f"run {run}: {scenario}: {SCENARIOS[scenario]}")
            r = measure(scenario, run, args, files, prefix, workdir)
            check = ("" if r.acked is None else
                     f", acked {r.acked} stored {r.stored} missing {r.missing}"
                     f" duplicated {r.duplicates} wrong text {r.wrong_text}"
                     f" statuses {r.statuses}")
            log(f"run {run}: {scenario}: {r.rate:,.0f} req/s, p99 {r.p99_ms:.2f} ms, "
                f"errors {r.non2xx + r.socket_errors}{check} [{r.commit}]")
            if r.log_lines:
                log(f"  the server logged {r.log_lines} lines (WARNING and above); "
                    "--keep keeps its log")
            if r.non2xx:
                log(f"  first refusal: {r.first_error}")
            results.append(r)
        runs.append(results)
    return runs, gen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight(args)
    env = environment(args)
    log(f"mo_ingest: duration={args.duration}s connections={args.connections} "
        f"threads={args.threads} runs={args.runs} sync={args.sync} pinning={env['pinning']} "
        f"cpus={env['cpu_count']} python={env['python']} sqlite={env['sqlite']} "
        f"{env['wrk']}")

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="mo-ingest-", dir=args.dir))
    try:
        runs, gen = run_all(args, workdir)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        PROCS.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    for index, results in enumerate(runs, 1):
        commits = sorted({r.commit for r in results if r.scenario != "bare"})
        print(f"\n### MO ingest: {args.duration} s, {args.connections} connections, "
              f"wrk -t{args.threads}, pinning: {env['pinning']}, "
              f"commit {', '.join(commits) or '-'}"
              + (f" (run {index} of {len(runs)})" if len(runs) > 1 else "") + "\n")
        print(table(results))
    for r in (r for rs in runs for r in rs if r.routed_rate is not None):
        print(f"\nrun {r.run} {r.scenario}: {r.statuses.get('routed', 0):,} of {r.stored:,} "
              f"stored messages routed when the server stopped (~{r.routed_rate:,.0f}/s from "
              f"warm-up start to SIGTERM); statuses {r.statuses}")
    noisy = [f"run {r.run} {r.scenario} ({r.log_lines})" for rs in runs for r in rs
             if r.log_lines]
    if noisy:
        print(f"\nserver log lines (WARNING and above) in: {', '.join(noisy)}")
    disturbed = [f"run {r.run} {r.scenario} ({r.rest_cpu_pct:.0f} %)" for rs in runs for r in rs
                 if r.rest_cpu_pct > REST_CPU_WARN]
    if disturbed:
        print(f"\nrest cpu above {REST_CPU_WARN} % in: {', '.join(disturbed)}. Something besides "
              "the server and wrk was busy then (another process?): compare those with care.")
    print("\n### Summary\n")
    print(summary_table(runs))
    ratios = [r.rate / by["bare"].rate for rs in runs
              for by in [{x.scenario: x for x in rs}] for r in rs
              if r.scenario == "smshost" and "bare" in by and by["bare"].rate]
    if ratios:
        met = all(x >= TARGET_RATIO for x in ratios)
        intact = all(r.verified for rs in runs for r in rs)
        print(f"\nTarget (smshost >= {TARGET_RATIO} x bare, nothing acknowledged missing): "
              f"ratio {', '.join(f'{x:.2f}' for x in ratios)}: "
              f"{'met' if met else 'NOT met'}; "
              f"{'nothing missing' if intact else 'ROWS MISSING'}")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "mo_ingest",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv,
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()},
            "environment": env,
            "requests": gen,
            "runs": [[asdict(r) | {"verified": r.verified} for r in rs] for rs in runs],
        }, indent=2) + "\n", encoding="utf-8")
    ok = all(r.verified for rs in runs for r in rs)
    if not ok:
        print("\nerror: acknowledged messages missing, duplicated or wrong in SQLite",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
