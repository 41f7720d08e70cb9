"""Every list query of the API, with each filter, on a big database: time and plan.

Serves the database made by ``bench/bigdb.py`` in process (``Host`` of its config, the
API's ASGI app called directly, no sockets), requests each list URL of the API (the
core's and the shipped sinks': messages, conversations, webhook deliveries and dead
letters, queues, opt-outs, handlers) with each filter, and prints per URL: the
median and worst time of the whole request (query, rows to JSON), the median time of
its SQL statements run again alone, the rows listed, and the plan of each statement
(``EXPLAIN QUERY PLAN``). The statements are the ones the API really ran: a
``prepare_connection`` plugin traces them on every connection of the store.

    .venv/bin/python bench/bigdb.py --dir /tmp/smshost-1m
    .venv/bin/python bench/list_queries.py --dir /tmp/smshost-1m            # ~1 minute
    .venv/bin/python bench/list_queries.py --dir /tmp/smshost-1m --runs 9 --markdown

Read-only: the file is opened by a host that starts no background task; nothing is
written but what the host writes at start (its handler list).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from host import hookimpl  # noqa: E402
from host.config import load_settings  # noqa: E402
from host.core import Host  # noqa: E402
from host.models import to_timestamp  # noqa: E402

TOKEN = "mo-ingest-bench"  # bench/mo_ingest.py's config, which bigdb.py writes
BUDGET_MS = 20.0


@dataclass
class Case:
    url: str
    label: str = ""  # the URL with each since= as an age (-1h, -1d, -30d, +1d)
    times: list[float] = field(default_factory=list)
    sql: list[str] = field(default_factory=list)
    sql_times: list[float] = field(default_factory=list)
    plans: list[list[str]] = field(default_factory=list)
    rows: int = 0
    status: int = 0


class Tracer:
    """Keeps the SQL text (parameters bound) of every statement of every connection."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    @hookimpl
    def prepare_connection(self, conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(self.statements.append)


AGES = {"-1h": timedelta(hours=1), "-1d": timedelta(days=1), "-30d": timedelta(days=30),
        "+1d": timedelta(days=-1)}
NOW = datetime.now(UTC)


def ago(**delta: float) -> str:
    return to_timestamp(NOW - timedelta(**delta))


def label(url: str) -> str:
    """``url`` with each ``since`` time written as its age."""
    for name, delta in AGES.items():
        url = url.replace(to_timestamp(NOW - delta), name)
    return url


def urls(db: sqlite3.Connection) -> list[str]:
    top = db.execute("select max(id) from messages").fetchone()[0]
    mid, old = top // 2, top // 20
    out = ["/api/messages", f"/api/messages?before={mid}", "/api/messages?limit=500"]
    for flt in ("direction=in", "direction=out", "status=routed", "status=delivered",
                "status=failed", "status=expired", "status=received", "status=queued",
                "status=nosuch", "broker=twilio-us", "broker=telnyx", "broker=unknown",
                f"since={ago(hours=1)}", f"since={ago(days=1)}", f"since={ago(days=30)}",
                f"since={ago(days=-1)}",
                "direction=in&status=failed", "direction=out&status=expired",
                "direction=in&status=delivered", "broker=telnyx&status=expired",
                "broker=kannel-1&direction=in", "broker=unknown&direction=out",
                "broker=twilio-us&status=received", f"since={ago(days=1)}&status=failed",
                f"since={ago(hours=1)}&direction=in", f"since={ago(days=1)}&broker=unknown"):
        out.append(f"/api/messages?{flt}")
        out.append(f"/api/messages?{flt}&before={mid}")
    out += [f"/api/messages?direction=out&before={old}", f"/api/messages/{mid}"]
    conv_top = db.execute("select max(id) from chat_conversations").fetchone()[0] or 2
    local, remote = (n.replace("+", "%2B") for n in db.execute(
        "select local, remote from chat_conversations order by id desc limit 1").fetchone()
        or ("", ""))
    for flt in ("", "state=open", "state=closed", "state=idle", f"local={local}",
                "local=%2B19999999999", f"remote={remote}", "remote=%2B19999999999",
                f"state=closed&local={local}", f"state=open&local={local}"):
        out.append(f"/api/conversations?{flt}")
        out.append(f"/api/conversations?{flt}&before={conv_top // 2}".replace("?&", "?"))
    deliv_top = db.execute("select max(id) from webhook_deliveries").fetchone()[0] or 2
    for flt in ("", "status=pending", "status=delivered", "status=dead", "target=crm",
                "target=analytics", "target=unknown", "status=dead&target=crm",
                "status=pending&target=analytics"):
        out.append(f"/api/webhooks/deliveries?{flt}")
        out.append(f"/api/webhooks/deliveries?{flt}&before={deliv_top // 2}".replace("?&", "?"))
    out += ["/api/webhooks/dead-letters", "/api/webhooks/dead-letters?target=crm",
            "/api/queues", "/api/queues/bench", "/api/queues/bench?limit=500",
            "/api/optouts", f"/api/optouts?local={local}", "/api/handlers"]
    return [u.replace("?&", "?").rstrip("?") for u in out]


async def get(app: Any, url: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "path": parts.path, "raw_path": parts.path.encode(),
             "root_path": "", "query_string": parts.query.encode(), "scheme": "http",
             "server": ("127.0.0.1", 23100), "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"127.0.0.1:23100"),
                         (b"authorization", f"Bearer {TOKEN}".encode())]}
    status, body = 0, b""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    await app(scope, receive, send)
    return status, body


def listed(body: bytes) -> int:
    data = json.loads(body)
    for key in ("messages", "conversations", "deliveries", "queues", "interactions",
                "optouts", "history"):
        if isinstance(data.get(key), list):
            return len(data[key])
    return 1


async def measure(host: Host, tracer: Tracer, cases: list[Case], runs: int) -> None:
    app = host.app_for(host.settings.api_listener)
    for case in cases:
        for run in range(runs + 1):  # the first warms the cache and is not counted
            tracer.statements.clear()
            started = time.perf_counter()
            case.status, body = await get(app, case.url)
            elapsed = (time.perf_counter() - started) * 1000
            if run:
                case.times.append(elapsed)
        case.sql = [s for s in tracer.statements if not s.lower().startswith(
            ("pragma", "begin", "commit", "rollback", "savepoint", "release"))]
        case.rows = listed(body) if case.status == 200 else 0


def explain(path: Path, cases: list[Case], runs: int) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    for case in cases:
        for sql in case.sql:
            case.plans.append([r[3] for r in conn.execute(f"explain query plan {sql}")])
        for _ in range(runs):
            started = time.perf_counter()
            for sql in case.sql:
                conn.execute(sql).fetchall()
            case.sql_times.append((time.perf_counter() - started) * 1000)
    conn.close()


def report(cases: list[Case], markdown: bool) -> str:
    lines = []
    if markdown:
        lines += ["| request | API ms p50 | API ms max | SQL ms p50 | rows | plan |",
                  "|---|---:|---:|---:|---:|---|"]
    for c in cases:
        plan = " / ".join("; ".join(p) for p in c.plans) or "-"
        flag = " **over budget**" if statistics.median(c.times) > BUDGET_MS else ""
        if c.status != 200:
            flag += f" **HTTP {c.status}**"
        med, worst = statistics.median(c.times), max(c.times)
        sql = statistics.median(c.sql_times) if c.sql_times else 0.0
        if markdown:
            lines.append(f"| `{c.url}`{flag} | {med:.1f} | {worst:.1f} | {sql:.1f} | {c.rows} "
                         f"| {plan} |")
        else:
            lines.append(f"{med:8.1f} {worst:8.1f} {sql:8.1f} {c.rows:5d}  {c.url}{flag}\n"
                         f"{'':33}{plan}")
    return "\n".join(lines)


def compare(before: Path, after: Path) -> str:
    """One row per URL of two runs' JSON, matched by label (since as an age): the
    median request time and the plan of the page's query (the last statement) of each."""
    def load(path: Path) -> dict[str, dict[str, Any]]:
        return {c["label"]: c for c in json.loads(path.read_text())}
    old, new = load(before), load(after)
    lines = ["| request | before ms | before: plan | after ms | after: plan |",
             "|---|---:|---|---:|---|"]
    for url, case in new.items():
        was = old.get(url, {"times": [float("nan")], "plans": []})
        lines.append(f"| `{url}` | {statistics.median(was['times']):.1f} | "
                     f"{short(was['plans'])} | {statistics.median(case['times']):.1f} | "
                     f"{short(case['plans'])} |")
    return "\n".join(lines)


def short(plans: list[list[str]]) -> str:
    """The last statement's plan, a union's arms counted instead of spelled out."""
    if not plans:
        return "-"
    steps = [line for line in plans[-1] if line not in ("MERGE (UNION ALL)", "LEFT", "RIGHT")]
    counted = {line: steps.count(line) for line in steps}
    return "; ".join(f"{n} × {line}" if n > 1 else line for line, n in counted.items())


async def run(args: argparse.Namespace) -> list[Case]:
    cfg = args.dir / "config"
    host = Host(load_settings(cfg), config_dir=cfg)
    tracer = Tracer()
    host.plugins.register(tracer, "bench-tracer")
    path = host.store.path
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    cases = [Case(u, label(u)) for u in urls(conn) if args.only in u]
    conn.close()
    async with host.running(background=False):
        await measure(host, tracer, cases, args.runs)
    explain(path, cases, args.runs)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="bench/bigdb.py's --dir")
    parser.add_argument("--runs", type=int, default=5, help="timed requests per URL")
    parser.add_argument("--only", default="", help="only URLs containing this text")
    parser.add_argument("--markdown", action="store_true", help="a markdown table")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"),
                        help="print a before/after table of two --json files, run nothing")
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    if not 1 <= args.runs <= 100:
        parser.error("--runs must be 1..100")
    cases = asyncio.run(run(args))
    print(report(cases, args.markdown))
    over = [c.url for c in cases if statistics.median(c.times) > BUDGET_MS or c.status != 200]
    print(f"\n{len(cases)} requests, {len(over)} over {BUDGET_MS:g} ms or failed"
          + (": " + ", ".join(over) if over else ""))
    if args.json:
        args.json.write_text(json.dumps([c.__dict__ for c in cases], indent=1))


if __name__ == "__main__":
    main()
