"""The SQLite store: migrations, group commit, isolation of failed writes, durability."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

import pytest
from sqlite_utils import Database, Migrations

from host.config.settings import StoreSettings
from host.errors import StoreClosed
from host.ledger import NewMessage, insert
from host.migrations import core
from host.store import Store
from tests.conftest import ROOT


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def insert_one(db: Database, body: str = "hi", bid: str | None = None) -> int:
    message, _ = insert(db, NewMessage(direction="in", body=body, status="received",
                                        broker="test", broker_message_id=bid))
    return message.id


def before_m014(db: Database) -> None:
    """Let host.ledger.insert store messages in a database older than m014: the text
    index it writes is, on this connection only, a temporary table (m014 makes the real
    one, from the messages, when the store opens the file)."""
    db.execute("create virtual table temp.messages_text using fts5(body)")


async def opened(path: Path, **settings: object) -> Store:
    store = Store(path, StoreSettings(**settings))  # type: ignore[arg-type]
    await store.open([core])
    return store


def test_wal_mode_and_synchronous_full(tmp_path: Path) -> None:
    async def main() -> tuple[str, int]:
        store = await opened(tmp_path / "s.db")
        mode = await store.read(lambda db: db.execute("pragma journal_mode").fetchone()[0])
        sync = await store.write(lambda db: db.execute("pragma synchronous").fetchone()[0])
        await store.close()
        return mode, sync
    assert run(main()) == ("wal", 2)  # 2 = FULL


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    extra = Migrations("plugin-x")
    calls = []

    @extra()
    def m1(db: Database) -> None:
        calls.append("m1")
        db.execute("create table plugin_x (id integer primary key)")

    async def main() -> None:
        for _ in range(3):
            store = Store(tmp_path / "s.db")
            await store.open([core, extra])
            await store.close()
    run(main())
    assert calls == ["m1"]
    db = Database(tmp_path / "s.db")
    applied = [(r["migration_set"], r["name"]) for r in db["_sqlite_migrations"].rows]
    core_names = [("smshost", m.name) for m in core.pending(Database(memory=True))]
    assert core_names[0] == ("smshost", "m001_messages")
    assert applied == [*core_names, ("plugin-x", "m1")]
    assert {"messages", "message_events", "plugin_x"} <= set(db.table_names())


def test_outbox_rows_of_an_older_database_get_their_broker_and_account(
        tmp_path: Path) -> None:
    """m006 names each waiting outbox row's broker and account (the worker reads the
    outbox account by account): rows queued before it are filled in from their
    messages."""
    from host import migrations

    older = Migrations("smshost")  # the core set as it was before m006
    for name in ("m001_messages", "m002_brokers", "m003_fewer_indexes", "m004_routing",
                 "m005_outbox"):
        older()(getattr(migrations, name))
    path = tmp_path / "s.db"
    db = Database(path)
    older.apply(db)
    before_m014(db)
    message, _ = insert(db, NewMessage(direction="out", body="waiting", status="queued",
                                        broker="gen", account="main", remote="+1555"))
    db.execute("insert into outbox (message_id, next_attempt_at, enqueued_at) "
               "values (?, 0, 0)", [message.id])
    db.conn.commit()
    db.close()

    async def main() -> None:
        store = Store(path)
        await store.open([core])
        await store.close()
    run(main())
    rows = list(Database(path).query("select message_id, broker, account from outbox"))
    assert rows == [{"message_id": message.id, "broker": "gen", "account": "main"}]


def older_database(path: Path, clock: Callable[[], str] | None = None,
                   count: int = 0, body: str = "hi") -> None:
    """A database as smshost made it before m007 (no auto_vacuum, no list indexes),
    with ``count`` messages stored at ``clock``'s times."""
    from host import ledger, migrations

    older = Migrations("smshost")
    for name in ("m001_messages", "m002_brokers", "m003_fewer_indexes", "m004_routing",
                 "m005_outbox", "m006_outbox_accounts"):
        older()(getattr(migrations, name))
    db = Database(path)
    older.apply(db)
    before_m014(db)
    saved = ledger.utcnow
    ledger.utcnow = clock or saved  # type: ignore[assignment]
    try:
        for n in range(count):
            insert(db, NewMessage(direction="in", body=f"{body} {n}", status="received",
                                   broker="b"))
    finally:
        ledger.utcnow = saved  # type: ignore[assignment]
    db.conn.commit()
    db.close()


def test_m007_on_an_older_database(tmp_path: Path) -> None:
    """The list indexes are built over the stored messages, a clock step among them is
    found (since would miss messages without it), and the small file is switched to
    incremental vacuum."""
    from host.messages import MessageFilter, find_rows

    times = iter(["2026-11-20T12:00:00.000000Z", "2026-11-20T12:10:00.000000Z",
                  "2026-11-20T12:05:00.000000Z", "2026-11-20T12:20:00.000000Z"])
    path = tmp_path / "s.db"
    older_database(path, lambda: next(times), count=4)
    assert Database(path).execute("pragma auto_vacuum").fetchone()[0] == 0

    async def main() -> list[int]:
        store = await opened(path)
        found = await store.read(lambda db: [r["id"] for r in find_rows(
            db, MessageFilter(since="2026-11-20T12:05:00.000000Z"))])
        await store.close()
        return found
    assert run(main()) == [4, 3, 2]  # 2 is later than 3 in time: the step before 3
    db = Database(path)
    assert {"messages_broker", "messages_created"} <= {i.name for i in db["messages"].indexes}
    assert "idempotency_created" in {i.name for i in db["idempotency"].indexes}
    assert list(db.query("select * from clock_steps")) == [
        {"before_max": "2026-11-20T12:10:00.000000Z", "first_id": 3}]
    assert db.execute("pragma auto_vacuum").fetchone()[0] == 2


def test_a_large_older_database_waits_for_smshost_vacuum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from host import upkeep

    data = tmp_path / "data"
    data.mkdir()
    path = data / "smshost.db"
    older_database(path, count=300, body="x" * 2000)
    Database(path).execute("delete from messages where id > 25")  # (and their text index)
    monkeypatch.setattr(upkeep, "AUTO_SWITCH_BYTES", 100_000)

    async def main() -> None:
        store = await opened(path)
        await store.close()
    run(main())
    assert "run `smshost vacuum` once" in caplog.text
    assert Database(path).execute("pragma auto_vacuum").fetchone()[0] == 0
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "smshost.toml").write_text(f'[server]\ndata_dir = "{data}"\n')
    before = path.stat().st_size
    done = subprocess.run([sys.executable, "-m", "host", "vacuum", "--config", str(cfg)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "switched to incremental vacuum" in done.stdout
    assert Database(path).execute("pragma auto_vacuum").fetchone()[0] == 2
    assert path.stat().st_size < before // 2


def test_failed_migration_rolls_back_and_stays_pending(tmp_path: Path) -> None:
    broken = Migrations("broken")

    @broken()
    def m1(db: Database) -> None:
        db.execute("create table half (id integer)")
        raise RuntimeError("boom")

    async def main() -> None:
        store = Store(tmp_path / "s.db")
        with pytest.raises(RuntimeError, match="boom"):
            await store.open([core, broken])
        await store.close()
    run(main())
    db = Database(tmp_path / "s.db")
    assert "half" not in db.table_names()
    assert broken.pending(db)


def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    async def main() -> tuple[list[int], int, int]:
        store = await opened(tmp_path / "s.db")
        ids = await asyncio.gather(*(store.write(insert_one) for _ in range(500)))
        stats = store.stats
        await store.close()
        return ids, stats.commits, stats.writes
    ids, commits, writes = run(main())
    assert len(set(ids)) == 500 and writes == 500
    assert commits < 500  # grouped: fewer transactions than writes
    assert Database(tmp_path / "s.db")["messages"].count == 500


def test_per_row_mode_commits_each_write(tmp_path: Path) -> None:
    async def main() -> int:
        store = await opened(tmp_path / "s.db", group_commit=False)
        await asyncio.gather(*(store.write(insert_one) for _ in range(50)))
        commits = store.stats.commits
        await store.close()
        return commits
    assert run(main()) == 50


def test_failing_write_is_isolated_in_its_group(tmp_path: Path) -> None:
    def bad(db: Database) -> None:
        insert_one(db, "from the failing write")
        raise ValueError("rejected")

    async def main() -> list[object]:
        store = await opened(tmp_path / "s.db")
        results = await asyncio.gather(
            *(store.write(insert_one) for _ in range(20)), store.write(bad),
            *(store.write(insert_one) for _ in range(20)), return_exceptions=True)
        await store.close()
        return results
    results = run(main())
    assert sum(isinstance(r, ValueError) for r in results) == 1
    bodies = [r["body"] for r in Database(tmp_path / "s.db")["messages"].rows]
    assert len(bodies) == 40 and "from the failing write" not in bodies


def test_write_that_destroys_the_transaction_fails_alone(tmp_path: Path) -> None:
    """RAISE(ROLLBACK) ends the whole group's transaction: the others are redone."""
    def setup(db: Database) -> None:
        db.execute("create table t (x text)")
        db.execute("create trigger boom before insert on t when new.x = 'boom' "
                   "begin select raise(rollback, 'boom'); end")

    def put(x: str) -> Callable[[Database], None]:
        return lambda db: db.execute("insert into t values (?)", [x]) and None

    async def main() -> list[object]:
        store = await opened(tmp_path / "s.db")
        await store.write(setup)
        results = await asyncio.gather(*(store.write(put(str(i))) for i in range(10)),
                                       store.write(put("boom")),
                                       *(store.write(put(str(i))) for i in range(10, 20)),
                                       return_exceptions=True)
        results.append(await store.write(put("after")))  # the writer is still alive
        await store.close()
        return results
    results = run(main())
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and "boom" in str(errors[0])
    rows = {r["x"] for r in Database(tmp_path / "s.db")["t"].rows}
    assert rows == {str(i) for i in range(20)} | {"after"}


def test_duplicate_broker_message_id_is_not_stored_twice(tmp_path: Path) -> None:
    async def main() -> tuple[bool, bool, int, int]:
        store = await opened(tmp_path / "s.db")
        first = await store.write(lambda db: insert(db, NewMessage(
            direction="in", body="x", status="received", broker="twilio",
            broker_message_id="SM1")))
        again = await store.write(lambda db: insert(db, NewMessage(
            direction="in", body="x", status="received", broker="twilio",
            broker_message_id="SM1")))
        await store.close()
        return first[1] is not None, again[1] is not None, first[0].id, again[0].id
    created_first, created_again, id1, id2 = run(main())
    assert created_first and not created_again and id1 == id2
    db = Database(tmp_path / "s.db")
    assert db["messages"].count == 1 and db["message_events"].count == 1


def test_closed_store_refuses_work_and_close_commits_queued_writes(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path / "s.db")
        pending = [asyncio.ensure_future(store.write(insert_one)) for _ in range(100)]
        await asyncio.sleep(0)  # every write is queued before close
        await store.close()
        assert all(f.done() and not f.exception() for f in pending)
        with pytest.raises(StoreClosed):
            await store.write(insert_one)
        with pytest.raises(StoreClosed):
            await store.read(lambda db: 1)
    run(main())
    assert Database(tmp_path / "s.db")["messages"].count == 100


def test_purge_table_deletes_old_rows_in_batches(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, int], dict[str, int], int]:
        store = await opened(tmp_path / "s.db")
        await asyncio.gather(*(store.write(insert_one) for _ in range(25)))
        await store.write(lambda db: db.execute(
            "update messages set updated_at = '2000-01-01T00:00:00.000000Z' where id <= 23"))
        dry = await store.purge_table("messages", "updated_at", "2001-01-01", batch_size=5,
                                      pause=0, dry_run=True,
                                      children=[("message_events", "message_id")])
        before = store.stats.commits
        done = await store.purge_table("messages", "updated_at", "2001-01-01", batch_size=5,
                                       pause=0, children=[("message_events", "message_id")])
        commits = store.stats.commits - before
        await store.close()
        return dry, done, commits
    dry, done, commits = run(main())
    assert dry == {"messages": 23, "message_events": 23}
    assert done == {"messages": 23, "message_events": 23}
    assert commits == 5  # 5 + 5 + 5 + 5 + 3
    db = Database(tmp_path / "s.db")
    assert db["messages"].count == 2 and db["message_events"].count == 2


CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from host.config.settings import StoreSettings
    from host.ledger import NewMessage, insert
    from host.migrations import core
    from host.store import Store

    async def main():
        store = Store(Path(sys.argv[1]), StoreSettings(synchronous="FULL"))
        await store.open([core])
        print("ready", flush=True)

        async def writer(w):
            for i in range(1_000_000):
                new = NewMessage(direction="in", body=f"{{w}}-{{i}}", status="received",
                                 broker="kill", broker_message_id=f"{{w}}-{{i}}")
                message, _ = await store.write(lambda db: insert(db, new))
                sys.stdout.write(f"{{message.id}}\\n")
                sys.stdout.flush()
        await asyncio.gather(*(writer(w) for w in range(16)))

    asyncio.run(main())
""")


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """A child acknowledges ids as writes return; SIGKILL it; every acknowledged id is there."""
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    db_path = tmp_path / "kill.db"
    child = subprocess.Popen([sys.executable, str(script), str(db_path)],
                             stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while len(acked) < 3000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(int(line))
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
        acked += [int(x) for x in rest.split()]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 1000, "the child acknowledged too little before the kill"
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("select id from messages")}
    finally:
        conn.close()
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged ids lost, e.g. {sorted(missing)[:5]}"


def test_write_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    """BEGIN runs on the loop when the lock is free; when another connection (another
    process, say `smshost purge`) holds it, the writer waits for it off the loop."""
    async def main() -> tuple[int, bool]:
        store = await opened(tmp_path / "s.db")
        await store.write(insert_one)
        other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        other.execute("begin immediate")  # the write lock, held elsewhere
        pending = asyncio.ensure_future(store.write(insert_one))
        await asyncio.sleep(0.2)
        still_waiting = not pending.done()
        loop_alive = await asyncio.wait_for(asyncio.sleep(0, result=True), 1)  # not blocked
        other.execute("commit")
        other.close()
        new_id = await asyncio.wait_for(pending, 10)
        await store.close()
        return new_id, still_waiting and loop_alive
    new_id, waited = run(main())
    assert waited and new_id == 2


def _open_files(path: Path) -> int:
    """File descriptors of this process open on ``path`` (Linux /proc)."""
    fd_dir = Path("/proc/self/fd")
    found = 0
    for fd in fd_dir.iterdir():
        try:
            found += Path(fd.readlink()) == path
        except OSError:
            continue  # closed meanwhile
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_readers_do_not_pile_up_as_worker_threads_come_and_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """anyio retires worker threads idle for a while (10 s; 0.2 s here) and starts new
    ones for the next burst of reads: the store keeps no more connections open than
    reads that ran at once."""
    from anyio._backends._asyncio import WorkerThread
    monkeypatch.setattr(WorkerThread, "MAX_IDLE_TIME", 0.2)
    path = tmp_path / "s.db"

    def slow(db: Database) -> int:
        time.sleep(0.05)  # so the burst's reads overlap, each on its own thread
        return int(db.execute("select 1").fetchone()[0])

    async def main() -> list[int]:
        store = await opened(path)
        counts = []
        for _ in range(4):
            assert await asyncio.gather(*(store.read(slow) for _ in range(10))) == [1] * 10
            await asyncio.sleep(0.4)  # the burst's threads go idle past the limit
            await store.read(lambda db: 1)  # the next job retires them
            await store.read(lambda db: 1)
            counts.append(_open_files(path.resolve()))
        await store.close()
        counts.append(_open_files(path.resolve()))
        return counts
    counts = run(main())
    assert counts[-1] == 0
    assert max(counts[:-1]) <= 12, counts  # 10 readers + the writer (+ the loop reader)
    assert counts[0] == counts[3], counts


def test_closing_the_store_does_not_close_a_reader_under_a_read(tmp_path: Path) -> None:
    """close() during a read on a worker thread: the read finishes on its connection,
    which is closed when it ends. (close() used to close every reader at once, under a
    read still running: an error in the read, or a segmentation fault in SQLite when
    it was inside a statement, as CI saw with the sender's claim scan.)"""
    async def main() -> tuple[Any, list[Any]]:
        store = Store(tmp_path / "s.db")
        await store.open([core])

        def slow(db: Database) -> Any:
            time.sleep(0.3)  # close() runs meanwhile
            return db.execute("select 1").fetchone()

        read = asyncio.ensure_future(store.read(slow))
        await asyncio.sleep(0.1)
        await store.close()
        return await read, list(store.readers.conns)
    result, left = run(main())
    assert tuple(result) == (1,)
    assert left == []  # the lent reader was closed by its read
