"""`smshost serve --workers N` as real processes: the load spread over the workers, a
killed worker replaced, SIGTERM stopping them all, a dead supervisor's workers stopping,
and the refusals before anything starts (SQLite, a busy port, a held data directory).

The workers share a PostgreSQL database (the ``pg_url`` fixture: a fresh database of the
session's throwaway cluster); SQLite is refused. Every wait is a deadline loop; every
process is killed and reaped when its test ends.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.conftest import base_config, free_port
from tests.test_server import SLOW_PLUGIN, _env, listener, two_ports, write_config

from host.workers import DEATHS_ALLOWED, DEATHS_WINDOW, RESTART_MOST, Restarts

TIMEOUT = 20.0  # seconds for any wait on the processes


def _store(url: str) -> str:
    """The ``[store]`` table of a config on the PostgreSQL database ``url``."""
    return f'\n[store]\nurl = "{url}"\n'


def _serve_args(cfg: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "host", "serve", "--config", str(cfg),
            "--workers", str(workers)]


class Supervisor:
    """One ``smshost serve --workers N`` process; its output goes to a file."""

    def __init__(self, tmp_path: Path, cfg: Path, workers: int) -> None:
        self.log_path = tmp_path / f"supervisor-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            _serve_args(cfg, workers), cwd=tmp_path, env=_env(),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.workers: set[int] = set()  # every worker pid seen, for the clean-up

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def process(self, url: str) -> dict[str, Any] | None:
        """/health's ``process`` on a new connection; None when the request fails."""
        try:
            response = httpx2.get(url, timeout=2.0, trust_env=False)
        except httpx2.TransportError:
            return None
        if response.status_code != 200:
            return None
        found: dict[str, Any] = response.json()["process"]
        self.workers.add(found["pid"])
        return found

    def until(self, url: str, wanted: Callable[[dict[str, Any]], bool],
              what: str) -> tuple[dict[str, Any], int]:
        """Ask ``url`` until an answer is ``wanted`` (at most 400 times, TIMEOUT s);
        that answer and how many requests failed meanwhile."""
        failures = 0
        deadline = time.monotonic() + TIMEOUT
        for _ in range(400):
            if self.proc.poll() is not None:
                pytest.fail(f"the supervisor exited with {self.proc.returncode}:\n"
                            f"{self.output}")
            found = self.process(url)
            if found is None:
                failures += 1
            elif wanted(found):
                return found, failures
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        pytest.fail(f"{url}: {what} not seen within {TIMEOUT} s:\n{self.output}")

    def started(self, port: int) -> str:
        """Wait for the first answer on ``port`` (requests fail until the parent has
        bound its sockets); its /health URL."""
        url = f"http://127.0.0.1:{port}/health"
        self.until(url, lambda _: True, "an answer")
        return url

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        finally:
            for pid in self.workers:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            self._log.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left to a container's init does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), pids


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    started: list[Supervisor] = []

    def make(cfg: Path, workers: int = 2) -> Supervisor:
        started.append(Supervisor(tmp_path, cfg, workers))
        return started[-1]

    yield make
    for supervisor in started:
        supervisor.stop()


def _two_listeners(tmp_path: Path, url: str) -> tuple[Path, int, int]:
    api_port, hooks_port = two_ports()
    return write_config(tmp_path, base_config(
        tmp_path, port=api_port, extra=listener("hooks", hooks_port) + _store(url))), \
        api_port, hooks_port


def _run(tmp_path: Path, cfg: Path, *, workers: int = 2) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_serve_args(cfg, workers), cwd=tmp_path, env=_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)


# -- serving, restarting, stopping --------------------------------------------------------


@pytest.mark.slow
def test_two_workers_share_both_listeners_and_sigterm_stops_them_all(
        tmp_path: Path, start: Callable[..., Supervisor], pg_url: str) -> None:
    cfg, api_port, hooks_port = _two_listeners(tmp_path, pg_url)
    supervisor = start(cfg)
    for port in (api_port, hooks_port):
        url = supervisor.started(port)
        seen: set[int] = set()
        for number in (1, 2):  # each a new connection: the kernel spreads them
            found, failures = supervisor.until(
                url, lambda p, n=number: p["worker"] == n, f"worker {number}")
            seen.add(found["pid"])
            assert failures == 0
        assert len(seen) == 2
    assert supervisor.proc.pid not in supervisor.workers  # the parent serves nothing
    assert re.search(r"smshost.server \(worker 2\) listener hooks on", supervisor.output)

    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(timeout=TIMEOUT) == 0, supervisor.output
    _wait_gone(supervisor.workers)
    assert _port_free(api_port) and _port_free(hooks_port)
    assert "all workers stopped" in supervisor.output
    assert len(re.findall(r"worker \d stopped \(exit status 0\)", supervisor.output)) == 2


class InFlight:
    """A GET /slow (tests.test_server's plugin: 1.5 s) running in a thread."""

    def __init__(self, tmp_path: Path, plugins_dir: Path, port: int) -> None:
        self.marker = tmp_path / "slow-started"
        (plugins_dir / "sinks" / "slow.py").write_text(
            SLOW_PLUGIN.format(started=str(self.marker)), encoding="utf-8")
        self.url = f"http://127.0.0.1:{port}/slow"
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._call, daemon=True)

    def _call(self) -> None:
        try:
            self.outcome["status"] = httpx2.get(self.url, timeout=TIMEOUT,
                                                trust_env=False).status_code
        except httpx2.TransportError as exc:  # a closed connection: the assertions say
            self.outcome["error"] = exc

    def begin(self) -> None:
        """Start the request; return once the endpoint runs."""
        self.thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.marker.exists() and self.thread.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.marker.exists(), self.outcome

    def end(self) -> dict[str, Any]:
        self.thread.join(timeout=TIMEOUT)
        assert not self.thread.is_alive()
        return self.outcome


@pytest.mark.slow
def test_sigterm_to_every_process_at_once_is_one_gentle_stop(
        tmp_path: Path, start: Callable[..., Supervisor], plugins_dir: Path, pg_url: str) -> None:
    """As systemd stops a service (KillMode=control-group): each worker gets SIGTERM
    from systemd and from its supervisor, and must not take the second as "now"."""
    cfg, api_port, _ = _two_listeners(tmp_path, pg_url)
    slow = InFlight(tmp_path, plugins_dir, api_port)
    supervisor = start(cfg)
    url = supervisor.started(api_port)
    pids = {supervisor.until(url, lambda p, n=n: p["worker"] == n, f"worker {n}")[0]["pid"]
            for n in (1, 2)}
    slow.begin()
    for pid in (supervisor.proc.pid, *pids):
        os.kill(pid, signal.SIGTERM)
    assert supervisor.proc.wait(timeout=TIMEOUT) == 0, supervisor.output
    assert slow.end() == {"status": 200}, supervisor.output
    _wait_gone(pids)
    assert "closing now" not in supervisor.output
    assert "SIGTERM received: stopping already" in supervisor.output


@pytest.mark.slow
def test_a_second_sigterm_to_the_supervisor_closes_the_workers_at_once(
        tmp_path: Path, start: Callable[..., Supervisor], plugins_dir: Path, pg_url: str) -> None:
    cfg, api_port, _ = _two_listeners(tmp_path, pg_url)
    slow = InFlight(tmp_path, plugins_dir, api_port)
    supervisor = start(cfg)
    url = supervisor.started(api_port)
    for n in (1, 2):
        supervisor.until(url, lambda p, n=n: p["worker"] == n, f"worker {n}")
    slow.begin()
    supervisor.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + TIMEOUT  # one signal at a time: two pending are one
    while "stopping the workers" not in supervisor.output and time.monotonic() < deadline:
        time.sleep(0.02)
    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(timeout=TIMEOUT) == 0, supervisor.output
    assert slow.end().get("status") != 200  # cut, not finished after 1.5 s
    assert "SIGTERM received: closing the workers now" in supervisor.output
    assert "SIGINT received: closing now" in supervisor.output


@pytest.mark.slow
def test_a_killed_worker_is_replaced_while_the_other_serves(
        tmp_path: Path, start: Callable[..., Supervisor], pg_url: str) -> None:
    cfg, api_port, _ = _two_listeners(tmp_path, pg_url)
    supervisor = start(cfg)
    url = supervisor.started(api_port)
    first, _ = supervisor.until(url, lambda p: p["worker"] == 1, "worker 1")
    supervisor.until(url, lambda p: p["worker"] == 2, "worker 2")

    os.kill(first["pid"], signal.SIGKILL)
    again, failures = supervisor.until(
        url, lambda p: p["worker"] == 1 and p["pid"] != first["pid"], "a new worker 1")
    assert failures == 0, "requests failed while worker 1 was restarted"
    assert not _alive(first["pid"])
    assert "worker 1 died (killed by SIGKILL): restarting it" in supervisor.output
    assert f"worker 1 (pid {again['pid']}) ready in" in supervisor.output


@pytest.mark.slow
def test_the_workers_stop_when_the_supervisor_is_killed(
        tmp_path: Path, start: Callable[..., Supervisor], pg_url: str) -> None:
    cfg, api_port, hooks_port = _two_listeners(tmp_path, pg_url)
    supervisor = start(cfg)
    url = supervisor.started(api_port)
    supervisor.until(url, lambda p: p["worker"] == 1, "worker 1")
    supervisor.until(url, lambda p: p["worker"] == 2, "worker 2")

    supervisor.proc.kill()
    supervisor.proc.wait(timeout=TIMEOUT)
    _wait_gone(supervisor.workers)
    assert _port_free(api_port) and _port_free(hooks_port)
    assert supervisor.output.count("the supervisor is gone: stopping") == 2


@pytest.mark.slow
def test_a_second_server_on_the_data_directory_is_refused(
        tmp_path: Path, start: Callable[..., Supervisor], pg_url: str) -> None:
    cfg, api_port, _ = _two_listeners(tmp_path, pg_url)
    supervisor = start(cfg)
    supervisor.started(api_port)
    other = tmp_path / "other"
    other.mkdir()
    other_cfg = write_config(other, base_config(tmp_path, port=free_port(),
                                                extra=_store(pg_url)))  # same data dir
    for workers in (1, 2):
        result = _run(other, other_cfg, workers=workers)
        assert result.returncode == 1, result.stderr
        assert "another smshost process holds the data directory" in result.stderr
        assert f"pid {supervisor.proc.pid}, serve --workers 2" in result.stderr
        assert "worker 1 started" not in result.stderr


# -- refusals before anything starts -------------------------------------------------------


@pytest.mark.slow
def test_sqlite_is_refused_before_any_port_is_bound(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        cfg = write_config(tmp_path, base_config(
            tmp_path, port=free_port(), extra=listener("hooks", busy_port)))
        result = _run(tmp_path, cfg)
    assert result.returncode == 1, result.stderr
    assert "--workers needs [store] url = postgresql://...: several processes cannot " \
        "share one SQLite writer" in result.stderr
    assert "listener 'hooks'" not in result.stderr  # refused before binding
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_busy_port_is_refused_before_any_worker_starts(tmp_path: Path, pg_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        cfg = write_config(tmp_path, base_config(
            tmp_path, port=free_port(), extra=listener("hooks", busy_port) + _store(pg_url)))
        result = _run(tmp_path, cfg)
    assert result.returncode == 1, result.stderr
    assert f"listener 'hooks' cannot listen on 127.0.0.1:{busy_port}" in result.stderr
    assert "worker 1 started" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "smshost.db").exists()


@pytest.mark.slow
def test_a_first_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path, pg_url: str) -> None:
    missing = pg_url.rsplit("/", 1)[0] + "/no_such_database"
    cfg = write_config(tmp_path, base_config(tmp_path, port=free_port(),
                                             extra=_store(missing)))
    result = _run(tmp_path, cfg)
    assert result.returncode == 1, result.stderr
    assert "worker 1 could not start: stopping" in result.stderr
    assert "worker 2 started" not in result.stderr
    assert "restarting" not in result.stderr


def test_the_workers_option_is_bounded(tmp_path: Path, pg_url: str) -> None:
    cfg = write_config(tmp_path, base_config(tmp_path, port=free_port(), extra=_store(pg_url)))
    result = _run(tmp_path, cfg, workers=0)
    assert result.returncode == 2
    assert "--workers" in result.stderr


# -- the restarts' waits -------------------------------------------------------------------


def test_restarts_are_immediate_until_deaths_come_too_often() -> None:
    now = [1000.0]
    restarts = Restarts(clock=lambda: now[0])
    assert [restarts.died() for _ in range(DEATHS_ALLOWED)] == [0.0] * DEATHS_ALLOWED
    waits = [restarts.died() for _ in range(8)]
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(waits) == RESTART_MOST  # bounded
    now[0] += DEATHS_WINDOW + 1  # a quiet minute forgets the deaths
    assert restarts.died() == 0.0
    assert len(restarts.deaths) == 1
