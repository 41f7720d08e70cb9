"""``smshost backup DEST``: an online, consistent copy of the SQLite database (SPEC P10).

The copy is taken while the server runs, with SQLite's backup API: the source is opened
read-only and one read transaction is held from the first page to the last, so the copy
is the database exactly as it stood when the backup began (every message acknowledged
before that is in it) however many writes the server commits meanwhile. The database is
in WAL mode: a reader never blocks the server's writer, and the writer never restarts
the copy. Pages go over ``STEP_PAGES`` at a time with a short sleep between steps, so the
disk is shared with the server's commits.

The copy is written to ``DEST.tmp``, switched to a single file (``journal_mode =
DELETE``: no -wal file goes with it), checked (``pragma quick_check``), fsynced, then
renamed to ``DEST`` and its directory fsynced: a ``DEST`` that exists is a whole, checked
copy. The data directory's lock (host.lockfile) is not taken: a backup runs beside a
server.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from host.errors import SmshostError

if TYPE_CHECKING:
    from host.config.settings import Settings

STEP_PAGES = 256
"""Pages copied per step (1 MiB with 4 KiB pages)."""
STEP_SLEEP = 0.002
"""Seconds between two steps: the server's commits get the disk in between."""


class BackupError(SmshostError):
    """The backup could not be made; the message says why, and nothing is left at DEST."""


@dataclass(frozen=True, slots=True)
class Backup:
    """A finished copy: where, how many messages it holds, its size in bytes."""

    path: Path
    messages: int
    size: int
    seconds: float


def backup_file(source: Path, dest: Path, *, force: bool = False, busy_timeout_ms: int = 5000,
                pages: int = STEP_PAGES, sleep: float = STEP_SLEEP) -> Backup:
    """Copy the database at ``source`` to ``dest`` (see the module text)."""
    _check_paths(source, dest, force)
    tmp = dest.with_name(dest.name + ".tmp")
    started = time.monotonic()
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a backup that died: never a finished copy
        messages = _copy(source, tmp, busy_timeout_ms, pages, sleep)
        _fsync(tmp)
        os.replace(tmp, dest)
        _fsync(dest.parent)
    except sqlite3.Error as exc:
        _drop(tmp)
        if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
            raise _full(dest, source) from None
        raise BackupError(f"{source}: {exc}") from None
    except OSError as exc:
        _drop(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise _full(dest, source) from None
        raise BackupError(f"cannot write {dest}: {exc.strerror or exc}") from None
    except BaseException:
        _drop(tmp)
        raise
    return Backup(dest, messages, dest.stat().st_size, time.monotonic() - started)


def _check_paths(source: Path, dest: Path, force: bool) -> None:
    if not source.is_file():
        raise BackupError(f"no database at {source} (is the data directory right? "
                          "--data or server.data_dir)")
    if not dest.parent.is_dir():
        raise BackupError(f"the directory {dest.parent} does not exist")
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory: give the backup file's name")
    if dest.resolve() == source.resolve():
        raise BackupError(f"{dest} is the database itself")
    if dest.exists() and not force:
        raise BackupError(f"{dest} exists: --force replaces it")


def _copy(source: Path, tmp: Path, busy_timeout_ms: int, pages: int, sleep: float) -> int:
    """Copy ``source`` into ``tmp`` in one read transaction; check it; count messages."""
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True,
                          timeout=busy_timeout_ms / 1000, isolation_level=None)
    try:
        src.execute("begin")
        src.execute("select count(*) from sqlite_master").fetchone()  # the snapshot
        dst = _open_copy(tmp)
        try:
            src.backup(dst, pages=pages, progress=lambda *_: time.sleep(sleep))
            dst.execute("pragma journal_mode = delete")
            problems = [row[0] for row in dst.execute("pragma quick_check")]
            if problems != ["ok"]:
                raise BackupError(f"the copy fails its check: {'; '.join(problems[:5])}")
            found = dst.execute("select 1 from sqlite_master where type = 'table' "
                                "and name = 'messages'").fetchone()
            return int(dst.execute("select count(*) from messages").fetchone()[0]) \
                if found else 0
        finally:
            dst.close()
    finally:
        src.close()


def _open_copy(tmp: Path) -> sqlite3.Connection:
    """The connection writing the copy (tests cap its size to meet a full disk)."""
    return sqlite3.connect(tmp, isolation_level=None)


def _full(dest: Path, source: Path) -> BackupError:
    need = source.stat().st_size // 1_000_000 + 1
    return BackupError(f"disk full: no space left for {dest} (the copy needs about "
                       f"{need} MB); nothing was written")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


def _postgres_hint(settings: Settings, dest: Path) -> str | None:
    """The ``pg_dump`` command for a PostgreSQL store (``[store] url``), its password
    masked; None for SQLite."""
    url = settings.store.url
    if url is None:
        return None
    return pg_dump_command(url.reveal(), dest)


def pg_dump_command(url: str, dest: Path) -> str:
    """``pg_dump`` for the database of ``url`` in custom format; the password is not
    put on the command line (PGPASSWORD or ~/.pgpass)."""
    parts = urlsplit(url)
    args = ["pg_dump", "--format=custom", f"--file={dest}"]
    if parts.hostname:
        args.append(f"--host={parts.hostname}")
    if parts.port:
        args.append(f"--port={parts.port}")
    if parts.username:
        args.append(f"--username={unquote(parts.username)}")
    args.append(unquote(parts.path.lstrip("/")) or "smshost")
    env = "PGPASSWORD=**** " if parts.password else ""
    return env + " ".join(args)
