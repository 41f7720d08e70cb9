"""``smshost serve --workers N``: N server processes on one machine (SPEC X4).

The parent binds every listener's socket once (host.server.bind_all: a busy port is the
same clear error as without workers, before anything starts), takes the data
directory's lock (host.lockfile: one supervisor per data directory; its workers share
the parent's lock and take none), then forks N workers. Each worker runs the whole
server (host.server.serve) on the inherited sockets; the kernel hands each new
connection to whichever worker accepts it first, so a dead worker's share goes to the
others while it restarts.

The parent is a plain loop on ``select``: no thread, no event loop, no store, so forking
a worker again at any time gives it a clean state. It restarts a worker that exits for
any reason (SIGKILL included), waiting longer when they die often
(:class:`Restarts`). SIGTERM or SIGINT is passed on to every worker as SIGTERM (each
finishes its in-flight requests, up to ``server.shutdown_timeout``); a worker still
running after that and :data:`STOP_MARGIN` more is killed; the parent exits 0. A second
SIGTERM or SIGINT is passed on as SIGINT: the workers close at once. A worker takes a
repeated SIGTERM as the first (host.server): systemd sends one to every process of the
service and the parent passes its own on.

A worker lives in its own process group (Ctrl-C reaches the parent alone, which passes
it on once) and watches a pipe from the parent: if the parent dies, even by SIGKILL,
its workers stop as on SIGTERM rather than serve on unsupervised.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from host.backoff import grown
from host.cli_context import run
from host.config.settings import Settings
from host.errors import SmshostError
from host.lockfile import DataLock
from host.logs import label_worker
from host.server import bind_all, serve_worker

log = logging.getLogger("smshost.workers")

BACKLOG = 2048  # uvicorn's default, which each worker's listen() sets again
STOP_MARGIN = 10.0  # seconds past server.shutdown_timeout for a worker to close its store
START_TIMEOUT = 120.0  # seconds for the first worker to open the store and listen
DEATHS_ALLOWED = 5  # deaths within DEATHS_WINDOW restarted at once; more wait
DEATHS_WINDOW = 60.0
RESTART_FIRST, RESTART_MOST = 1.0, 30.0  # the growing wait (seconds) past that


def _store_allows_workers(settings: Settings) -> str | None:
    """Why ``settings`` cannot run several workers, or None when it can.

    Several processes need a store that several writers share: PostgreSQL (``[store]
    url``). SQLite has one writer per database, and each worker would run the
    background work (routing, the outbox, the schedules) on its own."""
    if settings.store.url is not None:
        return None
    return ("--workers needs [store] url = postgresql://...: several processes cannot "
            "share one SQLite writer")


class Restarts:
    """How long to wait before restarting a worker that has just died: at once, unless
    more than :data:`DEATHS_ALLOWED` died within :data:`DEATHS_WINDOW` seconds; then a
    wait growing from :data:`RESTART_FIRST` to at most :data:`RESTART_MOST` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.deaths: collections.deque[float] = collections.deque()

    def died(self) -> float:
        """Note a death now; the seconds to wait before the restart."""
        now = self.clock()
        self.deaths.append(now)
        while self.deaths and self.deaths[0] <= now - DEATHS_WINDOW:
            self.deaths.popleft()
        excess = len(self.deaths) - DEATHS_ALLOWED
        return 0.0 if excess <= 0 else grown(RESTART_FIRST, 2.0, excess - 1, RESTART_MOST)


@dataclass
class _Worker:
    number: int
    pid: int = 0
    ready: bool = False
    started: float = 0.0  # when the death before this start was noticed (or the fork)
    due: float | None = None  # a restart waiting for its time


@dataclass
class _Pipes:
    """The parent's signal pipe, the workers' ready reports, the parent-alive pipe."""

    wake: tuple[int, int] = field(default_factory=os.pipe)
    ready: tuple[int, int] = field(default_factory=os.pipe)
    alive: tuple[int, int] = field(default_factory=os.pipe)


class Supervisor:
    """The parent of ``serve --workers N``: see the module text."""

    def __init__(self, settings: Settings, config_dir: Path | None, data_dir: Path | None,
                 count: int) -> None:
        self.settings, self.config_dir, self.data_dir = settings, config_dir, data_dir
        self.workers = [_Worker(n) for n in range(1, count + 1)]
        self.lock = DataLock(Path(data_dir or settings.server.data_dir))
        self.sockets: list[socket.socket] = []
        self.restarts = Restarts()
        self.stopping: float | None = None  # the deadline once stopping
        self.restarting = False  # once the first worker is ready: before, a death ends all
        self.pipes: _Pipes | None = None

    # -- the parent ------------------------------------------------------------------

    def run(self) -> int:
        """Bind, start the workers, supervise until SIGTERM/SIGINT; the exit code."""
        from host.datadir import writable_data_dir

        writable_data_dir(self.lock.path.parent)
        self.lock.acquire(f"serve --workers {len(self.workers)}")
        try:
            self.sockets = bind_all(self.settings.listeners)
            for sock in self.sockets:
                sock.listen(BACKLOG)
            self.pipes = _Pipes()
            for fd in (self.pipes.wake[1], self.pipes.ready[0]):
                os.set_blocking(fd, False)
            return self._supervise()
        finally:
            for sock in self.sockets:
                sock.close()
            self.lock.release()

    def _supervise(self) -> int:
        assert self.pipes is not None
        signal.set_wakeup_fd(self.pipes.wake[1])
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _noted)
        log.info("supervisor pid %d: starting %d workers", os.getpid(), len(self.workers))
        first = self.workers[0]
        self._start(first)
        deadline = time.monotonic() + START_TIMEOUT
        while not first.ready and self.stopping is None and time.monotonic() < deadline:
            self._step(deadline)
            if first.pid == 0 and self.stopping is None:
                log.error("worker 1 could not start: stopping (see its error above)")
                return self._stop(1)
        if not first.ready and self.stopping is None:
            log.error("worker 1 did not start within %.0f s: stopping", START_TIMEOUT)
            return self._stop(1)
        self.restarting = True
        for worker in self.workers[1:]:  # the first one ran the migrations alone
            if self.stopping is None:
                self._start(worker)
        while self.stopping is None:
            self._step(time.monotonic() + 3600)
        return self._stop(0)

    def _step(self, until: float) -> None:
        """Wait for a signal, a ready report or a restart's time (at most ``until``)."""
        assert self.pipes is not None
        now = time.monotonic()
        dues = [w.due for w in self.workers if w.due is not None]
        timeout = max(0.0, min([until, *dues]) - now)
        readable, _, _ = select.select([self.pipes.wake[0], self.pipes.ready[0]], [], [],
                                       timeout)
        if self.pipes.wake[0] in readable:
            for signum in os.read(self.pipes.wake[0], 512):
                self._signalled(signal.Signals(signum))
        if self.pipes.ready[0] in readable:
            self._read_ready()
        self._reap()
        for worker in self.workers:
            if worker.due is not None and worker.due <= time.monotonic() \
                    and self.stopping is None:
                self._start(worker)

    def _signalled(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            log.info("SIGHUP ignored: each worker applies configuration changes itself "
                     "(server.watch_config)")
        elif sig in (signal.SIGTERM, signal.SIGINT):
            again = self.stopping is not None
            log.info("%s received: %s", sig.name, "closing the workers now" if again
                     else "stopping the workers (they finish in-flight requests)")
            if not again:
                self.stopping = (time.monotonic() + self.settings.server.shutdown_timeout
                                 + STOP_MARGIN)
            self._kill_all(signal.SIGINT if again else signal.SIGTERM)

    def _read_ready(self) -> None:
        assert self.pipes is not None
        try:
            data = os.read(self.pipes.ready[0], 4096)
        except BlockingIOError:
            return
        for line in data.decode().split():
            number, _, pid = line.partition(":")
            worker = self.workers[int(number) - 1]
            if worker.pid == int(pid) and not worker.ready:
                worker.ready = True
                log.info("worker %d (pid %d) ready in %d ms", worker.number, worker.pid,
                         round((time.monotonic() - worker.started) * 1000))

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for worker in self.workers:
                if worker.pid == pid:
                    self._died(worker, status)

    def _died(self, worker: _Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        worker.pid, worker.ready = 0, False
        if self.stopping is not None or not self.restarting:
            log.info("worker %d stopped (%s)", worker.number, how)
            return
        wait = self.restarts.died()
        worker.started = time.monotonic()
        worker.due = worker.started + wait
        if wait:
            log.warning("worker %d died (%s), %d deaths in %.0f s: restarting it in %.0f s",
                        worker.number, how, len(self.restarts.deaths), DEATHS_WINDOW, wait)
        else:
            log.warning("worker %d died (%s): restarting it", worker.number, how)

    def _kill_all(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            worker.due = None
            if worker.pid:
                try:
                    os.kill(worker.pid, sig)
                except ProcessLookupError:  # dead, not reaped yet
                    pass

    def _stop(self, code: int) -> int:
        """Stop every worker (SIGTERM, then SIGKILL past the deadline); ``code``."""
        if self.stopping is None:
            self.stopping = time.monotonic() + self.settings.server.shutdown_timeout \
                + STOP_MARGIN
            self._kill_all(signal.SIGTERM)
        while any(w.pid for w in self.workers) and time.monotonic() < self.stopping:
            self._step(self.stopping)
        if any(w.pid for w in self.workers):
            log.warning("workers still running %.0f s after the stop: killing them",
                        self.settings.server.shutdown_timeout + STOP_MARGIN)
            self._kill_all(signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while any(w.pid for w in self.workers) and time.monotonic() < deadline:
                self._step(deadline)
        log.info("all workers stopped")
        return code

    def _start(self, worker: _Worker) -> None:
        assert self.pipes is not None
        if threading.active_count() != 1:  # a fork copies no thread: the state would lie
            raise SmshostError("the supervisor started a thread: it cannot fork workers")
        worker.due, worker.ready = None, False
        if not worker.started:
            worker.started = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._worker_main(worker.number)
        worker.pid = pid
        log.info("worker %d started: pid %d", worker.number, pid)

    # -- a worker (after the fork) ----------------------------------------------------

    def _worker_main(self, number: int) -> NoReturn:
        """Run the server on the inherited sockets and end the process: never returns
        into the parent's code."""
        code = 1
        try:
            assert self.pipes is not None
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            for fd in (*self.pipes.wake, self.pipes.ready[0], self.pipes.alive[1]):
                os.close(fd)
            label_worker(number)
            report = self.pipes.ready[1]

            def ready() -> None:
                os.write(report, f"{number}:{os.getpid()} ".encode())

            # The parent's lock, held: closing the worker's copy releases nothing.
            run(_worker(serve_worker(self.settings, (self.config_dir, self.data_dir),
                                     self.lock, number, self.sockets, ready),
                        self.pipes.alive[0]))
            code = 0
        except SmshostError as exc:
            print(f"error: worker {number}: {exc}", file=sys.stderr)
        # Whatever ends the worker ends its process here, logged (BLE001).
        except BaseException:  # noqa: BLE001
            log.exception("worker %d failed", number)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


async def _worker(serving: Coroutine[Any, Any, None], alive: int) -> None:
    """Serve; stop as on SIGTERM when the parent is gone (its end of ``alive`` closed)."""
    loop = asyncio.get_running_loop()

    def parent_gone() -> None:
        loop.remove_reader(alive)
        log.warning("the supervisor is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    loop.add_reader(alive, parent_gone)
    await serving


def _noted(_signum: int, _frame: object) -> None:
    """The parent's handler: the signal's number reaches the loop through the wake-up
    pipe (signal.set_wakeup_fd)."""


def serve_workers(settings: Settings, config_dir: Path | None, data_dir: Path | None,
                  count: int) -> int:
    """``smshost serve --workers COUNT``: the exit code; :class:`SmshostError` when
    the store cannot take several workers or a listener cannot be bound."""
    refusal = _store_allows_workers(settings)
    if refusal is not None:
        raise SmshostError(refusal)
    return Supervisor(settings, config_dir, data_dir, count).run()
