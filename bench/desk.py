"""The agent desk under load (issue 14): N agents in one workgroup, M texters sending one
SMS each, on one node.

A real ``smshost serve`` on 127.0.0.1 (pinned to ``--sut-cpu``) with the simulator broker,
a default route to the workgroup ``bench`` and the queue sink. Before the load, through the
API with the admin token: the agents (users with the agent role), the workgroup with all of
them, each agent ``available`` (``PUT /api/agents/{login}/status``). Then the texters each
send one SMS through ``POST /api/simulator/mo`` (the simulator broker's MO handling), with
bounded concurrency, from this process (pinned to ``--load-cpu``). In the ``accept``
scenario every agent also accepts each offer it gets, with its own token
(``POST /api/interactions/{id}/accept``), as soon as the harness sees it in SQLite.

When every interaction is offered (and accepted), the server is stopped and its SQLite file
read: assignments per second, the time from the MO stored (``messages.created_at``) to its
offer (``queue_offers.offered_at``), and the checks: every MO one interaction, every
interaction offered exactly once, to a member, no agent over its capacity, none waiting.
Exit status 0, 1 when a check fails, 2 when the server or the load failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (HOST, PROCS, bounded, git_state, log, pinned,  # noqa: E402
                    proc_cpu_s, smshost_argv, tail, wait_health, wait_port_free)
from desk_checks import analyse, logins, pctl  # noqa: E402

TOKEN = "desk-bench-token"
QUEUE = "bench"
OUR_NUMBER = "+15550100"


def write_config(directory: Path, args: argparse.Namespace) -> Path:
    cfg = directory / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "smshost.toml").write_text(textwrap.dedent(f"""\
        # written by bench/desk.py
        [server]
        data_dir = "{directory / 'data'}"
        public_url = "http://{HOST}:{args.port}"
        shutdown_timeout = 10

        [[listeners]]
        name = "bench"
        host = "{HOST}"
        port = {args.port}
        api = true

        [api]
        token = "{TOKEN}"

        [purge]
        enabled = false

        [logging]
        level = "WARNING"

        [plugins]
        dirs = []
        entry_points = false
        """), encoding="utf-8")
    (cfg / "brokers.toml").write_text(textwrap.dedent(f"""\
        [[brokers]]
        name = "simulator"
        definition = "simulator"
        encryption = "http"
        [[brokers.accounts]]
        id = "default"
        local_address = "{OUR_NUMBER}"
        """), encoding="utf-8")
    (cfg / "routes.toml").write_text(textwrap.dedent(f"""\
        [[inbound]]
        name = "default"
        destination = "queue"
        target = "{QUEUE}"
        default = true
        """), encoding="utf-8")
    # offers never time out during a run: each interaction is offered once, so the
    # check "offered exactly once" holds only if the ACD never offers twice
    (cfg / "sinks.toml").write_text(textwrap.dedent(f"""\
        [queue]
        capacity = {args.capacity}
        offer_timeout = 3600
        wrapup = 0
        sticky_seconds = 0
        """), encoding="utf-8")
    return cfg


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None,
               token: str = TOKEN, ok: tuple[int, ...] = (200, 201)) -> Any:
    async with http.request(method, path, json=body,
                            headers={"Authorization": f"Bearer {token}"}) as answer:
        text = await answer.text()
        if answer.status not in ok:
            raise RuntimeError(f"{method} {path}: {answer.status} {text[:300]}")
        return json.loads(text) if text else None


async def bounded_all(jobs: list[Any], concurrency: int) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> Any:
        async with gate:
            return await job
    return await asyncio.gather(*(one(j) for j in jobs))


async def prepare(http: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, str]:
    """Agents, the workgroup, statuses; each agent's token (accept scenario)."""
    agents = logins(args.agents)
    # a request lists at most 100 members: the workgroup first, each user joins it
    await call(http, "POST", "/api/workgroups", {"name": QUEUE})
    await bounded_all([call(http, "POST", "/api/users",
                            {"login": a, "roles": ["agent"], "workgroups": [QUEUE]})
                       for a in agents], 16)
    tokens: dict[str, str] = {}
    if args.scenario == "accept":
        made = await bounded_all([call(http, "POST", "/api/tokens",
                                       {"user": a, "scopes": ["send"]}) for a in agents], 16)
        tokens = {a: m["token"] for a, m in zip(agents, made, strict=True)}
    await bounded_all([call(http, "PUT", f"/api/agents/{a}/status", {"status": "available"})
                       for a in agents], 16)
    return tokens


async def text_all(http: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    """Each texter sends one SMS; latencies of the API answers."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one(n: int) -> None:
        started = time.monotonic()
        try:
            await call(http, "POST", "/api/simulator/mo",
                       {"from": f"+1408{n:07d}", "to": OUR_NUMBER, "text": f"texter {n} hello"},
                       ok=(201,))
            latencies.append(time.monotonic() - started)
        except (TimeoutError, RuntimeError, aiohttp.ClientError) as exc:
            errors.append(str(exc)[:200])
    started = time.monotonic()
    await bounded_all([one(n) for n in range(args.texters)], args.concurrency)
    return {"seconds": time.monotonic() - started, "latencies": latencies, "errors": errors}


async def accepter(http: aiohttp.ClientSession, db: Path, tokens: dict[str, str],
                   stop: asyncio.Event, done: list[float]) -> None:
    """Each agent accepts each offer it gets, as soon as it is in SQLite (polled every
    20 ms); the accepts run beside the polling, at most 32 in flight."""
    seen: set[int] = set()
    gate = asyncio.Semaphore(32)
    running: set[asyncio.Task[None]] = set()

    async def accept(interaction: int, agent: str) -> None:
        async with gate:
            started = time.monotonic()
            await call(http, "POST", f"/api/interactions/{interaction}/accept", {},
                       token=tokens[agent.lower()])
            done.append(time.monotonic() - started)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        while not stop.is_set():
            try:
                pending = conn.execute("select interaction_id, agent from queue_offers "
                                       "where outcome = 'pending'").fetchall()
            except sqlite3.OperationalError:
                pending = []  # the table is made at startup; retry
            for interaction, agent in pending:
                if interaction not in seen:
                    seen.add(interaction)
                    task = asyncio.create_task(accept(interaction, agent))
                    running.add(task)
                    task.add_done_callback(running.discard)
            await asyncio.sleep(0.02)
        await asyncio.gather(*running)
    finally:
        conn.close()


def progress(db: Path) -> tuple[int, int, int]:
    """(interactions, waiting, offered but not accepted)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        made, waiting, offered = conn.execute(
            "select count(*), coalesce(sum(state = 'waiting'), 0), "
            "coalesce(sum(state = 'offered'), 0) from queue_interactions").fetchone()
        return int(made), int(waiting), int(offered)
    except sqlite3.OperationalError:
        return (0, 0, 0)
    finally:
        conn.close()


async def settle(db: Path, args: argparse.Namespace) -> float:
    """Wait until every interaction exists and is offered (accepted); bounded."""
    started = time.monotonic()
    while time.monotonic() - started < args.drain_timeout:
        made, waiting, offered = progress(db)
        if made >= args.texters and waiting == 0 and (
                args.scenario == "offer" or offered == 0):
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def drive(args: argparse.Namespace, db: Path) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(limit=args.concurrency + 40)
    async with aiohttp.ClientSession(f"http://{HOST}:{args.port}", timeout=timeout,
                                     connector=connector) as http:
        tokens = await prepare(http, args)
        stop = asyncio.Event()
        accepts: list[float] = []
        task = (asyncio.create_task(accepter(http, db, tokens, stop, accepts))
                if args.scenario == "accept" else None)
        load = await text_all(http, args)
        load["settle_s"] = await settle(db, args)
        stop.set()
        if task is not None:
            await task
        load["accept_latencies"] = accepts
        return load


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    directory = workdir / args.scenario
    cfg = write_config(directory, args)
    data = directory / "data"
    logfile = directory / "server.log"
    wait_port_free(args.port)
    server = PROCS.start(pinned(smshost_argv(cfg, data), args.sut_cpu), logfile)
    try:
        wait_health(args.port, server, logfile, args.start_timeout)
        cpu0 = proc_cpu_s(server.pid)
        load = asyncio.run(drive(args, data / "smshost.db"))
        cpu = proc_cpu_s(server.pid) - cpu0
    finally:
        stopped = PROCS.stop(server, args.stop_timeout)
    result = analyse(data / "smshost.db", args)
    lat = load.pop("latencies")
    result.update(scenario=args.scenario, load_s=load["seconds"], settle_s=load["settle_s"],
                  mo_per_s=len(lat) / load["seconds"] if load["seconds"] else None,
                  mo_api_ms={p: (v * 1000 if (v := pctl(lat, p)) is not None else None)
                             for p in (50, 99)},
                  errors=load["errors"][:5], error_count=len(load["errors"]),
                  server_cpu_s=round(cpu, 2), stopped=stopped,
                  log_tail=tail(logfile, 5) if load["errors"] else "")
    return result


def f(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    w, a = r["wait_ms"], r["accept_ms"]
    bad = [name for name, ok in r["checks"].items() if not ok]
    lines = [
        f"scenario {r['scenario']}: {args.agents} agents (capacity {args.capacity}), "
        f"{args.texters} texters, concurrency {args.concurrency}, commit {git_state()}",
        f"  MO accepted/s {f(r['mo_per_s'])} (API p50 {f(r['mo_api_ms'][50], 1)} ms, "
        f"p99 {f(r['mo_api_ms'][99], 1)} ms, errors {r['error_count']})",
        f"  assignments/s {f(r['assign_per_s'])} (first MO stored to last offer "
        f"{f(r['span_s'], 2)} s; server cpu {r['server_cpu_s']} s)",
        f"  MO stored -> offer ms: p50 {f(w[50], 1)}  p90 {f(w[90], 1)}  p99 {f(w[99], 1)}"
        f"  max {f(w[100], 1)}",
    ]
    if r["scenario"] == "accept":
        lines.append(f"  offer -> accepted ms: p50 {f(a[50], 1)}  p99 {f(a[99], 1)}")
    lines.append(f"  interactions {r['interactions']} {r['states']}, agents used "
                 f"{r['agents_used']}, most held by one {r['max_per_agent']}")
    lines.append("  checks: " + ("all ok (" + ", ".join(r["checks"]) + ")" if not bad
                                 else "FAILED: " + ", ".join(bad)))
    if r["error_count"]:
        lines.append(f"  errors: {r['errors']}\n{r['log_tail']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=bounded(1, 2000, int), default=200)
    p.add_argument("--texters", type=bounded(1, 100_000, int), default=2000)
    p.add_argument("--capacity", type=bounded(1, 100, int), default=10)
    p.add_argument("--concurrency", type=bounded(1, 1024, int), default=32,
                   help="SMS in flight at once")
    p.add_argument("--scenarios", default="offer,accept",
                   help="offer (agents never answer) and/or accept (each offer accepted)")
    p.add_argument("--port", type=bounded(1024, 65535, int), default=23200)
    p.add_argument("--sut-cpu", default="0")
    p.add_argument("--load-cpu", default="1")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--timeout", type=bounded(1, 300), default=30.0,
                   help="bound of one API request (s)")
    p.add_argument("--drain-timeout", type=bounded(1, 600), default=120.0)
    p.add_argument("--start-timeout", type=bounded(1, 300), default=30.0)
    p.add_argument("--stop-timeout", type=bounded(1, 300), default=30.0)
    p.add_argument("--dir", type=Path, default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not scenarios or any(s not in ("offer", "accept") for s in scenarios):
        p.error("--scenarios: offer and/or accept")
    args.scenario_list = scenarios
    if args.agents * args.capacity < args.texters:
        p.error("--agents x --capacity must hold every texter (none would wait forever)")
    if args.no_pin or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        args.sut_cpu = args.load_cpu = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load_cpu is not None:
        os.sched_setaffinity(0, {int(c) for c in args.load_cpu.split(",")})
    workdir = Path(tempfile.mkdtemp(prefix="smshost-desk-", dir=args.dir))
    results = []
    try:
        for scenario in args.scenario_list:
            args.scenario = scenario
            log(f"{scenario}: {args.agents} agents, {args.texters} texters")
            result = measure(args, workdir)
            print(report(result, args), flush=True)
            results.append(result)
    except RuntimeError as exc:
        log(f"failed: {exc}")
        return 2
    finally:
        PROCS.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"commit": git_state(), "results": results},
                                        indent=1, default=str), encoding="utf-8")
    failed = any(not all(r["checks"].values()) or r["error_count"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
