"""A PostgreSQL server for the tests: a throwaway cluster, or an existing one.

``open_server()`` returns either

* an ``ExternalServer`` when ``SMSHOST_TEST_PG_URL`` names a server
  (``postgresql://user:pw@host:port/postgres``: a role that may CREATE DATABASE);
  nothing is started, each test database is created in it and dropped after, or
* a ``Cluster``: ``initdb`` + ``pg_ctl start`` (from ``SMSHOST_TEST_PG_BINDIR``, else
  ``pg_config --bindir``, /usr/lib/postgresql/<newest>/bin, PATH) in a fresh temp directory, run as a
  non-root user (``runuser -u postgres --`` when the tests run as root: initdb refuses
  root), listening on 127.0.0.1 on a free port and on a unix socket in that directory,
  with ``fsync = off`` and ``full_page_writes = off`` for speed (the cluster is thrown
  away; ``synchronous_commit`` keeps its default, so commits still wait for the WAL
  write; ``Cluster(..., settings={"fsync": "on", ...})`` overrides any of them, as
  bench/scaleout.py does for a durable cluster). ``stop()`` stops it (``pg_ctl stop -m immediate``) and removes the directory.

Both have ``new_database() -> url`` (a fresh empty database, from template0) and
``drop(url)``. When neither is available ``open_server()`` raises ``PgUnavailable``
with the reason; ``must_run()`` tells whether that is a failure (CI) or a skip.
Every wait is bounded: subprocess timeouts, ``pg_ctl -w -t``, connect timeouts.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ENV_URL = "SMSHOST_TEST_PG_URL"
ENV_USER = "SMSHOST_TEST_PG_USER"
ENV_BINDIR = "SMSHOST_TEST_PG_BINDIR"
ENV_REQUIRE = "SMSHOST_REQUIRE_PG"
ROLE = "smshost"
START_TIMEOUT = 30
CONNECT_TIMEOUT = 10
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


class PgUnavailable(Exception):
    """No PostgreSQL to test against (the message says why)."""


def must_run(env: Mapping[str, str] | None = None) -> bool:
    """True in CI (``CI`` or ``SMSHOST_REQUIRE_PG`` set): a missing PostgreSQL fails
    the tests that need it instead of skipping them."""
    env = os.environ if env is None else env
    return any(env.get(name, "").strip().lower() not in ("", "0", "false", "no")
               for name in ("CI", ENV_REQUIRE))


def find_bindir(candidates: Sequence[str] | None = None) -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: ``pg_config --bindir``, then
    /usr/lib/postgresql/<newest>/bin, then PATH."""
    if candidates is None:
        candidates = [*_pg_config_bindir(), *sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(str(Path(initdb).parent))
    for folder in candidates:
        if all(os.access(Path(folder) / name, os.X_OK) for name in ("initdb", "pg_ctl")):
            return Path(folder)
    return None


def _pg_config_bindir() -> list[str]:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return []
    try:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [out.stdout.strip()]


def _version_key(folder: str) -> tuple[int, ...]:
    name = Path(folder).parent.name
    return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_dbname(url: str, dbname: str) -> str:
    """``url`` with its database (the path) replaced by ``dbname``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname)))


def dbname_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


class _Databases:
    """new_database/drop over an admin URL (a role allowed to CREATE DATABASE)."""

    admin_url: str

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"smshost_test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY file_copy')
        return with_dbname(self.admin_url, name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url`` (its leftover connections are ended)."""
        name = dbname_of(url)
        if not name.startswith("smshost_test_"):
            raise ValueError(f"not a test database: {name!r}")
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(self.admin_url, autocommit=True,
                             connect_timeout=CONNECT_TIMEOUT) as conn:
            conn.execute(sql)


class ExternalServer(_Databases):
    """An existing server (``SMSHOST_TEST_PG_URL``): used, never started or stopped."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def stop(self) -> None:
        """Nothing: the server is not ours."""


class Cluster(_Databases):
    """A throwaway cluster in a temp directory (see the module docstring)."""

    def __init__(self, bindir: Path, user: str | None = None,
                 settings: Mapping[str, str] | None = None) -> None:
        self.bindir = bindir
        self.user = user if user is not None else _cluster_user()
        # postgresql.conf lines over SETTINGS: bench/scaleout.py keeps fsync on
        self.settings = {**SETTINGS, **(settings or {})}
        self.root = Path(tempfile.mkdtemp(prefix="smshost-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.port = 0
        self.admin_url = ""

    @property
    def socket_url(self) -> str:
        """The admin URL over the unix socket (``?host=<dir>``)."""
        where = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{ROLE}@/postgres?host={where}&port={self.port}"

    def start(self) -> Cluster:
        try:
            self._prepare()
            self._initdb()
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (immediate: nothing to keep) and remove the directory."""
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate",
                          "-w", "-t", str(START_TIMEOUT), timeout=START_TIMEOUT + 15)
            except (PgUnavailable, subprocess.SubprocessError):
                _kill(pid)
            # pg_ctl returns once postmaster.pid is gone, a moment before the process
            if not _wait_gone(pid, 10):
                _kill(pid)
        shutil.rmtree(self.root, ignore_errors=True)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _prepare(self) -> None:
        self.socket_dir.mkdir()
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", ROLE, "--no-sync",
                  "-E", "UTF8", "--locale=C", timeout=120)
        lines = [f"{key} = {value}" for key, value in self.settings.items()]
        lines.append(f"unix_socket_directories = '{self.socket_dir}'")
        conf = self.data / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as out:
            out.write("\n# tests/pgserver.py\n" + "\n".join(lines) + "\n")

    def _start_on_free_port(self, tries: int = 3) -> None:
        """pg_ctl start on a free port; another port if the first was taken meanwhile."""
        error: PgUnavailable | None = None
        for _ in range(tries):
            self.port = free_port()
            try:
                self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log),
                          "-w", "-t", str(START_TIMEOUT), "-o", f"-p {self.port}",
                          timeout=START_TIMEOUT + 15)
            except PgUnavailable as exc:
                error = exc
                continue
            self.admin_url = f"postgresql://{ROLE}@127.0.0.1:{self.port}/postgres"
            return
        raise error or PgUnavailable("pg_ctl start failed")

    def _run(self, program: str, *args: str, timeout: float) -> None:
        command = [str(self.bindir / program), *args]
        if self.user:
            command = [_runuser(), "-u", self.user, "--", *command]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "LC_ALL": "C"})
        if done.returncode != 0:
            raise PgUnavailable(f"{program} {args[0]} failed ({done.returncode}): "
                                f"{done.stderr.strip()[-800:]}{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\nlog: " + self.log.read_text(errors="replace")[-800:]
        except OSError:
            return ""


def _wait_gone(pid: int, seconds: float) -> bool:
    """Wait (bounded) until process ``pid`` has exited; a zombie counts as exited."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _kill(pid: int) -> None:
    """SIGKILL the postmaster (its children exit when it is gone), bounded wait."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_gone(pid, 10)


def _cluster_user() -> str | None:
    """The user running initdb/pg_ctl: None (ourselves) unless we are root; as root
    ``SMSHOST_TEST_PG_USER``, else ``postgres``, else ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get(ENV_USER, ""), "postgres", "nobody"):
        if name:
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            return name
    raise PgUnavailable("running as root and no non-root user to run PostgreSQL as "
                        f"(set {ENV_USER})")


def _runuser() -> str:
    found = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None)
    if not found:
        raise PgUnavailable("running as root and runuser is missing (util-linux)")
    return found


def open_server(env: Mapping[str, str] | None = None) -> ExternalServer | Cluster:
    """The server for this test session (see the module docstring)."""
    env = os.environ if env is None else env
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PgUnavailable("psycopg is not installed (pip install -e '.[test]')") from exc
    if env.get(ENV_URL):
        return ExternalServer(env[ENV_URL])
    bindir = find_bindir([env[ENV_BINDIR]] if env.get(ENV_BINDIR) else None)
    if bindir is None:
        raise PgUnavailable(
            f"no PostgreSQL binaries ({ENV_BINDIR}, pg_config --bindir, "
            f"/usr/lib/postgresql/*/bin, PATH) and no {ENV_URL}: install Debian's "
            "postgresql (.ci/system-packages)")
    return Cluster(bindir).start()
