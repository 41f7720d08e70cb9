"""MO ingest without HTTP: smshost's own cost per webhook, uvicorn left out.

Builds the same server as ``mo_ingest.py`` (one signed Twilio broker instance, routing
off, ``synchronous = FULL``), then calls the listener's ASGI app directly, from
``--concurrency`` tasks on uvloop (``--routed``: routing on, to a queue, and the
measurement ends when every message is routed), with the same signed Twilio webhooks as ASGI
messages. Prints the CPU time of the process (event loop and store threads) per
request and checks that every request answered 200 is stored once. The difference to
``mo_ingest.py``'s server CPU per request is what the HTTP server (uvicorn, httptools,
sockets) costs. For profiling: ``py-spy record -- python bench/mo_inproc.py``.

    .venv/bin/python bench/mo_inproc.py                  # 30,000 requests, 32 at once
    taskset -c 0 .venv/bin/python bench/mo_inproc.py --requests 60000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from mo_ingest import (AUTH_TOKEN, HOST, MO_PATH, message_sid,  # noqa: E402
                       smshost_config, twilio_fields, twilio_signature)

from host.config import load_settings  # noqa: E402
from host.core import Host  # noqa: E402

PORT = 23100  # only named in the URL the signatures cover; nothing listens


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def requests(count: int) -> list[tuple[bytes, bytes, bytes]]:
    url = f"http://{HOST}:{PORT}{MO_PATH}"
    out = []
    for n in range(count):
        fields = twilio_fields("inproc", n)
        out.append((message_sid("inproc", n).encode(),
                    twilio_signature(url, fields, AUTH_TOKEN).encode(),
                    urlencode(fields).encode()))
    return out


async def call(app: Any, sid: bytes, signature: bytes, body: bytes) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "path": MO_PATH, "raw_path": MO_PATH.encode(),
             "root_path": "", "query_string": b"", "scheme": "http",
             "server": (HOST, PORT), "client": (HOST, 50000),
             "headers": [(b"host", f"{HOST}:{PORT}".encode()),
                         (b"content-type", b"application/x-www-form-urlencoded"),
                         (b"content-length", str(len(body)).encode()),
                         (b"x-twilio-signature", signature), (b"x-request-id", sid)]}
    given = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run(args: argparse.Namespace, directory: Path) -> None:
    cfg = smshost_config(directory, PORT, signed=True, routed=args.routed, sync=args.sync)
    settings = load_settings(cfg)
    host = Host(settings, config_dir=cfg)
    app = host.app_for(settings.api_listener)
    work = requests(args.warmup + args.requests)
    warm, load = work[:args.warmup], work[args.warmup:]
    statuses: dict[int, int] = {}
    async with host.running():
        async def drive(batch: list[tuple[bytes, bytes, bytes]]) -> None:
            items = iter(batch)

            async def worker() -> None:
                for sid, signature, body in items:
                    status = await call(app, sid, signature, body)
                    statuses[status] = statuses.get(status, 0) + 1

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))

        await drive(warm)
        stats = host.store.stats
        commits0, writes0 = stats.commits, stats.writes
        cpu0, wall0 = cpu_s(), time.perf_counter()
        await drive(load)
        if args.routed and not await host.router.idle(timeout=120.0):
            raise SystemExit("error: routing did not finish within 120 s")
        cpu1, wall1 = cpu_s(), time.perf_counter()
        commits, writes = stats.commits - commits0, stats.writes - writes0
    db = sqlite3.connect(directory / "data" / "smshost.db")
    stored = db.execute("select count(*), count(distinct broker_message_id) from messages "
                        "where direction = 'in'").fetchone()
    db.close()
    n = len(load)
    print(f"{n:,} requests in {wall1 - wall0:.2f} s: {n / (wall1 - wall0):,.0f}/s, "
          f"{1e6 * (cpu1 - cpu0) / n:.1f} us CPU per request "
          f"({100 * (cpu1 - cpu0) / (wall1 - wall0):.0f} % of a core); "
          f"{writes / max(commits, 1):.1f} writes per commit; "
          f"statuses {statuses}; stored {stored[0]:,} ({stored[1]:,} distinct)")
    if statuses != {200: len(work)} or tuple(stored) != (len(work), len(work)):
        raise SystemExit("error: not every request was answered 200 and stored once")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30_000, help="measured requests")
    parser.add_argument("--warmup", type=int, default=2_000, help="requests before measuring")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--sync", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--routed", action="store_true",
                        help="routing on (to a queue, as mo_ingest.py's e2e scenario): "
                        "the CPU per MO stored and routed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mo-inproc-") as tmp:
        uvloop.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
