"""The PostgreSQL fixtures (tests/pgserver.py, tests/conftest.py): the server answers,
each test gets its own empty database, the cluster runs as a non-root user and leaves
nothing behind, and a missing PostgreSQL is a skip locally but a failure in CI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT
from tests.pgserver import (_wait_gone, Cluster, ExternalServer, PgUnavailable, dbname_of, find_bindir,
                            must_run, open_server, with_dbname)

TABLES = ("select count(*) from information_schema.tables "
          "where table_schema not in ('pg_catalog', 'information_schema')")


def query(url: str, sql: str) -> object:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def local_cluster(pg_server: Cluster | ExternalServer) -> Cluster:
    if isinstance(pg_server, ExternalServer):
        pytest.skip("SMSHOST_TEST_PG_URL names an external server; "
                    "test_cluster_lifecycle covers the throwaway cluster")
    return pg_server


def test_server_answers(pg_url: str) -> None:
    assert "PostgreSQL" in str(query(pg_url, "select version()"))
    assert query(pg_url, "select current_database()") == dbname_of(pg_url)


def test_pg_url_is_marked(request: pytest.FixtureRequest, pg_url: str) -> None:
    assert request.node.get_closest_marker("pg") is not None


def test_each_database_is_fresh_and_separate(pg_server: Cluster | ExternalServer) -> None:
    first, second = pg_server.new_database(), pg_server.new_database()
    try:
        assert dbname_of(first) != dbname_of(second)
        assert query(first, TABLES) == 0 and query(second, TABLES) == 0
        with psycopg.connect(first, connect_timeout=10) as conn:
            conn.execute("create table t (id int primary key)")
        assert query(first, TABLES) == 1
        assert query(second, TABLES) == 0
    finally:
        pg_server.drop(first)
        pg_server.drop(second)
    names = query(pg_server.admin_url, "select array_agg(datname) from pg_database")
    assert dbname_of(first) not in names and dbname_of(second) not in names  # type: ignore[operator]


def test_drop_ends_leftover_connections(pg_server: Cluster | ExternalServer) -> None:
    url = pg_server.new_database()
    leftover = psycopg.connect(url, connect_timeout=10)
    try:
        pg_server.drop(url)
        with pytest.raises(psycopg.OperationalError):
            leftover.execute("select 1")
    finally:
        leftover.close()


def test_drop_refuses_other_databases(pg_server: Cluster | ExternalServer) -> None:
    with pytest.raises(ValueError, match="not a test database"):
        pg_server.drop(pg_server.admin_url)


def test_store_url_runs_on_both(store_url: str | None, request: pytest.FixtureRequest) -> None:
    marked = request.node.get_closest_marker("pg") is not None
    if store_url is None:
        assert request.node.callspec.id == "sqlite" and not marked
    else:
        assert request.node.callspec.id == "pg" and marked
        assert query(store_url, TABLES) == 0


def test_session_cluster_runs_as_non_root(pg_server: Cluster | ExternalServer) -> None:
    cluster = local_cluster(pg_server)
    with psycopg.connect(cluster.admin_url, connect_timeout=10) as conn:
        assert uid_of(conn.info.backend_pid) != 0  # read while the backend lives
    postmaster = cluster.postmaster_pid()
    assert postmaster is not None and uid_of(postmaster) != 0
    assert uid_of(postmaster) == (os.geteuid() if cluster.user is None
                                  else __import__("pwd").getpwnam(cluster.user).pw_uid)


def test_cluster_lifecycle() -> None:
    """A second cluster, started and stopped here: it answers over TCP and the unix
    socket, with fsync off; stop() ends the postmaster and removes the directory."""
    bindir = find_bindir()
    if bindir is None:
        reason = "no PostgreSQL binaries to start a cluster with"
        if must_run():
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = Cluster(bindir).start()
    try:
        pid = cluster.postmaster_pid()
        assert pid is not None and uid_of(pid) != 0
        assert query(cluster.admin_url, "show fsync") == "off"
        assert query(cluster.admin_url, "show synchronous_commit") == "on"
        assert query(cluster.admin_url, "show max_connections") == "200"
        assert query(cluster.socket_url, "select 1") == 1
        url = cluster.new_database()
        assert query(url, TABLES) == 0
    finally:
        cluster.stop()
    assert not cluster.root.exists()
    assert _wait_gone(pid, 0)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", cluster.port), 2):
        pass


def test_external_server_is_used_not_started(pg_server: Cluster | ExternalServer) -> None:
    server = open_server({"SMSHOST_TEST_PG_URL": pg_server.admin_url})
    assert isinstance(server, ExternalServer)
    url = server.new_database()
    assert query(url, TABLES) == 0
    server.drop(url)
    server.stop()
    assert query(pg_server.admin_url, "select 1") == 1


def test_start_failure_names_the_cause_and_cleans_up() -> None:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries")  # the cause itself is tested below
    cluster = Cluster(bindir)
    cluster.bindir = Path("/nonexistent")
    with pytest.raises((PgUnavailable, OSError)):
        cluster.start()
    assert not cluster.root.exists()


def test_no_binaries_found() -> None:
    assert find_bindir(["/nonexistent/bin"]) is None


@pytest.mark.parametrize("env, required", [
    ({}, False), ({"CI": ""}, False), ({"CI": "0"}, False), ({"CI": "false"}, False),
    ({"CI": "1"}, True), ({"CI": "true"}, True), ({"SMSHOST_REQUIRE_PG": "1"}, True),
])
def test_missing_postgresql_fails_in_ci(env: dict[str, str], required: bool) -> None:
    assert must_run(env) is required


def test_with_dbname_keeps_the_rest_of_the_url() -> None:
    url = "postgresql://u:p%40w@db.example:5433/postgres?host=/run/pg&sslmode=disable"
    assert with_dbname(url, "x") == \
        "postgresql://u:p%40w@db.example:5433/x?host=/run/pg&sslmode=disable"


@pytest.mark.slow
@pytest.mark.parametrize("ci, outcome", [("", "1 skipped"), ("1", "1 error")])
def test_fixture_without_postgresql(ci: str, outcome: str) -> None:
    """No binaries and no URL: the pg_url test is skipped with the reason, or in CI
    it errors (a skipped test there could never fail)."""
    env = {**os.environ, "SMSHOST_TEST_PG_BINDIR": "/nonexistent", "CI": ci,
           "SMSHOST_REQUIRE_PG": ""}
    env.pop("SMSHOST_TEST_PG_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         f"{__file__}::test_server_answers"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120)
    assert outcome in done.stdout, done.stdout[-2000:]
    assert "no PostgreSQL binaries" in done.stdout
    assert done.returncode == (0 if not ci else 1)
