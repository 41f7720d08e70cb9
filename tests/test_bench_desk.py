"""bench/desk.py at a tiny size: a real server, agents, texters, both scenarios; its checks
pass on a correct run and catch an interaction offered twice."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import desk  # noqa: E402
import desk_checks  # noqa: E402

TINY = ["--agents", "3", "--texters", "12", "--capacity", "4", "--concurrency", "4",
        "--no-pin", "--drain-timeout", "60"]


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_a_tiny_run_offers_and_accepts_every_interaction_once(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "bench/desk.py", *TINY, "--port", free_port(),
                           "--dir", str(tmp_path), "--keep"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("checks: all ok") == 2
    assert "interactions 12 {'offered': 12}" in done.stdout
    assert "interactions 12 {'connected': 12}" in done.stdout
    # the checks can fail: a second offer of one interaction is caught
    (db,) = tmp_path.glob("smshost-desk-*/offer/data/smshost.db")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("insert into queue_offers (interaction_id, agent, offered_at, deadline) "
                     "select interaction_id, agent, offered_at, deadline from queue_offers "
                     "limit 1")
    conn.close()
    args = desk.parse_args(TINY)
    args.scenario = "offer"
    checks = desk_checks.analyse(db, args)["checks"]
    assert [name for name, ok in checks.items() if not ok] == ["offered exactly once"]


def test_agents_without_room_for_every_texter_are_refused() -> None:
    with pytest.raises(SystemExit):
        desk.parse_args(["--agents", "2", "--capacity", "3", "--texters", "7"])
