"""Shared fixtures: config directories on disk, hosts, clients, free ports, the CLI,
PostgreSQL (``pg_server``, ``pg_url``, ``store_url``)."""

from __future__ import annotations

import os
import random
import socket
import socketserver
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.pgserver import Cluster, ExternalServer, PgUnavailable, must_run, open_server

S = TypeVar("S", bound=socketserver.BaseServer)
T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
SMSHOST = [sys.executable, "-m", "host"]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port of 127.0.0.1 free now, for a server a test starts later (a subprocess).

    Not the kernel's pick (port 0): with pytest-xdist, two workers were handed the same
    port between one's check and its server's bind, and a test talked to the other
    worker's server. Each worker takes ports from a range of its own, below Linux's
    ephemeral ports (32768 and up), never the same one twice in a session."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    low = 20000 + (int(worker) % 6 if worker.isdigit() else 0) * 2000
    for _ in range(500):
        port = random.randrange(low, low + 2000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{low + 1999}")


@pytest.fixture
def config_dir(tmp_path: Path) -> Callable[..., Path]:
    """``config_dir(smshost="...toml...")`` writes files into a fresh config directory.

    Without arguments it writes a minimal valid configuration whose data and plugin
    folders live under ``tmp_path`` and whose API token is ``test-token``.
    """
    def make(**files: str) -> Path:
        cfg = tmp_path / "config"
        cfg.mkdir(exist_ok=True)
        if "smshost" not in files:
            files["smshost"] = base_config(tmp_path)
        files.setdefault("routes", NO_ROUTING)
        for stem, text in files.items():
            (cfg / f"{stem}.toml").write_text(textwrap.dedent(text), encoding="utf-8")
        return cfg
    return make


def base_config(tmp_path: Path, port: int = 8080, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [server]
        data_dir = "{tmp_path / 'data'}"

        [[listeners]]
        name = "admin"
        port = {port}
        api = true

        [api]
        token = "test-token"

        [plugins]
        dirs = ["{tmp_path / 'plugins'}"]
        shipped = false
        entry_points = false
        """) + textwrap.dedent(extra)


NO_ROUTING = "\n[routing]\nenabled = false\n"
"""routes.toml text turning routing off, for tests about storage alone."""


@pytest.fixture
def host_factory(tmp_path: Path, config_dir: Callable[..., Path]) -> Callable[..., Host]:
    def make(**files: str) -> Host:
        cfg = config_dir(**files)
        return Host(load_settings(cfg), config_dir=cfg)
    return make


@pytest.fixture
def host(host_factory: Callable[..., Host]) -> Host:
    return host_factory()


@pytest.fixture
def client(host: Host) -> Iterator[TestClient]:
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as c:
        yield c


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    """The plugin folder the base config points at, with its three sub-folders."""
    root = tmp_path / "plugins"
    for kind in ("brokers", "sinks", "handlers"):
        (root / kind).mkdir(parents=True, exist_ok=True)
    return root


class ServerThread:
    """A socketserver (the fake brokers and proxies of the tests) served from a daemon
    thread: ``start()`` returns it, ``stop()`` shuts it down, closes it and joins."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def server_in_thread(server: S) -> Iterator[S]:
    """``server`` served from a thread for the ``with`` block."""
    running = ServerThread(server).start()
    try:
        yield server
    finally:
        running.stop()


@contextmanager
def write_lock(target: Path | str | Any) -> Iterator[None]:
    """Hold the write lock of ``target`` (a SQLite file's path, or a store: its file's,
    or on PostgreSQL the cluster's write lock) as another process would (``smshost
    purge`` beside the server, another node): smshost's writes wait busy_timeout, then
    fail."""
    url = getattr(target, "url", None)
    if url is not None:
        with _pg_write_lock(url):
            yield
        return
    db = sqlite3.connect(getattr(target, "path", target), isolation_level=None)
    try:
        db.execute("begin immediate")
        yield
    finally:
        if db.in_transaction:
            db.rollback()
        db.close()


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m host ARGS`` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("SMSHOST_CONFIG", None)
    return subprocess.run([*SMSHOST, *args], cwd=cwd or ROOT, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


MEMORY_SINK = '''
from host import hookimpl
from host.sinks.base import Delivery, Sink


class MemorySink(Sink):
    """Test sink: keeps what it gets; target "fail" fails for good, "retry" for now,
    "flaky" for now on a message's first try only, "gate" waits for ``self.gate``
    (an asyncio.Event) when one is set, "stored" commits a write first (as real sinks
    do; after the gate too, when one is set), "cancel" raises CancelledError on a message's first try. ``tried`` lists
    every call, in order."""

    kind = "memory"

    def __init__(self, host, settings):
        super().__init__(host, settings)
        self.got = []
        self.tried = []
        self.gate = None

    async def deliver(self, message, route):
        self.tried.append((route.target, message.id))
        if route.target == "flaky" and self.tried.count(("flaky", message.id)) == 1:
            return Delivery.retry("memory sink: flaky, first try")
        if route.target in ("gate", "stored") and self.gate is not None:
            await self.gate.wait()
        if route.target == "stored":
            await self.host.store.write(lambda db: db.execute("select 1"))
        if route.target == "cancel" and self.tried.count(("cancel", message.id)) == 1:
            import asyncio
            raise asyncio.CancelledError()
        if route.target == "fail":
            return Delivery.failed("memory sink told to fail")
        if route.target == "retry":
            return Delivery.retry("memory sink told to retry")
        self.got.append((route.target, message.body, message.remote, message.local))
        return Delivery.delivered()


@hookimpl
def register_sinks(register):
    register(MemorySink)
'''


@pytest.fixture
def memory_sink(plugins_dir: Path) -> Path:
    """A ``memory`` sink plugin (``host.sinks["memory"].got`` lists deliveries)."""
    path = plugins_dir / "sinks" / "memory.py"
    path.write_text(MEMORY_SINK, encoding="utf-8")
    return path


def routes_toml(*routes: tuple[str, str, str, str, str], extra: str = "") -> str:
    """``routes_toml(("name", "type", "pattern", "destination", "target"), ...)``;
    a route whose name is "default" becomes the default route."""
    text = ""
    for name, kind, pattern, destination, target in routes:
        text += f'[[inbound]]\nname = "{name}"\ndestination = "{destination}"\n'
        text += f'target = "{target}"\n'
        if name == "default":
            text += "default = true\n\n"
        else:
            text += f"type = \"{kind}\"\npattern = '{pattern}'\n\n"
    return text + extra


# -- the tests on PostgreSQL --------------------------------------------------------------
# SMSHOST_TEST_STORE=postgresql runs every test whose hosts are made in this process on a
# fresh PostgreSQL database of the session's server (pg_server: a throwaway cluster, or
# SMSHOST_TEST_PG_URL); `make test` runs the store's, outbox's, routing's, receipts',
# recovery's and sinks' tests so after the whole suite on SQLite. Hosts started by a
# test's subprocesses stay on SQLite. A test about SQLite itself (its file, pragmas,
# VACUUM) is marked ``sqlite_only`` and skipped there.

ON_POSTGRES = os.environ.get("SMSHOST_TEST_STORE", "sqlite") == "postgresql"


def read_apart(host: Host, fn: Callable[[Any], T]) -> T:
    """``fn(db)`` read through a store of its own on ``host``'s database (SQLite's
    file, or its PostgreSQL database on SMSHOST_TEST_STORE=postgresql), for a test to
    check what a host that has stopped stored."""
    import asyncio

    import host.core as hostcore

    async def read() -> T:
        store = hostcore.make_store(host.settings.store, host.data_dir)
        await store.open(host.migration_sets())
        try:
            return await store.read(fn)
        finally:
            await store.close()
    return asyncio.run(read())


@contextmanager
def _pg_write_lock(url: str) -> Iterator[None]:
    import psycopg

    from host.pg.writer import WRITE_LOCK

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", [WRITE_LOCK])
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s)", [WRITE_LOCK])


@pytest.fixture(autouse=ON_POSTGRES)
def _on_postgres(request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import host.core
    from host.pg.store import PgStore
    from host.store import make_store

    if request.node.get_closest_marker("sqlite_only") is not None:
        pytest.skip("about SQLite itself")
    # one database per data directory, as on SQLite (a test's second installation
    # starts empty; a host started again on the same directory finds its data)
    urls = {None: request.getfixturevalue("pg_url")}
    server = request.getfixturevalue("pg_server")
    made: list[str] = []

    def on_postgres(settings: Any, data_dir: Path, prepare: Any = None) -> Any:
        if settings.url is not None:
            return make_store(settings, data_dir, prepare)
        key = Path(data_dir).resolve()
        if key not in urls:
            urls[key] = urls.pop(None) if None in urls else server.new_database()
            made.append(urls[key])
        return PgStore(urls[key], settings, data_dir / settings.filename)

    monkeypatch.setattr(host.core, "make_store", on_postgres)
    yield
    for url in made[1:]:  # the first is pg_url's, dropped by it
        server.drop(url)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Cluster | ExternalServer]:
    """The session's PostgreSQL (tests/pgserver.py): a throwaway cluster, or the server
    named by ``SMSHOST_TEST_PG_URL``. Without either, the test is skipped, except in CI
    (``CI`` or ``SMSHOST_REQUIRE_PG`` set), where it fails: a skipped test cannot fail."""
    try:
        server = open_server()
    except PgUnavailable as exc:
        if must_run():
            pytest.fail(f"PostgreSQL is required here: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: Cluster | ExternalServer) -> Iterator[str]:
    """A fresh empty database for this test (dropped after); its URL."""
    url = pg_server.new_database()
    try:
        yield url
    finally:
        pg_server.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "pg"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Run the test on both stores: None (SQLite, the default) or a fresh PostgreSQL
    database's URL."""
    if request.param == "sqlite":
        yield None
        return
    yield request.getfixturevalue("pg_url")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use PostgreSQL get the ``pg`` marker (``-m "not pg"`` leaves them out)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        params = getattr(getattr(item, "callspec", None), "params", {})
        if ("pg_server" in names or "pg_url" in names
                or params.get("store_url") == "postgresql"):
            item.add_marker(pytest.mark.pg)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A report's captured output with its lone surrogates (the text rule's tests log
    them) replaced: pytest-xdist sends reports between processes as UTF-8, and one
    surrogate stopped its worker."""
    report.sections = [(title, text.encode("utf-8", "replace").decode("utf-8"))
                       for title, text in report.sections]
