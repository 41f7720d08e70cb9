"""Server time of the admin's pages (issue 15 point 9) over a big database.

Makes a database of ``--messages`` messages with their status events and the shipped
sinks' rows (``bench/bigdb.py``: the real migrations, then bulk inserts that fire
every trigger of the schema), starts the real app on it (``Host.app_for()``, its
lifespan run, in process: no network), signs an admin in through the sign-in form and
asks each page ``--requests`` times, after one request not counted: every GET page
of /admin without a path parameter, a message page, a conversation's thread, and the
message search by number, text, status and date range. Prints the median and p95 of
each, in ms: the time from the request to the last byte of the answer, in process.

    .venv/bin/python bench/admin_pages.py --dir /tmp/smshost-admin --messages 100000
    .venv/bin/python bench/admin_pages.py --dir /tmp/smshost-admin --reuse   # same db

The CSV export of every message is timed once, apart (a download, not a page). The
outbox worker runs as in a server: the generated outbound messages still queued fail
at the start (their brokers are not configured), which it logs.

Exit status 1 when a page answers anything but 200 (or 501, a section's placeholder
while the admin is built), or (``--target``) is slower than
the target at p95.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bigdb  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from host.config import load_settings  # noqa: E402
from host.core import Host  # noqa: E402
from host.web.ui.admin import pages as admin_pages  # noqa: E402

EXPORT = "/admin/messages/export"
OK = (200, 501)  # 501: a section not built yet (its placeholder page)
TOKEN = {"Authorization": "Bearer mo-ingest-bench"}
PASSWORD = "bench password 123"


def make(directory: Path, messages: int, seed: int) -> Path:
    """The database and config under ``directory`` (made again unless kept)."""
    args = argparse.Namespace(messages=messages, days=60.0, seed=seed)
    if directory.exists():
        shutil.rmtree(directory)
    path = bigdb.migrate(args, directory)
    bigdb.fill(path, bigdb.Maker(args))
    return directory / "config"


def samples(db: Path) -> dict[str, str]:
    """Paths of pages with a parameter and of searches, from what the database holds."""
    conn = sqlite3.connect(db)
    middle = conn.execute("select max(id) / 2 from messages").fetchone()[0]
    message_id, local, remote, body, day = conn.execute(
        "select id, local, remote, body, substr(created_at, 1, 10) from messages "
        "where id >= ? and remote is not null order by id limit 1", [middle]).fetchone()
    next_day = conn.execute("select date(?, '+1 day')", [day]).fetchone()[0]
    conn.close()
    words = " ".join(body.split()[:2])
    thread = f"/admin/conversations/{quote(remote, safe='')}?local={quote(local or '')}"
    return {
        "message page": f"/admin/messages/{message_id}",
        "thread page": thread,
        "search: number": f"/admin/messages?number={quote(remote)}",
        "search: text": f"/admin/messages?text={quote(words)}",
        "search: rare text": "/admin/messages?text=zzzq",
        "search: status": "/admin/messages?status=undelivered",
        "search: one day": f"/admin/messages?since={day}&until={next_day}",
        "search: day + status": f"/admin/messages?since={day}&until={next_day}"
                                "&status=failed&direction=out",
        "search: number + text": f"/admin/messages?number={quote(remote)}&text=the",
        "search: ours + text": f"/admin/messages?number={quote(local or '')}"
                              f"&text={quote(words)}",
        "messages, older page": f"/admin/messages?before={middle}",
    }


def signed_in(app: TestClient) -> TestClient:
    made = app.post("/api/users", headers=TOKEN, json={
        "login": "bench", "roles": ["admin"], "password": PASSWORD})
    assert made.status_code in (201, 409), made.text
    client = TestClient(app.app, base_url="https://testserver")
    client.portal = app.portal
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    signed = client.post("/login", data={"login": "bench", "password": PASSWORD,
                                         "csrf_token": token.group(1)},
                         follow_redirects=False)
    assert signed.status_code == 303, signed.text
    return client


def measure(client: TestClient, path: str, requests: int) -> tuple[int, list[float]]:
    status = client.get(path).status_code  # warm: templates compiled, caches filled
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        status = answer.status_code if answer.status_code != 200 else status
    return status, times


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def run(config: Path, requests: int) -> list[dict[str, Any]]:
    host = Host(load_settings(config), config_dir=config)
    results = []
    with TestClient(host.app_for(), base_url="https://testserver") as app:
        client = signed_in(app)
        paths = {r.path: r.path for r in admin_pages()
                 if "{" not in r.path and "GET" in (r.methods or ()) and r.path != EXPORT}
        paths.update(samples(host.store.path))
        for name, path in paths.items():
            status, times = measure(client, path, requests)
            results.append({"page": name, "path": path, "status": status,
                            "median": statistics.median(times), "p95": p95(times)})
        started = time.perf_counter()  # a download, not a page: once, all of it
        with client.stream("GET", EXPORT) as answer:
            size = sum(len(chunk) for chunk in answer.iter_bytes())
        took = (time.perf_counter() - started) * 1000
        results.append({"page": f"CSV export ({size / 1e6:.1f} MB)", "path": EXPORT,
                        "status": answer.status_code, "median": took, "p95": took,
                        "once": True})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="keep it under /tmp")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reuse", action="store_true",
                        help="use the database already in --dir")
    parser.add_argument("--target", type=float, default=None,
                        help="fail when a page's p95 is above this many ms")
    args = parser.parse_args(argv)
    if not 10 <= args.messages <= 5_000_000 or not 1 <= args.requests <= 10_000:
        parser.error("--messages must be 10..5,000,000 and --requests 1..10,000")
    directory = args.dir.resolve()
    started = time.monotonic()
    config = directory / "config" if args.reuse else make(directory, args.messages,
                                                          args.seed)
    made = time.monotonic() - started
    conn = sqlite3.connect(directory / "data" / "smshost.db")
    count = conn.execute("select count(*) from messages").fetchone()[0]
    conn.close()
    print(f"{count:,} messages in {directory} ({made:.0f} s); {args.requests} requests "
          "per page, ms from request to answer in process")
    print(f"{'page':<24} {'median':>8} {'p95':>8}  status  path")
    failed = False
    for r in run(config, args.requests):
        slow = args.target is not None and r["p95"] > args.target and not r.get("once")
        failed = failed or r["status"] not in OK or slow
        print(f"{r['page']:<24} {r['median']:8.1f} {r['p95']:8.1f}  {r['status']:>6}  "
              f"{r['path']}{'  SLOW' if slow else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
