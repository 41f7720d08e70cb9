"""``smshost backup DEST`` (host/backup.py, SPEC P10): an online, consistent copy of the
SQLite database beside a running server, written whole or not at all."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from host import backup
from host.backup import BackupError, backup_file, pg_dump_command
from tests.conftest import free_port, run_cli
from tests.nodes import node_config, post_mo, start_node
from tests.test_server import Server

MAX_POSTS = 20_000  # the sender's bound; it stops well before at the test's signal


class Sender:
    """Posts MO webhooks from a thread until stopped; ``acked`` maps each id answered
    200 to the monotonic time of its answer."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.acked: dict[str, float] = {}
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx2.Client(trust_env=False, timeout=10) as client:
            for n in range(MAX_POSTS):
                if self.stop.is_set():
                    return
                response = post_mo(client, self.base, f"m{n}")
                if response.status_code != 200:
                    self.failures.append(f"{n}: {response.status_code} {response.text}")
                    return
                self.acked[f"m{n}"] = time.monotonic()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Server, Path, int]]:
    port = free_port()
    server = start_node(tmp_path / "a", port)
    try:
        yield server, tmp_path / "a" / "config", port
    finally:
        server.stop()


def ids_in(path: Path) -> set[str]:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        assert db.execute("pragma integrity_check").fetchall() == [("ok",)]
        return {row[0] for row in db.execute("select broker_message_id from messages")}


def test_backup_beside_a_busy_server_holds_every_acknowledged_message(
        node: tuple[Server, Path, int], tmp_path: Path) -> None:
    _, cfg, port = node
    sender = Sender(f"http://127.0.0.1:{port}")
    sender.thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(sender.acked) < 200 and time.monotonic() < deadline and not sender.failures:
            time.sleep(0.05)
        began = time.monotonic()
        done = run_cli("backup", "--config", str(cfg), str(tmp_path / "copy.db"))
        during = len(sender.acked)
        time.sleep(0.2)  # the server keeps taking messages after the copy, too
    finally:
        sender.stop.set()
        sender.thread.join(timeout=15)
    assert not sender.failures, sender.failures
    assert done.returncode == 0, done.stderr
    before = {mo for mo, at in sender.acked.items() if at < began}
    assert len(before) >= 200
    copied = ids_in(tmp_path / "copy.db")
    assert before <= copied  # every message acknowledged before the backup began
    assert copied <= set(sender.acked) | {f"m{len(sender.acked)}"}  # nothing invented
    assert len(sender.acked) > during or len(sender.acked) == MAX_POSTS  # writes went on
    assert done.stdout.startswith(f"{tmp_path / 'copy.db'}: {len(copied)} messages, ")
    assert "checked" in done.stdout
    assert not (tmp_path / "copy.db.tmp").exists()
    assert not (tmp_path / "copy.db-wal").exists()  # a single file: no -wal goes with it


def test_an_existing_copy_is_replaced_only_with_force(
        node: tuple[Server, Path, int], tmp_path: Path) -> None:
    _, cfg, port = node
    dest = tmp_path / "copy.db"
    dest.write_text("an older copy")
    refused = run_cli("backup", "--config", str(cfg), str(dest))
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"error: {dest} exists: --force replaces it"
    assert dest.read_text() == "an older copy"
    with httpx2.Client(trust_env=False, timeout=10) as client:
        assert post_mo(client, f"http://127.0.0.1:{port}", "kept").status_code == 200
    forced = run_cli("backup", "--force", "--config", str(cfg), str(dest))
    assert forced.returncode == 0, forced.stderr
    assert ids_in(dest) == {"kept"}


def test_errors_are_said_and_leave_nothing(tmp_path: Path) -> None:
    cfg = node_config(tmp_path / "n", free_port())
    no_db = run_cli("backup", "--config", str(cfg), str(tmp_path / "copy.db"))
    assert no_db.returncode == 1
    assert no_db.stderr.startswith(f"error: no database at {tmp_path / 'n' / 'data'}")
    (tmp_path / "n" / "data").mkdir()
    sqlite3.connect(tmp_path / "n" / "data" / "smshost.db").close()
    missing = run_cli("backup", "--config", str(cfg), str(tmp_path / "nowhere" / "copy.db"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: the directory {tmp_path / 'nowhere'} does not exist"
    folder = run_cli("backup", "--config", str(cfg), str(tmp_path))
    assert folder.returncode == 1 and "is a directory" in folder.stderr
    itself = run_cli("backup", "--config", str(cfg), str(tmp_path / "n" / "data" / "smshost.db"))
    assert itself.returncode == 1 and "is the database itself" in itself.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n"]  # no copy, no .tmp


def test_a_full_disk_is_said_and_leaves_no_partial_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own SQLITE_FULL, as a full disk gives it: the copy's size is capped."""
    source = tmp_path / "smshost.db"
    with sqlite3.connect(source) as db:
        db.execute("create table messages (id integer primary key, body text)")
        db.executemany("insert into messages (body) values (?)", [("x" * 500,)] * 2000)
    opened = backup._open_copy

    def capped(tmp: Path) -> sqlite3.Connection:
        conn = opened(tmp)
        conn.execute("pragma max_page_count = 20")
        return conn

    monkeypatch.setattr(backup, "_open_copy", capped)
    with pytest.raises(BackupError, match=r"^disk full: no space left for .*copy\.db "
                       r"\(the copy needs about 2 MB\); nothing was written$"):
        backup_file(source, tmp_path / "copy.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smshost.db"]


def test_a_stale_tmp_file_is_replaced_and_the_copy_is_checked(tmp_path: Path) -> None:
    source = tmp_path / "smshost.db"
    with sqlite3.connect(source) as db:
        db.execute("create table messages (id integer primary key, broker_message_id text)")
        db.executemany("insert into messages (broker_message_id) values (?)",
                       [(f"m{n}",) for n in range(3000)])
    (tmp_path / "copy.db.tmp").write_text("half a copy from a backup that died")
    done = backup_file(source, tmp_path / "copy.db", pages=1, sleep=0)
    assert (done.messages, done.size) == (3000, (tmp_path / "copy.db").stat().st_size)
    assert len(ids_in(tmp_path / "copy.db")) == 3000
    assert not (tmp_path / "copy.db.tmp").exists()


def test_a_postgresql_store_is_pointed_at_pg_dump_password_masked() -> None:
    command = pg_dump_command("postgresql://sms:s3cret@db.example.com:5433/smshost",
                              Path("/backups/smshost.pgdump"))
    assert command == ("PGPASSWORD=**** pg_dump --format=custom "
                       "--file=/backups/smshost.pgdump --host=db.example.com --port=5433 "
                       "--username=sms smshost")
    assert "s3cret" not in command


def test_the_command_on_a_postgresql_store_prints_pg_dump(tmp_path: Path) -> None:
    """``[store] url`` (the PostgreSQL store) turns ``smshost backup`` into the pg_dump
    command, the password masked, and exit 1 (nothing was copied); SQLite gives none."""
    from host.config import load_settings

    cfg = node_config(tmp_path / "n", free_port())
    assert backup._postgres_hint(load_settings(cfg), tmp_path / "x") is None
    with (cfg / "smshost.toml").open("a") as toml:
        toml.write('\n[store]\nurl = { env = "SMSHOST_TEST_BACKUP_DB" }\n')
    done = run_cli("backup", "--config", str(cfg), str(tmp_path / "x"),
                   env={"SMSHOST_TEST_BACKUP_DB": "postgresql://u:pw@db/sms"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"PGPASSWORD=**** pg_dump --format=custom --file={tmp_path / 'x'} " \
        "--host=db --username=u sms" in done.stdout + done.stderr
    assert "pw" not in (done.stdout + done.stderr).replace("PGPASSWORD", "")
