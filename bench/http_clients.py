"""CPU per request of each outbound HTTP client (host.httpclient), alone on one core.

A fast HTTP/1.1 keep-alive server (httptools on uvloop when installed, one process
pinned to ``--server-cpu``) answers every request with a small fixed body; this
process, pinned to ``--client-cpu``, sends ``--requests`` POSTs with a small JSON body
through each transport from ``--concurrency`` tasks over as many connections, and
reports the client's CPU (user + system) per request and its requests per second,
on asyncio's loop and on uvloop. The server is not counted.

    .venv/bin/python bench/http_clients.py --port 25620
    .venv/bin/python bench/http_clients.py --port 25620 --requests 50000 --runs 3

See docs/benchmarks.md, "HTTP clients".
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.httpclient import KINDS, open_client  # noqa: E402

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
          b"Retry-After: 1\r\n\r\nOK 42")
BODY = b'{"to":"+15550001111","from":"+15550002222","text":"hello from the bench"}'


# -- the server -------------------------------------------------------------------------

def serve(port: int, cpu: int | None, ready: Any) -> None:
    """A keep-alive server answering each complete request at once (a child process)."""
    import httptools
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(ANSWER)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            Answer, "127.0.0.1", port, backlog=1024, reuse_address=True)
        ready.set()
        async with server:
            await server.serve_forever()
    loop_run(main(), uvloop=True)


def loop_run(coro: Any, uvloop: bool) -> Any:
    if uvloop:
        import uvloop as uv
        return uv.run(coro)
    return asyncio.run(coro)


# -- the client -------------------------------------------------------------------------

async def drive(kind: str, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``requests`` POSTs through ``kind``."""
    client = open_client(kind, concurrency)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    try:
        # warm up: every connection opened, the handle pools filled
        await asyncio.gather(*(client.request("POST", url, headers, BODY, 10)
                               for _ in range(concurrency * 4)))
        left = requests

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                answer = await client.request("POST", url, headers, BODY, 10)
                assert answer.status == 200 and answer.body == b"OK 42"
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return cpu_seconds() - cpu0, time.perf_counter() - wall0
    finally:
        await client.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--clients", default=",".join(KINDS))
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    args = p.parse_args()
    if not 1 <= args.requests <= 1_000_000 or not 1 <= args.concurrency <= 1000:
        p.error("--requests 1..1000000, --concurrency 1..1000")
    pin = not args.no_pin and len(os.sched_getaffinity(0)) > 1
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(
        args.port, args.server_cpu if pin else None, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(10):
            raise SystemExit("the server did not start")
        if pin:
            os.sched_setaffinity(0, {args.client_cpu})
        with socket.create_connection(("127.0.0.1", args.port), timeout=5):
            pass
        loops = ["asyncio"] + (["uvloop"] if _has_uvloop() else [])
        url = f"http://127.0.0.1:{args.port}/messages"
        print(f"{'client':8} {'loop':8} {'run':>3} {'µs/request':>11} {'requests/s':>11}")
        for run in range(1, args.runs + 1):
            for loop in loops:
                for kind in args.clients.split(","):
                    cpu, wall = loop_run(drive(kind, url, args.requests, args.concurrency),
                                         loop == "uvloop")
                    print(f"{kind:8} {loop:8} {run:>3} {cpu / args.requests * 1e6:>11.1f} "
                          f"{args.requests / wall:>11.0f}", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        server.terminate()
        server.join(5)
    return 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
