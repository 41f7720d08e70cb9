"""Scheduled and manual purge: only old rows, in batches, days > 1, plugins included."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from functools import partial
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from host import hookimpl
from host.core import Host
from host.errors import ConfigError
from host.messages import NewMessage
from host.purge import Purger, next_run
from tests.conftest import base_config, run_cli

OLD = "2000-01-01T00:00:00.000000Z"
EMPTY = {"simulator_inbox": 0, "idempotency": 0, "orphan_receipts": 0, "mo_parts": 0,
         "conversation_state": 0, "handler_loads": 0, "callback_deliveries": 0}
"""Tables that are purged too, and are empty in these tests."""


async def seed(host: Host, old: int, new: int) -> None:
    for i in range(old + new):
        message, _ = await host.messages.add(NewMessage(direction="in", body=f"m{i}",
                                                        status="received"))
        await host.messages.set_status(message.id, "routed", source="test")
    await host.store.write(lambda db: db.execute(
        "update messages set created_at = ?, updated_at = ? where id <= ?", [OLD, OLD, old]))


def run(host: Host, fn: Any) -> Any:
    async def main() -> Any:
        async with host.running(background=False):
            return await fn()
    return asyncio.run(main())


def test_purge_deletes_only_old_rows_in_batches(host_factory: Any, tmp_path: Path) -> None:
    host = host_factory(smshost=base_config(tmp_path, extra="""
        [purge]
        days = 7
        batch_size = 4
        pause_ms = 0
        """))

    async def flow() -> tuple[dict[str, int], int, list[int]]:
        await seed(host, old=10, new=3)
        before = host.store.stats.commits
        counts = await host.purger.run()
        left = await host.store.read(lambda db: [r[0] for r in db.execute(
            "select id from messages order by id")])
        return counts, host.store.stats.commits - before, left
    counts, commits, left = run(host, flow)
    assert counts == {"messages": 10, "message_events": 20, **EMPTY}
    # 4 + 4 + 2 rows, and (SQLite's FTS5) the text index's merge of what was deleted
    # (the empty simulator inbox needs no commit)
    assert commits == (4 if host.store.dialect == "sqlite" else 3)
    assert left == [11, 12, 13]


def test_dry_run_counts_and_deletes_nothing(host: Host) -> None:
    async def flow() -> tuple[dict[str, int], int]:
        await seed(host, old=5, new=2)
        counts = await host.purger.run(30, dry_run=True)
        return counts, await host.store.read(lambda db: db.execute("select count(*) from messages").fetchone()[0])
    assert run(host, flow) == ({"messages": 5, "message_events": 10, **EMPTY}, 7)


@pytest.mark.parametrize("days", [1, 0])
def test_purge_refuses_one_day_or_less(host: Host, days: int) -> None:
    with pytest.raises(ConfigError, match="greater than 1"):
        run(host, lambda: host.purger.run(days))


@pytest.mark.sqlite_only  # its plugin makes its table outside the migrations: on PostgreSQL such a table has no id for the purge to walk (docs/plugins.md)
def test_plugin_tables_are_purged_through_the_hook(host: Host) -> None:
    class Cleaner:
        @hookimpl
        async def purge(self, host: Host, cutoff: str, batch_size: int,
                        dry_run: bool) -> dict[str, int]:
            return await host.store.purge_table("notes", "at", cutoff, batch_size=batch_size,
                                                pause=0, dry_run=dry_run)

        @hookimpl
        async def startup(self, host: Host) -> None:
            await host.store.write(lambda db: db.executescript(
                "create table notes (at text); insert into notes values ('1999-01-01'),"
                " ('2999-01-01');"))

    host.plugins.register(Cleaner(), "cleaner")
    counts = run(host, lambda: host.purger.run(2))
    assert counts == {"notes": 1, "messages": 0, "message_events": 0, **EMPTY}


def test_a_failing_plugin_purge_does_not_stop_the_core_purge(host: Host) -> None:
    class Broken:
        @hookimpl
        def purge(self) -> None:
            raise RuntimeError("plugin purge broke")

    host.plugins.register(Broken(), "broken")

    async def flow() -> dict[str, int]:
        await seed(host, old=2, new=1)
        return await host.purger.run(5)
    assert run(host, flow)["messages"] == 2
    assert host.plugins.hook_failures[-1].plugin == "broken"
    assert [f.plugin for f in host.purger.failures] == ["broken"]


def test_a_failing_messages_kept_keeps_every_message_after_many_hook_failures(
        host: Host) -> None:
    """A call reports its own failures: the bounded log of recent failures, full after
    50, once made a failing messages_kept read as "keep nothing"."""
    class Flaky:
        @hookimpl
        def message_stored(self) -> None:
            raise RuntimeError("flaky")

        @hookimpl
        def messages_kept(self) -> str:
            raise RuntimeError("cannot say which messages are open")

    host.plugins.register(Flaky(), "flaky")

    async def flow() -> tuple[dict[str, int], int]:
        await seed(host, old=60, new=0)  # 60 failures of message_stored
        assert len(host.plugins.hook_failures) == host.plugins.hook_failures.maxlen
        counts = await host.purger.run(2)
        return counts, await host.store.read(lambda db: db.execute("select count(*) from messages").fetchone()[0])
    counts, left = run(host, flow)
    assert left == 60 and "messages" not in counts


@pytest.mark.sqlite_only  # runs smshost purge in a subprocess, which stays on SQLite
def test_cli_purge_says_which_plugin_failed(tmp_path: Path, host_factory: Any) -> None:
    sinks = tmp_path / "plugins" / "sinks"  # base_config's plugin folder
    sinks.mkdir(parents=True)
    (sinks / "broken_purge.py").write_text(
        "from host import hookimpl\n\n\n@hookimpl\n"
        "def purge(cutoff):\n    raise RuntimeError('no purge today')\n")
    host = host_factory()
    run(host, lambda: seed(host, old=1, new=0))
    done = run_cli("purge", "--config", str(tmp_path / "config"))
    assert done.returncode == 1
    assert "messages: deleted 1" in done.stdout.splitlines()
    assert "error: plugin sink:broken_purge failed to purge: RuntimeError: no purge today" \
        in done.stderr


def test_a_cutoff_before_the_year_1000_deletes_nothing(host: Host) -> None:
    """The cutoff was formatted with strftime("%Y"): "996-..." for the year 996, which
    sorts after "2026-...", so every message was older than it (issue 11, second review:
    --older-than 400000 deleted messages minutes old). Here the clock says 1000."""
    host.purger = Purger(host.settings.purge, host.store, partial(host.hooks.purge, host),
                         clock=lambda: datetime(1000, 1, 1, tzinfo=UTC))

    async def flow() -> tuple[dict[str, int], dict[str, int], int]:
        await seed(host, old=0, new=3)
        counted = await host.purger.run(30, dry_run=True)
        counts = await host.purger.run(30)
        return counted, counts, await host.store.read(lambda db: db.execute("select count(*) from messages").fetchone()[0])
    counted, counts, left = run(host, flow)
    assert counted["messages"] == counts["messages"] == 0 and left == 3


@pytest.mark.parametrize("days", ["36501", "400000", "740000", "99999999999999999999"])
def test_cli_purge_refuses_an_age_beyond_a_hundred_years(tmp_path: Path, config_dir: Any,
                                                         days: str) -> None:
    """From 740000 days on the cutoff overflowed (OverflowError, a traceback)."""
    result = run_cli("purge", "--config", str(config_dir()), "--older-than", days)
    assert result.returncode == 2, result.stderr
    assert "--older-than" in result.stderr and "at most 36500" in result.stderr
    assert "Traceback" not in result.stderr


KEEP_FAILS = """
from host import hookimpl


@hookimpl
def messages_kept(host):
    raise RuntimeError("keep failed on purpose")
"""


@pytest.mark.sqlite_only  # runs smshost purge in a subprocess, which stays on SQLite
def test_cli_purge_says_why_messages_were_kept_and_fails(tmp_path: Path,
                                                       host_factory: Any) -> None:
    """A plugin that cannot say which messages it keeps keeps them all: the command
    said nothing of it and exited 0 (issue 11, second review)."""
    host = host_factory()
    run(host, lambda: seed(host, old=2, new=0))
    sinks = tmp_path / "plugins" / "sinks"  # base_config's plugin folder
    sinks.mkdir(parents=True)
    (sinks / "badkeep.py").write_text(KEEP_FAILS)
    for dry in ((), ("--dry-run",)):
        done = run_cli("purge", "--config", str(tmp_path / "config"), "--older-than", "2",
                       *dry)
        assert done.returncode == 1, done.stdout
        assert ("error: no message purged: plugin sink:badkeep failed to say which messages "
                "it keeps: RuntimeError: keep failed on purpose") in done.stderr.splitlines()
        assert "messages: none deleted: kept this time (see the error)" in done.stdout
        assert "idempotency: " in done.stdout  # the other tables are purged all the same
    conn = sqlite3.connect(tmp_path / "data" / "smshost.db")
    assert conn.execute("select count(*) from messages").fetchone()[0] == 2
    conn.close()


def test_a_failed_purge_shows_in_health_and_metrics(host: Host) -> None:
    """The scheduled purge failing every night showed nowhere but a log line."""
    from starlette.testclient import TestClient

    broken = [True]

    class Keeper:
        @hookimpl
        def messages_kept(self) -> str:
            if broken[0]:
                raise RuntimeError("cannot say")
            return ""

    host.plugins.register(Keeper(), "keeper")
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        assert client.portal is not None
        fresh = client.get("/health").json()
        client.portal.call(host.purger.run, 2)
        failed = client.get("/health").json()
        failed_metrics = client.get("/metrics").text
        broken[0] = False
        client.portal.call(host.purger.run, 2)
        ok = client.get("/health").json()
        ok_metrics = client.get("/metrics").text
    assert fresh["status"] == "ok" and fresh["purge"]["ok"]
    assert failed["status"] == "degraded" and not failed["purge"]["ok"]
    assert failed["purge"]["problems"] == [
        "no message purged: plugin keeper failed to say which messages it keeps: "
        "RuntimeError: cannot say"]
    assert 'smshost_purge_runs_total{outcome="failed"} 1.0' in failed_metrics
    assert "smshost_purge_last_success_timestamp_seconds 0.0" in failed_metrics
    assert ok["status"] == "ok" and ok["purge"]["last_success"] == ok["purge"]["last_run"]
    assert 'smshost_purge_runs_total{outcome="ok"} 1.0' in ok_metrics
    assert "smshost_purge_last_success_timestamp_seconds 0.0" not in ok_metrics


def test_next_run_is_the_next_time_of_day() -> None:
    now = datetime(2026, 11, 27, 2, 30).astimezone()
    assert next_run(now, "03:00") == now.replace(hour=3, minute=0)
    assert next_run(now, "02:30") == now.replace(hour=2, minute=30) + timedelta(days=1)
    assert next_run(now, "01:00") == now.replace(hour=1, minute=0) + timedelta(days=1)


@pytest.mark.sqlite_only  # runs smshost purge in a subprocess, which stays on SQLite
def test_cli_purge_prints_counts(tmp_path: Path, host_factory: Any) -> None:
    host = host_factory()

    async def flow() -> None:
        await seed(host, old=3, new=1)
    run(host, flow)
    cfg = tmp_path / "config"
    dry = run_cli("purge", "--config", str(cfg), "--older-than", "10", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "message_events: would delete 6" in dry.stdout.splitlines()
    assert "messages: would delete 3" in dry.stdout.splitlines()
    done = run_cli("purge", "--config", str(cfg))
    assert {"message_events: deleted 6", "messages: deleted 3",
            "idempotency: deleted 0"} <= set(done.stdout.splitlines())
    conn = sqlite3.connect(tmp_path / "data" / "smshost.db")
    assert conn.execute("select count(*) from messages").fetchone()[0] == 1
    conn.close()
    # its log says what it did, not that a server started and stopped
    database = tmp_path / "data" / "smshost.db"
    assert f"database {database} opened for this command" in done.stderr
    assert f"database {database} closed" in done.stderr
    assert " started (" not in done.stderr and "smshost stopped" not in done.stderr


def test_cli_purge_refuses_one_day(tmp_path: Path, config_dir: Any) -> None:
    cfg = config_dir()
    result = run_cli("purge", "--config", str(cfg), "--older-than", "1")
    assert result.returncode == 2
    assert "--older-than" in result.stderr and "greater than 1" in result.stderr


class Tracer:
    """Every statement run on the store's connections, with the thread that ran it."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    @hookimpl
    def prepare_connection(self, conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(lambda sql: self.seen.append((threading.get_ident(), sql)))


class Keeper:
    """Keeps the messages whose body starts with "open" (a queue would keep its SMS)."""

    @hookimpl
    def messages_kept(self) -> str:
        return "select id from messages where body like 'open%'"


@pytest.mark.sqlite_only  # traces statements with SQLite's trace hook
def test_purge_batches_read_old_rows_only_and_off_the_event_loop(
        host_factory: Any, tmp_path: Path) -> None:
    """Each batch walks messages_created from where the last one stopped: it reads at
    most batch_size old messages, never the kept ones again nor the new ones, and runs
    on the writer's thread (issue 11: the last batch scanned every kept row inside the
    transaction, on the event loop)."""
    host = host_factory(smshost=base_config(tmp_path, extra="""
        [purge]
        batch_size = 10
        pause_ms = 0
        """))
    tracer = Tracer()
    host.plugins.register(tracer, "tracer")
    host.plugins.register(Keeper(), "keeper")

    async def flow() -> tuple[dict[str, int], int, list[str], int]:
        await seed(host, old=25, new=40)
        await host.store.write(lambda db: db.execute(
            "update messages set body = 'open ' || body where id in (3, 12, 24)"))
        before = host.store.stats.commits
        tracer.seen.clear()
        counts = await host.purger.run(2)
        left = await host.store.read(lambda db: [r[0] for r in db.execute(
            "select body from messages where id <= 25")])
        return counts, host.store.stats.commits - before, left, threading.get_ident()
    counts, commits, left, loop = run(host, flow)
    assert counts["messages"] == 22 and counts["message_events"] == 44
    assert left == ["open m2", "open m11", "open m23"]
    # 10 + 10 + 5 old messages read (the 40 new ones never), and the text index's merge
    assert commits == 4
    purge = [(t, sql) for t, sql in tracer.seen if '"messages"' in sql]
    assert purge and all(t != loop for t, _ in purge)
    conn = sqlite3.connect(host.store.path)
    for _, sql in purge:
        plan = [r[3] for r in conn.execute(f"explain query plan {sql}")]
        assert not [line for line in plan if line.startswith("SCAN messages")
                    or "TEMP B-TREE" in line], (sql, plan)
    conn.close()


@pytest.mark.sqlite_only  # SQLite's incremental vacuum (PostgreSQL's autovacuum does it)
def test_purge_gives_the_freed_space_back(host_factory: Any, tmp_path: Path) -> None:
    host = host_factory(smshost=base_config(tmp_path, extra="""
        [purge]
        batch_size = 200
        pause_ms = 0
        """))

    async def flow() -> tuple[int, int]:
        await host.store.write(lambda db: db.execute(
            "insert into messages (direction, body, status, created_at, updated_at) "
            "select 'in', printf('%.2000c', 'x'), 'routed', ?, ? from (with recursive "
            "n(i) as (select 1 union all select i + 1 from n where i < 1500) "
            "select i from n)", [OLD, OLD]))
        await host.messages.add(NewMessage(direction="in", body="new", status="received"))
        pages = await host.store.read(lambda db: db.execute("pragma page_count").fetchone()[0])
        await host.purger.run(2)
        return pages, await host.store.read(lambda db: db.execute("select count(*) from messages").fetchone()[0])
    pages, left = run(host, flow)
    conn = sqlite3.connect(host.store.path)
    after, free = (conn.execute(f"pragma {p}").fetchone()[0]
                   for p in ("page_count", "freelist_count"))
    mode = conn.execute("pragma auto_vacuum").fetchone()[0]
    conn.close()
    assert left == 1 and mode == 2  # a new database is in incremental vacuum mode
    assert free == 0 and after < pages // 4, (pages, after)
    assert host.store.path.stat().st_size <= after * 4096
