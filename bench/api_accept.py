#!/usr/bin/env python3
"""The send API's accept alone: POST /api/messages into ``smshost serve`` with the outbox
off (``outbox.enabled = false``: nothing is sent, so the server's CPU is the API's and the
accept write's), with ``server.api_fast_path`` on and off alternating in one invocation.

For each run: accepted/s (wrk, closed loop, bench/mt_send.lua), p50, and the server's
CPU per accepted message (user + system, from /proc). The MT end to end figure with the
sender is bench/mt_bench.py's (``--no-api-fast-path`` there too).

``--refused``: every request is refused 400 after its token, parse and schema check
(``{"text": ...}`` without ``to``): the web layer alone, without the send's write.

    .venv/bin/python bench/api_accept.py --port 25100 --rounds 2 --duration 8
    .venv/bin/python bench/api_accept.py --port 25100 --rounds 2 --refused
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import HOST, PROCS, bounded, git_state, log, pinned, proc_cpu_s, smshost_argv, \
    tail, wait_health, wait_port_free
from mt_bench import API_TOKEN, run_wrk, smshost_config

REFUSED_LUA = f"""wrk.method = "POST"
wrk.body = '{{"text": "no recipient"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {API_TOKEN}"
"""


def run_refused(args: argparse.Namespace, url: str, lua: Path, duration: float) -> int:
    """wrk with ``REFUSED_LUA`` for ``duration`` s; the requests answered (all 400)."""
    argv = pinned(["wrk", f"-t{args.threads}", f"-c{args.connections}",
                   f"-d{max(1, round(duration))}s", "-s", str(lua), url], args.load_cpu)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                         stdin=subprocess.DEVNULL, check=True)
    lines = res.stdout.splitlines()
    answered = int(next(line for line in lines if "requests in" in line).split()[0])
    refused = next((line for line in lines if "Non-2xx" in line), "")
    if not refused or int(refused.split()[-1]) != answered:
        raise RuntimeError(f"not every request was refused:\n{res.stdout}")
    return answered


def config(directory: Path, port: int, fast: bool) -> Path:
    """mt_bench's server configuration, with the outbox off."""
    cfg = smshost_config(directory, port, port + 1, "FULL", 64, fast)
    path = cfg / "smshost.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("[outbox]\n", "[outbox]\nenabled = false\n", 1),
                    encoding="utf-8")
    return cfg


def measure(args: argparse.Namespace, workdir: Path, name: str, fast: bool) -> dict[str, Any]:
    rundir = workdir / name
    rundir.mkdir()
    logfile = rundir / "server.log"
    wait_port_free(args.port)
    cfg = config(rundir, args.port, fast)
    sut = None if args.no_pin else args.sut_cpu
    proc = PROCS.start(pinned(smshost_argv(cfg, rundir / "data"), sut), logfile)
    url = f"http://{HOST}:{args.port}/api/messages"
    try:
        wait_health(args.port, proc, logfile, 30.0)
        if args.refused:
            return _refused(args, rundir, url, name, fast, proc.pid)
        warm = run_wrk(args, url, rundir / "warm", 2, f"{name}-warm", args.warmup_requests)
        if warm["non201"] or not warm["acked"]:
            raise RuntimeError(f"warm-up failed: {warm['first_error']!r}\n{tail(logfile)}")
        cpu0 = proc_cpu_s(proc.pid)
        load = run_wrk(args, url, rundir / "acked", args.duration, name)
        cpu1 = proc_cpu_s(proc.pid)
    finally:
        PROCS.stop(proc, 30.0)
    accepted = len(load["acked"])
    window = max(1e-6, (load["t_last_us"] - load["t_first_us"]) / 1e6)
    return {"run": name, "fast": fast, "accepted": accepted, "rate": accepted / window,
            "p50_ms": load["lat_p50_us"] / 1000, "refused": load["non201"],
            "cpu_us_per_msg": 1e6 * (cpu1 - cpu0) / max(1, accepted)}


def _refused(args: argparse.Namespace, rundir: Path, url: str, name: str, fast: bool,
             pid: int) -> dict[str, Any]:
    lua = rundir / "refused.lua"
    lua.write_text(REFUSED_LUA, encoding="utf-8")
    run_refused(args, url, lua, 2)  # warm-up
    cpu0 = proc_cpu_s(pid)
    answered = run_refused(args, url, lua, args.duration)
    cpu1 = proc_cpu_s(pid)
    return {"run": name, "fast": fast, "accepted": answered,
            "rate": answered / max(1, round(args.duration)), "p50_ms": 0.0, "refused": 0,
            "cpu_us_per_msg": 1e6 * (cpu1 - cpu0) / max(1, answered)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=bounded(1024, 65534, int), default=23100)
    parser.add_argument("--rounds", type=bounded(1, 10, int), default=2,
                        help="on/off pairs, alternating (default 2)")
    parser.add_argument("--duration", type=bounded(1, 120), default=8.0)
    parser.add_argument("--connections", type=bounded(1, 1024, int), default=32)
    parser.add_argument("--threads", type=bounded(1, 16, int), default=1)
    parser.add_argument("--timeout", type=bounded(1, 60), default=10.0)
    parser.add_argument("--recipients", type=bounded(1, 10000, int), default=1000)
    parser.add_argument("--warmup-requests", type=bounded(0, 100000, int), default=1000)
    parser.add_argument("--sut-cpu", default="0")
    parser.add_argument("--load-cpu", default="1")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--refused", action="store_true",
                        help="every request refused 400 (the web layer alone; rates are "
                        "answers/s, p50 not measured)")
    args = parser.parse_args(argv)
    if args.no_pin:
        args.load_cpu = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="api-accept-"))
    log(f"api_accept: commit {git_state()} duration={args.duration}s "
        f"connections={args.connections}")
    results = []
    try:
        for n in range(args.rounds):
            for fast in (True, False):
                name = f"r{n + 1}-{'fast' if fast else 'asgi'}"
                results.append(measure(args, workdir, name, fast))
                r = results[-1]
                log(f"{name}: {r['rate']:.0f} accepted/s, p50 {r['p50_ms']:.1f} ms, "
                    f"server cpu {r['cpu_us_per_msg']:.0f} us/msg, refused {r['refused']}")
    finally:
        PROCS.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print("| run | api_fast_path | accepted/s | p50 ms | server cpu µs/msg |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['run']} | {'on' if r['fast'] else 'off'} | {r['rate']:.0f} | "
              f"{r['p50_ms']:.1f} | {r['cpu_us_per_msg']:.0f} |")
    return 0 if all(r["refused"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
