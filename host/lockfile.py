"""The data directory's lock: one server per data directory, and no VACUUM beside one.

A server (a host running its background work: routing, sending, the schedules) holds
an exclusive ``flock`` on ``<data_dir>/smshost.lock`` for as long as it runs. A second
server on the same data directory would take the first one's sends in flight for a
crash's and send them again, and route its messages twice: it refuses to start.
``smshost vacuum`` takes the same lock (a long VACUUM holds the database's write lock
and would make the server's writes fail). ``smshost purge`` runs beside a server: it
takes no lock.

The kernel drops a ``flock`` when its process ends, however it ends (kill -9
included): a lock file left behind never blocks anything. The file holds the holder's
pid and what it is doing, for the error message only.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from host.errors import DataDirInUse, SmshostError

log = logging.getLogger("smshost")

LOCK_NAME = "smshost.lock"


class DataLock:
    """The lock of one data directory, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, doing: str) -> None:
        """Take the lock for ``doing`` ("serve", "vacuum"); :class:`DataDirInUse`, saying
        who holds it, when another process does."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk does not stop a start
                log.warning("cannot create %s (%s): this server runs without the lock "
                            "that keeps a second one off its data directory", self.path,
                            exc.strerror)
                return
            raise SmshostError(f"cannot open the lock file {self.path}: "
                               f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise DataDirInUse(f"another smshost process holds the data directory "
                               f"{self.path.parent} ({holder or 'pid unknown'})") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:  # information for the message of whoever is refused; a full disk may refuse it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, {doing}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        """Give the lock back (closing the file drops it); the file stays."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
