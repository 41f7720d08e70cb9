"""A database that refuses writes (SPEC P12): every write path answers 503 with the reason,
/health reports the failing write path (503) and comes back by itself, nothing accepted
is lost; a data directory that cannot be written stops the start, in words.

How the disk fills up, for real and without root:

* in process, ``pragma max_page_count`` on the writer's connection caps the database at
  its current size: SQLite then refuses a write that needs a new page with SQLITE_FULL,
  "database or disk is full", the very error (code and text) a full disk gives, through
  the same statements and commits. Space comes back the way it does on a disk: another
  process deletes something (a ballast table, here) and its pages are free again;
* under ``smshost serve``, the server process gets a file-size limit (RLIMIT_FSIZE, set
  and lifted from outside with prlimit; SIGXFSZ ignored): the kernel refuses every
  write to the database files (EFBIG, which SQLite reports as a disk I/O error);
* a read-only data directory is a directory the server may not write (mode 0555); as
  root, the server runs without the capabilities that let root write anyway.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from host.errors import StoreUnavailable
from host.ledger import NewMessage, insert
from host.migrations import core
from host.store import Store
from host.writepath import IDLE_PROBE_AFTER, PROBE_EVERY
from tests.brokers.conftest import PUBLIC_URL, broker_config
from tests.conftest import ROOT, free_port, read_apart, write_lock
from tests.test_fastpath import Live, make_host, mo_body, webhook

PHONE = "+14155550123"
GENERIC = """
[[brokers]]
name = "gen"
definition = "generic"

[[brokers.accounts]]
id = "main"
login = "acme"
password = "bearer-secret"
local_address = "+14155550100"
"""
NO_SENDING = "\n[outbox]\nenabled = false\n"
MAX_SENDS = 300  # the capped database is full long before this many messages


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[TestClient, Host]]:
    cfg = broker_config(tmp_path, GENERIC, extra=NO_SENDING)
    host = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(host.app_for(), base_url=PUBLIC_URL, raise_server_exceptions=False,
                    headers={"Authorization": "Bearer test-token"}) as client:
        yield client, host


@contextmanager
def database(host: Host) -> Iterator[sqlite3.Connection]:
    """Another connection to the node's database: another process on the same disk."""
    conn = sqlite3.connect(host.store.path, isolation_level=None, timeout=5)
    try:
        yield conn
    finally:
        conn.close()


def locked_words(host: Host) -> str:
    """What the database says when another process held its write lock too long."""
    return "database is locked" if host.store.dialect == "sqlite" else "lock timeout"


def fill_the_disk(client: TestClient, host: Host) -> None:
    """From now on the database cannot grow: SQLITE_FULL for any write needing a page."""
    assert client.portal is not None
    client.portal.call(host.store.write,
                       lambda db: db.execute("pragma max_page_count = 1").fetchall())


def send(client: TestClient, n: int, **headers: str) -> Any:
    return client.post("/api/messages", headers=headers,
                       json={"to": PHONE, "text": f"message {n}: " + "x" * 120})


def send_until_refused(client: TestClient) -> tuple[list[int], Any]:
    """Send until the database refuses one; the ids answered 201, and the refusal."""
    accepted = []
    for n in range(MAX_SENDS):
        answer = send(client, n)
        if answer.status_code != 201:
            return accepted, answer
        accepted.append(answer.json()["id"])
    pytest.fail(f"{MAX_SENDS} sends and the database never filled up")


def stored_ids(host: Host) -> list[int]:
    return read_apart(host, lambda db: [r[0] for r in db.execute(
        "select id from messages order by id")])


def test_a_full_disk_is_503_on_every_write_path_and_nothing_accepted_is_lost(
        node: tuple[TestClient, Host], caplog: pytest.LogCaptureFixture) -> None:
    client, host = node
    fill_the_disk(client, host)
    accepted, refused = send_until_refused(client)

    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "5"
    assert refused.json()["error"] == "unavailable"
    assert "database or disk is full" in refused.json()["message"]
    keyed = send(client, 999, **{"Idempotency-Key": "order-1"})
    caplog.clear()
    mo = client.post("/generic/mo", json={"id": "g1", "from": PHONE, "text": "hello"})
    assert (keyed.status_code, mo.status_code) == (503, 503), (keyed.text, mo.text)
    assert mo.headers["retry-after"] == "5"
    # (refused by a statement, or at the commit: the text index writes its pages then)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "smshost.brokers"]
    assert line.replace("commit failed", "the database refused the write") == (
        "broker gen mo refused (503), not stored: the database refused the write: "
        "database or disk is full (the disk or the database's size limit is full); "
        "answered 503 until the database takes writes again (while it fails, logged at "
        "most once a minute)")
    # Every message answered 201 is stored, and nothing else.
    assert stored_ids(host) == accepted and accepted

    # A short line for the spell: no traceback, nothing logged as unexpected.
    refusals = [r for r in caplog.records if "database or disk is full" in r.getMessage()]
    assert refusals and not any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)
    assert "unhandled error" not in caplog.text

    with database(host) as conn:  # space comes back: another process deletes something
        conn.execute("delete from messages")
    again = send(client, 999, **{"Idempotency-Key": "order-1"})
    assert again.status_code == 201 and again.json()["replayed"] is False, again.text
    retried = client.post("/generic/mo", json={"id": "g1", "from": PHONE, "text": "hello"})
    assert retried.status_code == 200, retried.text


def _count(client: TestClient, sample: str) -> float:
    """The value of a /metrics sample, e.g. ``smshost_http_requests_total{...}``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def test_refused_requests_log_one_line_per_spell_and_count_each(
        node: tuple[TestClient, Host], caplog: pytest.LogCaptureFixture) -> None:
    """Second review of issue 11: at a full disk each refused request wrote an ERROR
    line (~700 a second from unauthenticated webhooks). Each kind of request (the API,
    a broker's MO path) now logs a line when its spell starts, then at most one a
    minute saying how many there were, then one when writes go through again; the
    request metrics still count every refusal."""
    client, host = node
    clock = FakeClock()
    host.refusals.clock = clock
    fill_the_disk(client, host)
    caplog.clear()
    send_until_refused(client)  # the API's spell starts here
    for n in range(40):
        assert send(client, n).status_code == 503
        # a text that needs new pages (a short one may fit in what the sends left free)
        mo = client.post("/generic/mo", json={"id": f"g{n}", "from": PHONE,
                                              "text": "hi " + "x" * 5000})
        assert mo.status_code == 503
    clock.now += 61  # a minute later, the next refusal of each says how many there were
    assert send(client, 41).status_code == 503
    assert client.post("/generic/mo", json={"id": "g41", "from": PHONE,
                                            "text": "x" * 5000}).status_code == 503
    with database(host) as conn:  # space comes back: another process deletes something
        conn.execute("delete from messages")
    assert send(client, 42).status_code == 201
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records
             if r.name in ("smshost.web", "smshost.brokers")]
    api = [(level, m) for name, level, m in lines if m.startswith("API requests ")]
    mos = [(level, m) for name, level, m in lines if m.startswith("broker gen mo ")]
    assert [level for level, _ in api] == ["ERROR", "ERROR", "WARNING"], api
    assert api[0][1].replace("commit failed", "the database refused the write").startswith(
        "API requests refused (503), not stored (POST /api/messages): the database refused "
        "the write: database or disk is full")
    assert api[1][1].startswith("API requests still failing: 41 time(s) since the last "
                                "line, now (POST /api/messages): ")
    assert api[2][1] == "API requests recovered after 61 s and 42 failure(s)"
    assert [level for level, _ in mos] == ["ERROR", "ERROR", "WARNING"], mos
    assert mos[1][1].startswith("broker gen mo still failing: 40 time(s) since the last line")
    assert len(lines) == 6, lines
    assert _count(client, 'smshost_http_requests_total{listener="admin",method="POST",'
                  'route="send_message",status="503"}') >= 42
    assert _count(client, 'smshost_broker_webhooks_total{broker="gen",kind="mo",'
                  'outcome="503"}') == 41


def test_health_is_503_while_writes_fail_and_recovers_by_itself(
        node: tuple[TestClient, Host]) -> None:
    client, host = node
    clock = FakeClock()
    host.store.writes.clock = clock
    with database(host) as conn:  # a big file on the same disk
        conn.execute("create table ballast (pad blob)")
        conn.execute("insert into ballast values (zeroblob(262144))")
    assert client.get("/health").status_code == 200
    fill_the_disk(client, host)
    send_until_refused(client)

    answer = client.get("/health")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "degraded"
    writes = body["database"]["writes"]
    assert (body["database"]["ok"], body["database"]["readable"], writes["ok"]) == (
        False, True, False)
    assert writes["error"] == "database or disk is full" and writes["failing_since"]

    clock.now += PROBE_EVERY  # a probe is due: it fails, the disk is still full
    answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["database"]["writes"]["last_failure"] > writes["last_failure"]

    with database(host) as conn:  # the operator deletes the big file
        conn.execute("drop table ballast")
    assert client.get("/health").status_code == 503  # no probe before PROBE_EVERY
    clock.now += PROBE_EVERY  # no write at all meanwhile: the probe notices
    answer = client.get("/health")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["status"] == "ok"
    assert answer.json()["database"]["writes"]["failing_since"] is None
    assert send(client, 1000).status_code == 201


def test_an_idle_node_whose_disk_filled_up_is_taken_out(node: tuple[TestClient, Host]) -> None:
    client, host = node
    clock = FakeClock()
    host.store.writes.clock = clock
    fill_the_disk(client, host)  # (a write: the path is fine so far)
    with database(host) as conn:  # another process takes the space that was left
        conn.execute("pragma max_page_count = 1")
        conn.execute("create table filler (pad blob)")
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for _ in range(10_000):
                conn.execute("insert into filler values (zeroblob(1000))")
    assert client.get("/health").status_code == 200  # nothing tried to write yet
    clock.now += IDLE_PROBE_AFTER
    answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["database"]["writes"]["error"] == "database or disk is full"


def test_a_refused_group_fails_with_store_unavailable_and_the_writer_goes_on(
        tmp_path: Path) -> None:
    """Writes the database refuses fail their whole group at once, each caller with
    StoreUnavailable (never a bare sqlite3 error); the writer survives and later writes
    commit."""
    def insert_one(db: Any) -> int:
        message, _ = insert(db, NewMessage(direction="in", body="x" * 2000,
                                            status="received"))
        return message.id

    async def main() -> tuple[list[object], int]:
        store = Store(tmp_path / "s.db")
        await store.open([core])
        await store.write(lambda db: db.execute("pragma max_page_count = 1").fetchall())
        results = await asyncio.gather(*(store.write(insert_one) for _ in range(50)),
                                       return_exceptions=True)
        await store.write(lambda db: db.execute(
            "pragma max_page_count = 1000000").fetchall())
        after = await store.write(insert_one)
        await store.close()
        return results, after
    results, after = asyncio.run(main())
    refused = [r for r in results if isinstance(r, Exception)]
    assert refused and all(isinstance(r, StoreUnavailable) and r.kind == "full"
                           for r in refused), refused
    with sqlite3.connect(tmp_path / "s.db") as conn:
        ids = [r[0] for r in conn.execute("select id from messages order by id")]
    assert ids == sorted([r for r in results if isinstance(r, int)] + [after])


LOCKED = "\n[store]\nbusy_timeout_ms = 50\n"
SIMULATOR = """
[[brokers]]
name = "sim"
definition = "simulator"

[[brokers.accounts]]
id = "default"
local_address = "+15550100"
"""


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "asgi"])
def test_a_webhook_the_database_refuses_says_when_to_retry_in_one_log_line(
        tmp_path: Path, fast: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Both ways a webhook is answered carry the Retry-After the docs promise for every
    503 of a refusing database (it had none), and the refusal is logged in one line
    (it was two: 'MO not stored' and 'refused')."""
    with Live(make_host(tmp_path, fast=fast, extra=LOCKED)) as server:
        with write_lock(server.host.store):
            conn = server.connect()
            caplog.clear()
            conn.send(webhook(mo_body(1)))
            answer = conn.response()
    assert (answer.status, answer.headers["retry-after"]) == (503, "5")
    # the refusal in one line; a "recovered" line may follow once the lock is gone and
    # a background write of the server succeeds (under load it sometimes does in time)
    lines = [r.getMessage() for r in caplog.records if r.name == "smshost.brokers"
             and " recovered after " not in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(
        "broker gen mo refused (503), not stored: "), lines
    assert locked_words(server.host) in lines[0]


def test_the_simulator_s_refused_mo_says_when_to_retry(tmp_path: Path) -> None:
    cfg = broker_config(tmp_path, SIMULATOR, extra=LOCKED + NO_SENDING)
    host = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(host.app_for(), base_url=PUBLIC_URL,
                    headers={"Authorization": "Bearer test-token"}) as client:
        with write_lock(host.store):
            answer = client.post("/api/simulator/mo", json={"from": PHONE, "text": "hi"})
    assert (answer.status_code, answer.headers.get("retry-after")) == (503, "5"), answer.text
    assert answer.json()["error"] == "refused"
CONCAT_WAIT = 2.0  # seconds a long MO waits for its missing parts, here


SPELLS = (("smshost.sender", "sending"), ("smshost", "the sweep of long MOs"))


def _records(caplog: pytest.LogCaptureFixture, name: str, level: str, what: str) -> list[str]:
    """The lines ``name`` logged at ``level`` about ``what``."""
    return [r.getMessage() for r in caplog.records if r.name == name
            and r.levelname == level and r.getMessage().startswith(f"{what} ")]


def test_background_loops_log_a_refusing_database_once_per_spell(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the database's write lock: every write is refused after
    busy_timeout. The sender looks for due messages at every round, and the sweep of
    long MOs meets a message whose second part never came: both fail at every round.
    Each says so in one line when it starts failing and in one when it recovers, without
    a traceback (the review counted 16 tracebacks in 45 s)."""
    monkeypatch.setattr("host.core.CONCAT_SWEEP_SECONDS", 0.05)
    brokers = GENERIC.replace('definition = "generic"\n', 'definition = "generic"\n'
                              f"mo.concat_timeout = {CONCAT_WAIT}\n")
    cfg = broker_config(tmp_path, brokers, extra=LOCKED)
    host = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(host.app_for(), base_url=PUBLIC_URL) as client:
        part = client.post("/generic/mo", json={
            "id": "p1", "from": PHONE, "text": "the first half", "concat_ref": "7",
            "concat_total": 2, "concat_part": 1})
        assert part.status_code == 200, part.text
        with write_lock(host.store):  # until the part is due, and a while after
            until = time.monotonic() + CONCAT_WAIT + 1.0
            while time.monotonic() < until:  # the sender looks again at every wake
                assert client.portal is not None
                client.portal.call(host.sender.wake)
                time.sleep(0.1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
                _records(caplog, name, "WARNING", what) for name, what in SPELLS):
            time.sleep(0.05)
        bodies = read_apart(host, lambda db: [r[0] for r in db.execute(
            "select body from messages")])
    assert bodies == ["the first half[...]"]  # delivered, incomplete, once it could write
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    for name, what in SPELLS:
        failed = _records(caplog, name, "ERROR", what)
        recovered = _records(caplog, name, "WARNING", what)
        assert len(failed) == 1 and failed[0].startswith(f"{what} failed"), caplog.text
        assert locked_words(host) in failed[0]
        assert len(recovered) == 1 and recovered[0].startswith(f"{what} recovered after ")


# -- under `smshost serve` ----------------------------------------------------------------

START_TIMEOUT = 20.0
RECOVER_TIMEOUT = 20.0  # several probe intervals, real time: this is a real server


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("SMSHOST_CONFIG", None)
    return env


class Serving:
    """``smshost serve`` with SIGXFSZ ignored; its log read from a pipe by a thread (a
    log file would meet the file-size limit too)."""

    def __init__(self, tmp_path: Path, cfg: Path, preexec: Any = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host", "serve", "--config", str(cfg)], cwd=tmp_path,
            env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, preexec_fn=preexec)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, url: str, status: int, timeout: float) -> httpx2.Response:
        deadline = time.monotonic() + timeout
        with httpx2.Client(trust_env=False, timeout=3.0) as http:
            for _ in range(int(timeout / 0.2) + 1):
                if self.proc.poll() is not None:
                    pytest.fail(f"server exited with {self.proc.returncode}:\n{self.output}")
                try:
                    answer = http.get(url)
                    if answer.status_code == status:
                        return answer
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        pytest.fail(f"{url} did not answer {status} within {timeout} s:\n{self.output}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec: EFBIG, not death


def _limit_file_size(pid: int, size: int) -> None:
    hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, hard))


@pytest.mark.slow
def test_serve_answers_503_while_the_disk_refuses_writes_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    cfg = broker_config(tmp_path, GENERIC, port=port, extra=NO_SENDING)
    server = Serving(tmp_path, cfg, preexec=_ignore_sigxfsz)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer test-token"}
    message = {"to": PHONE, "text": "hello"}
    try:
        server.wait_for(f"{base}/health", 200, START_TIMEOUT)
        with httpx2.Client(base_url=base, trust_env=False, timeout=5.0) as http:
            first = http.post("/api/messages", json=message, headers=auth)
            assert first.status_code == 201, first.text
            _limit_file_size(server.proc.pid, 1)  # the disk refuses every write from now on

            refused = http.post("/api/messages", json=message, headers=auth)
            mo = http.post("/generic/mo", json={"id": "g1", "from": PHONE, "text": "hi"})
            assert (refused.status_code, mo.status_code) == (503, 503), (
                refused.text, mo.text, server.output)
            assert "disk I/O error" in refused.json()["message"]
            health = http.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            assert "disk I/O error" in health.json()["database"]["writes"]["error"]

            _limit_file_size(server.proc.pid, resource.RLIM_INFINITY)  # space returns
            # No traffic but /health: its probe brings the node back.
            server.wait_for(f"{base}/health", 200, RECOVER_TIMEOUT)
            again = http.post("/api/messages", json=message, headers=auth)
            retried = http.post("/generic/mo", json={"id": "g1", "from": PHONE, "text": "hi"})
            assert (again.status_code, retried.status_code) == (201, 200), server.output
    finally:
        server.stop()
    assert "Traceback" not in server.output, server.output
    with sqlite3.connect(tmp_path / "data" / "smshost.db") as conn:
        rows = conn.execute("select id, direction from messages order by id").fetchall()
    assert rows == [(first.json()["id"], "out"), (again.json()["id"], "out"),
                    (again.json()["id"] + 1, "in")]


# -- a data directory that cannot be written -----------------------------------------------

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _without_root_overrides() -> None:
    """As root: drop the capabilities that let root write where the mode says no (from
    the bounding set, so the server exec'd next never has them)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _can_drop_root_overrides() -> bool:
    try:
        subprocess.run(["true"], preexec_fn=_without_root_overrides, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _serve_once(tmp_path: Path, cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host", "serve", "--config", str(cfg)], cwd=tmp_path,
        env=_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        preexec_fn=_without_root_overrides)


@pytest.mark.slow
@pytest.mark.sqlite_only  # the SQLite file's and its directory's permissions
@pytest.mark.parametrize(("what", "says"), [
    ("directory", "the data directory {data} cannot be written (Permission denied)"),
    ("database file", "the database {data}/smshost.db cannot be written"),
    ("database of an older version", "the database {data}/smshost.db cannot be written"),
    ("database not in WAL mode", "cannot open the database {data}/smshost.db"),
])
def test_a_read_only_data_directory_stops_the_start_in_words(
        tmp_path: Path, what: str, says: str) -> None:
    if not _can_drop_root_overrides():
        pytest.skip("running as root without CAP_SETPCAP: root writes whatever the mode")
    cfg = broker_config(tmp_path, GENERIC, port=free_port(), extra=NO_SENDING)
    data = tmp_path / "data"
    data.mkdir()
    if what == "directory":
        data.chmod(0o555)
    elif what == "database file":  # one an earlier run left, now read-only
        _prepare_database(cfg)
        (data / "smshost.db").chmod(0o444)
    else:  # read-only, with migrations still to apply (and WAL mode still to set)
        with closing(sqlite3.connect(data / "smshost.db")) as conn:
            if what == "database of an older version":
                conn.execute("pragma journal_mode = wal")
            conn.execute("create table before_smshost (x)")
        (data / "smshost.db").chmod(0o444)
    try:
        result = _serve_once(tmp_path, cfg)
    finally:
        data.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"error: {says.format(data=data)}" in result.stderr, result.stderr
    if what != "directory":
        assert "readonly database" in result.stderr and "read-only" in result.stderr


def _prepare_database(cfg: Path) -> None:
    """The node's database as an earlier run left it (migrated, closed cleanly)."""
    host = Host(load_settings(cfg), config_dir=cfg)

    async def once() -> None:
        async with host.running(background=False):
            pass
    asyncio.run(once())
