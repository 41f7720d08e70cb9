"""Helpers shared by the benchmarks that start ``smshost serve`` (``mo_ingest.py``,
``mt_bench.py``): processes stopped by PID, ports, /health, CPU accounting from /proc,
the git state of the code under test, bounded argparse values.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
# The team's shared harness: ../shared/bench beside the project (a checkout, a worktree
# or CI's clone all have shared/ beside them); HARNESS names another run.sh.
HARNESS = Path(os.environ.get("HARNESS") or ROOT.parent / "shared" / "bench" / "run.sh")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- processes ------------------------------------------------------------------------


class Procs:
    """Everything started is tracked and stopped by its PID, even on failure."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], logfile: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with logfile.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd or ROOT,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float) -> dict[str, Any]:
        """SIGTERM, wait up to ``grace`` s, then SIGKILL. Returns how it ended."""
        started = time.monotonic()
        killed = False
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"pid {proc.pid} still running {grace:g} s after SIGTERM: SIGKILL")
                killed = True
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if proc in self.live:
            self.live.remove(proc)
        return {"returncode": proc.returncode, "killed": killed,
                "stop_s": round(time.monotonic() - started, 3)}

    def stop_all(self) -> None:
        for proc in reversed(list(self.live)):
            self.stop(proc, 5.0)


PROCS = Procs()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def wait_port_free(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while port_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} on {HOST} is in use (another server?): "
                               "stop it or pick other ports with --port")
        time.sleep(0.1)


def wait_health(port: int, proc: subprocess.Popen[bytes], logfile: Path,
                timeout: float) -> dict[str, Any]:
    """Poll GET /health until it answers 200 (bounded)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it answered "
                               f"/health:\n{tail(logfile)}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return dict(json.loads(resp.read() or b"{}"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"no 200 from /health on port {port} within {timeout:g} s "
                       f"({last}):\n{tail(logfile)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def pinned(argv: list[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


# -- CPU accounting -------------------------------------------------------------------


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per-core (busy, total) jiffies from /proc/stat."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and not line.startswith("cpu "):
                    parts = line.split()
                    vals = [int(v) for v in parts[1:9]]
                    idle = vals[3] + vals[4]
                    out[parts[0][3:]] = (sum(vals) - idle, sum(vals))
    except OSError:
        pass
    return out


def proc_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


CpuTimes = dict[str, tuple[int, int]]


def busy_pct(before: CpuTimes, after: CpuTimes) -> dict[str, float]:
    return {core: round(100.0 * (after[core][0] - before[core][0])
                        / max(1, after[core][1] - before[core][1]), 1)
            for core in after if core in before}


def busy_s(before: CpuTimes, after: CpuTimes) -> float:
    """Busy CPU seconds of all cores together between two cpu_times()."""
    return sum(after[c][0] - before[c][0] for c in after if c in before) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the code under test ----------------------------------------------------------------


def git_state() -> str:
    """Short commit, plus "+dirty(<digest>)" when host/ or plugins/ differ from it."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("log", "-1", "--format=%h") or "unknown"
    if git("status", "--porcelain", "--", "host", "plugins"):
        digest = hashlib.sha256()
        for path in sorted([*ROOT.glob("host/**/*.py"), *ROOT.glob("plugins/**/*")]):
            if path.is_file():
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        commit += f"+dirty({digest.hexdigest()[:10]})"
    return commit


def smshost_argv(cfg: Path, data: Path) -> list[str]:
    script = Path(sys.executable).parent / "smshost"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "host"]
    return [*base, "serve", "--config", str(cfg), "--data", str(data)]


# -- arguments ------------------------------------------------------------------------


def bounded(low: float, high: float, kind: type = float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value
    return parse
