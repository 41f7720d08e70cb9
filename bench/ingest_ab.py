"""Routing at ingest, A/B in one process: ``routing.at_ingest`` off, then on, repeated.

Each round builds a fresh node (SQLite in a temp directory, the generic broker, one
default route to the webhook sink) and an aiohttp receiver in the same event loop,
then sends ``--messages`` MOs through the broker webhook in process
(``Host.broker_webhook``: the same path as HTTP, without the HTTP server), each from
its own number, ``--concurrency`` at once, and waits until the receiver has them all.
It prints the process's CPU time per delivered MO (the receiver's share included, the
same in both), the rate, and the store's commits and writes per MO.

    taskset -c 0 .venv/bin/python bench/ingest_ab.py --messages 4000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import textwrap
import time
from pathlib import Path

from aiohttp import web

from host.brokers.http import InboundRequest
from host.config import load_settings
from host.core import Host


def config(root: Path, at_ingest: bool, receiver: int, api: int) -> Path:
    cfg = root / "config"
    cfg.mkdir(parents=True)
    (cfg / "smshost.toml").write_text(textwrap.dedent(f"""\
        [server]
        data_dir = "{root / 'data'}"
        [[listeners]]
        name = "admin"
        port = {api}
        api = true
        [api]
        token = "ingest-ab"
        [purge]
        enabled = false
        [logging]
        level = "ERROR"
        [plugins]
        entry_points = false
        """))
    (cfg / "brokers.toml").write_text(textwrap.dedent("""\
        [[brokers]]
        name = "gen"
        definition = "generic"
        encryption = "http"
        [brokers.mt]
        gateway = "http://127.0.0.1:9"
        [[brokers.accounts]]
        id = "main"
        local_address = "+15550100"
        """))
    (cfg / "routes.toml").write_text(textwrap.dedent(f"""\
        [routing]
        at_ingest = {str(at_ingest).lower()}
        [[inbound]]
        name = "default"
        destination = "webhook"
        target = "app"
        default = true
        """))
    (cfg / "sinks.toml").write_text(textwrap.dedent(f"""\
        [webhook]
        max_in_flight = 64
        [webhook.targets.app]
        url = "http://127.0.0.1:{receiver}/mo"
        secret = "ingest-ab"
        """))
    return cfg


async def one(args: argparse.Namespace, at_ingest: bool) -> str:
    count = 0
    done = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        if count >= args.messages:
            done.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/mo", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.receiver_port).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = config(Path(tmp), at_ingest, args.receiver_port, args.port)
            host = Host(load_settings(cfg), config_dir=cfg)
            async with host.running():
                return await measure(host, args, done)
    finally:
        await runner.cleanup()


async def measure(host: Host, args: argparse.Namespace, done: asyncio.Event) -> str:
    slots = asyncio.Semaphore(args.concurrency)

    async def post(i: int) -> None:
        body = json.dumps({"id": f"m{i}", "from": f"+1555{i:07d}", "to": "+15550100",
                           "text": f"hello {i}"}).encode()
        async with slots:
            answer = await host.broker_webhook("gen", "/generic/mo", InboundRequest(
                "POST", "http://127.0.0.1/generic/mo",
                {"content-type": "application/json"}, body))
        assert answer.status_code == 200, answer.body

    stats = host.store.stats
    commits, writes = stats.commits, stats.writes
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(post(i) for i in range(args.messages)))
    await asyncio.wait_for(done.wait(), 300)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await host.router.idle()
    n = args.messages
    return (f"cpu {cpu / n * 1e6:6.0f} us/MO  {n / wall:6.0f} MO/s  commits/MO "
            f"{(stats.commits - commits) / n:.2f}  writes/MO {(stats.writes - writes) / n:.2f}")


async def main(args: argparse.Namespace) -> None:
    for _ in range(args.rounds):
        for at_ingest in (False, True):
            print(f"at_ingest={str(at_ingest).lower():5}  {await one(args, at_ingest)}",
                  flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=24111, help="the API listener (unused)")
    parser.add_argument("--receiver-port", type=int, default=24110)
    asyncio.run(main(parser.parse_args()))
