"""Handler benchmarks (issue 4): MO → handler → reply queued, and hot-reload latency.

    .venv/bin/python bench/handler_bench.py [--messages 5000] [--senders 64] [--reloads 20]

Everything runs in one process on a temporary database, through the real code paths:
the simulator broker's MO webhook handling (``webhooks.process``), the group-committed
store, the router, the handler runner (a sync handler, so in a thread) and the reply
queued as an outbound message. Only the HTTP layer is left out (measured by
bench/mo_ingest.py).

1. Throughput: ``--messages`` MOs from ``--senders`` phones, all injected at once;
   messages/s from the first injection until the last reply is queued.
2. Reload latency: ``--reloads`` times, a new version of the handler is saved (atomic
   rename, as editors do) and a message is sent every 10 ms until one is answered by the
   new version; latency = time the new version handled its first message − time of the
   save. Reported: median, p90, max. The real watcher (watchfiles) is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host.brokers import webhooks  # noqa: E402
from host.brokers.http import InboundRequest  # noqa: E402
from host.config import load_settings  # noqa: E402
from host.core import Host  # noqa: E402

HANDLER = """
import time
VERSION = {version!r}

def handle(ctx):
    ctx.reply(f"{{VERSION}} {{time.time()}} " + ctx.body)
"""


def write_config(root: Path) -> Path:
    cfg = root / "config"
    cfg.mkdir()
    (cfg / "smshost.toml").write_text(f"""
[server]
data_dir = "{root / 'data'}"
[api]
token = "bench"
[purge]
enabled = false
[logging]
level = "WARNING"
[plugins]
dirs = ["{root / 'plugins'}"]
entry_points = false
[handlers]
timeout = 10
threads = 8
[outbox]
enabled = false   # measured up to "reply queued"; sending is bench/mt_bench.py's
""")
    (cfg / "brokers.toml").write_text("""
[[brokers]]
name = "sim"
definition = "simulator"
encryption = "http"
[[brokers.accounts]]
id = "main"
local_address = "+15550100"
""")
    (cfg / "routes.toml").write_text("""
[[inbound]]
name = "bench"
destination = "handler"
target = "Bench"
default = true
""")
    return cfg


def save_handler(root: Path, version: str) -> float:
    folder = root / "plugins" / "handlers"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".Bench.tmp"
    tmp.write_text(HANDLER.format(version=version))
    saved = time.time()
    tmp.rename(folder / "Bench.py")
    return saved


async def inject(host: Host, endpoint: webhooks.Endpoint, sender: str, text: str,
                 n: int) -> None:
    body = json.dumps({"id": f"B{n}", "from": sender, "to": "+15550100", "text": text})
    request = InboundRequest("POST", "http://127.0.0.1:8080/simulator/mo",
                             {"content-type": "application/json"}, body.encode())
    response = await webhooks.process(host, endpoint, request)
    assert response.status_code == 200, bytes(response.body)


async def replies(host: Host) -> int:
    return int(await host.store.read(lambda db: db.execute(
        "select count(*) from messages where direction = 'out'").fetchone()[0]))


async def throughput(host: Host, endpoint: webhooks.Endpoint, messages: int,
                     senders: int) -> dict[str, float]:
    started = time.perf_counter()
    await asyncio.gather(*(inject(host, endpoint, f"+1415555{i % senders:04d}", f"m{i}", i)
                           for i in range(messages)))
    accepted = time.perf_counter() - started
    for _ in range(6000):  # bounded: 60 s
        if await replies(host) >= messages:
            break
        await asyncio.sleep(0.01)
    done = time.perf_counter() - started
    queued = await replies(host)
    return {"messages": messages, "senders": senders, "replies": queued,
            "accept_s": round(accepted, 3), "total_s": round(done, 3),
            "msgs_per_s": round(queued / done, 1)}


async def reload_latency(host: Host, endpoint: webhooks.Endpoint, root: Path,
                         reloads: int) -> list[float]:
    latencies = []
    n = 10_000_000
    for i in range(reloads):
        version = f"v{i + 2}"
        saved = save_handler(root, version)
        handled_at = None
        for _ in range(1000):  # bounded: 10 s per reload
            n += 1
            await inject(host, endpoint, "+14155550999", "probe", n)
            await host.router.idle()
            reply = await host.store.read(lambda db: db.execute(
                "select body from messages where direction = 'out' order by id desc limit 1"
            ).fetchone()[0])
            if reply.startswith(version + " "):
                handled_at = float(reply.split()[1])
                break
            await asyncio.sleep(0.01)
        if handled_at is None:
            raise SystemExit(f"reload {i}: the new version never answered")
        latencies.append(handled_at - saved)
        await asyncio.sleep(0.3)  # let the watcher settle before the next save
    return latencies


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="smshost-hbench-") as tmp:
        root = Path(tmp)
        cfg = write_config(root)
        save_handler(root, "v1")
        host = Host(load_settings(cfg), config_dir=cfg)
        host.load_plugins()
        async with host.running():
            instance = host.brokers["sim"]
            endpoint = webhooks.endpoints_for_port(host.brokers, instance.port)["/simulator/mo"]
            result = await throughput(host, endpoint, args.messages, args.senders)
            latencies = await reload_latency(host, endpoint, root, args.reloads)
    ms = sorted(x * 1000 for x in latencies)
    print("| metric | value |")
    print("|---|---|")
    print(f"| MO → handler → reply queued | {result['msgs_per_s']:,.0f} msg/s "
          f"({result['replies']} replies, {result['messages']} MOs from "
          f"{result['senders']} senders, {result['total_s']} s) |")
    print(f"| reload latency, median of {len(ms)} | {statistics.median(ms):.0f} ms |")
    print(f"| reload latency, p90 / max | {ms[int(0.9 * (len(ms) - 1))]:.0f} ms / "
          f"{ms[-1]:.0f} ms |")
    if args.json:
        Path(args.json).write_text(json.dumps({"throughput": result, "reload_ms": ms}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--json", default=None)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(main(parser.parse_args()))
