"""What the schema costs each stored message, on a big database: CPU per MO and per MT.

Copies each ``--db`` file (e.g. ``bench/bigdb.py``'s, before and after a migration) to
a scratch file and stores messages in it the way smshost does, on one connection, 32
per transaction (``synchronous = NORMAL``, so the disk is left out): an MO is
``host.ledger.insert`` (the row, its first event, the unique broker id) and the
router's status update to ``routed``; an MT is ``insert`` and three status updates
(``sending``, ``sent``, ``delivered``). Prints the process CPU time per message of
each, per file, for ``--runs`` rounds taken in turn (file A, file B, A, B, ...), so
both see the same machine. Every index and trigger of the file is paid for.

    .venv/bin/python bench/write_cost.py --db /tmp/before.db --db /tmp/after.db --runs 3
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sqlite_utils import Database  # noqa: E402

from host.ledger import NewMessage, insert  # noqa: E402
from host.models import utcnow  # noqa: E402


def store(db: Database, kind: str, n: int, tag: str) -> float:
    """CPU µs per message of ``n`` messages of ``kind`` (mo or mt)."""
    conn = db.conn
    started = time.process_time()
    for batch in range(n // 32):
        conn.execute("begin immediate")
        for k in range(32):
            i = batch * 32 + k
            if kind == "mo":
                message, _ = insert(db, NewMessage(
                    direction="in", body="hello, is my parcel on its way?", status="received",
                    broker="twilio-us", account="main", local="+14155550100",
                    remote=f"+1200{i:07d}", broker_message_id=f"SM{tag}{i:024x}"))
                conn.execute("update messages set status = 'routed', route = 'default', "
                             "updated_at = ? where id = ?", [utcnow(), message.id])
            else:
                message, _ = insert(db, NewMessage(
                    direction="out", body="your parcel arrives tomorrow", status="queued",
                    broker="twilio-us", account="main", local="+14155550100",
                    remote=f"+1200{i:07d}"))
                for status in ("sending", "sent", "delivered"):
                    conn.execute("update messages set status = ?, updated_at = ? "
                                 "where id = ?", [status, utcnow(), message.id])
        conn.execute("commit")
    return (time.process_time() - started) * 1e6 / (n // 32 * 32)


def measure(source: Path, n: int, scratch: Path, tag: str) -> tuple[float, float]:
    path = scratch / "write-cost.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma journal_mode = wal")
    conn.execute("pragma synchronous = normal")
    conn.execute("select count(*) from (select * from messages order by id desc limit 5000)")
    db = Database(conn)
    try:
        return store(db, "mo", n, tag), store(db, "mt", n, tag)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, action="append", required=True,
                        help="a database file (give two or more to compare)")
    parser.add_argument("--messages", type=int, default=40_000, help="of each kind")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None, help="where the copy goes")
    args = parser.parse_args()
    if not 32 <= args.messages <= 1_000_000 or not 1 <= args.runs <= 20:
        parser.error("--messages must be 32..1,000,000 and --runs 1..20")
    figures: dict[Path, list[tuple[float, float]]] = {p: [] for p in args.db}
    with tempfile.TemporaryDirectory(prefix="write-cost-", dir=args.scratch) as tmp:
        for run in range(args.runs):
            for path in args.db:
                mo, mt = measure(path, args.messages, Path(tmp), f"r{run}")
                figures[path].append((mo, mt))
                print(f"run {run + 1} {path}: MO {mo:.1f} µs, MT {mt:.1f} µs", flush=True)
    print("| file | MO µs (median) | MT µs (median) | runs |\n|---|---:|---:|---:|")
    for path, runs in figures.items():
        print(f"| `{path}` | {statistics.median(r[0] for r in runs):.1f} | "
              f"{statistics.median(r[1] for r in runs):.1f} | {len(runs)} |")


if __name__ == "__main__":
    main()
