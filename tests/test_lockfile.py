"""One server per data directory, and no VACUUM beside it (host/lockfile.py).

Issue 11, second review: ``smshost vacuum`` ran while a server used the same data
directory (its writes would wait for the whole VACUUM, then fail), and every SQLite
error it met was followed by "(is the server running? stop it first)".
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.conftest import ROOT, SMSHOST, base_config, free_port, run_cli, write_lock

REFUSED = "another smshost process holds the data directory"


@pytest.fixture
def config(tmp_path: Path, config_dir: Callable[..., Path]) -> Path:
    return config_dir(smshost=base_config(tmp_path, port=free_port(), extra="""
        [store]
        busy_timeout_ms = 200
        """))


@pytest.fixture
def serving(config: Path) -> Iterator[Host]:
    """A server (a host running its background work) in this process."""
    host = Host(load_settings(config), config_dir=config)
    with TestClient(host.app_for()):
        yield host


@pytest.mark.sqlite_only  # `smshost vacuum` VACUUMs the SQLite file
def test_vacuum_refuses_while_a_server_runs(serving: Host, config: Path) -> None:
    done = run_cli("vacuum", "--config", str(config))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: {REFUSED} {serving.data_dir} (pid {os.getpid()}, serve): stop the server first "
        "(VACUUM holds the database's write lock throughout)")


def test_a_second_server_refuses_the_data_directory(serving: Host, config: Path) -> None:
    """It would take the first one's sends in flight for a crash's and send them again."""
    done = run_cli("serve", "--config", str(config), timeout=30)
    assert done.returncode == 1
    assert f"error: {REFUSED} {serving.data_dir}" in done.stderr
    assert " started (" not in done.stderr


def test_a_server_killed_leaves_no_lock_behind(config: Path) -> None:
    """The kernel drops the lock with the process, kill -9 included: the file left
    behind blocks nothing."""
    port = load_settings(config).api_listener.port
    server = subprocess.Popen([*SMSHOST, "serve", "--config", str(config)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code:
                    break
            except httpx2.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("the server did not start")
        held = run_cli("vacuum", "--config", str(config))
        assert held.returncode == 1 and REFUSED in held.stderr
    finally:
        server.send_signal(signal.SIGKILL)
        server.communicate(timeout=10)
    assert (config.parent / "data" / "smshost.lock").exists()
    done = run_cli("vacuum", "--config", str(config))
    assert done.returncode == 0, done.stderr


@pytest.mark.sqlite_only  # the SQLite file's lock and a file that is no database
def test_vacuum_says_who_holds_a_busy_database_and_nothing_of_the_kind_otherwise(
        config: Path) -> None:
    host = Host(load_settings(config), config_dir=config)
    with TestClient(host.app_for()):
        pass  # a database made, the server gone
    path = host.store.path
    with write_lock(path):  # another process writing (a `smshost purge`)
        busy = run_cli("vacuum", "--config", str(config))
    assert busy.returncode == 1
    assert "database is locked" in busy.stderr
    assert "another process holds the database: a `smshost purge`" in busy.stderr
    path.write_bytes(b"this is not a database" * 300)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    broken = run_cli("vacuum", "--config", str(config))
    assert broken.returncode == 1 and "file is not a database" in broken.stderr
    assert "another process" not in broken.stderr and "running" not in broken.stderr
