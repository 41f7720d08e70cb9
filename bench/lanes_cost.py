"""What the lanes of routing (issue 17, host.routing.leases) cost each MO on SQLite.

Stores MOs on one connection, 32 per transaction (``synchronous = NORMAL``: the disk
left out), the way the webhook and the router do, and prints the process CPU time per
MO of two paths, in turns (``--runs`` rounds), on the same machine:

- ``plain``: the path before the lanes: ``host.ledger.insert``, the router's read of
  the message by id, its status update to ``routed`` (the index ``messages_unrouted``
  dropped: it is the lanes' too);
- ``lanes``: the insert claims the conversation's lane, the router reads the
  conversation's oldest message with its lane, the status write renews or releases the
  lane (``Leases.after``); and the sweep's read (``Leases.orphans``) once per round.

    .venv/bin/python bench/lanes_cost.py --messages 20000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sqlite_utils import Database  # noqa: E402

from host.ledger import NewMessage, insert  # noqa: E402
from host.migrations import core  # noqa: E402
from host.models import utcnow  # noqa: E402
from host.routing.leases import Leases, key_of, waiting_sql  # noqa: E402


def database(path: Path, lanes: bool) -> Database:
    db = Database(path)
    db.execute("pragma journal_mode = wal")
    db.execute("pragma synchronous = normal")
    core.apply(db)
    if not lanes:
        db.execute("drop index messages_unrouted")
    return db


def run(db: Database, n: int, lanes: Leases | None, tag: str) -> float:
    """CPU µs per MO of ``n`` MOs, each of its own conversation (as under load)."""
    conn = db.conn
    started = time.process_time()
    for batch in range(n // 32):
        conn.execute("begin immediate")
        for k in range(32):
            i = batch * 32 + k
            message, _ = insert(db, NewMessage(
                direction="in", body="hello, is my parcel on its way?", status="received",
                broker="twilio-us", account="main", local="+14155550100",
                remote=f"+1{tag}{i:09d}", broker_message_id=f"SM{tag}{i:024x}"), lanes)
            key = key_of(message.local, message.remote)
            if lanes is None:
                list(db.query("select * from messages where id = ?", [message.id]))
            else:
                sql, args = waiting_sql(key, limit=3, lane=True)
                list(db.query(sql, args))
            conn.execute("update messages set status = 'routed', route = 'default', "
                         "updated_at = ? where id = ?", [utcnow(), message.id])
            if lanes is not None:
                lanes.after(db, key)
        conn.execute("commit")
    if lanes is not None:
        lanes.orphans(db, 1000)
    return (time.process_time() - started) * 1e6 / (n // 32 * 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lanes-cost-") as tmp:
        dbs = {"plain": database(Path(tmp) / "plain.db", False),
               "lanes": database(Path(tmp) / "lanes.db", True)}
        leases = Leases()
        got: dict[str, list[float]] = {"plain": [], "lanes": []}
        for r in range(args.runs):
            for name, db in dbs.items():
                got[name].append(run(db, args.messages, leases if name == "lanes" else None,
                                     f"{r}{name[0]}"))
        for name, values in got.items():
            print(f"{name}: {statistics.median(values):.1f} us CPU per MO (median of "
                  f"{args.runs}: {', '.join(f'{v:.1f}' for v in values)})")
        sweep = dbs["lanes"]
        started = time.process_time()
        for _ in range(1000):
            leases.orphans(sweep, 1000)
        print(f"sweep read, nothing to take: {(time.process_time() - started) * 1e3:.1f} "
              f"us CPU (of {args.runs * args.messages:,} MOs stored)")


if __name__ == "__main__":
    main()
